//! Where a field named by its dotted path (`spec.port`, `spec.extensions[2]`) sits in a
//! YAML text, for problems found after parsing (a port out of range, an unknown group),
//! which know the field but not the place.

/// Best-effort 1-based (line, column) of a dotted field path such as `spec.port` or
/// `spec.extension_groups[1]` in a block-style YAML document.
///
/// The parser reports locations for syntax and type errors, but semantic checks made
/// after parsing (a port out of range, an unknown group) only know the field path. This
/// walks the text by indentation to find that field; when a segment is not found it
/// returns the location of the deepest parent it did find.
pub fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found: Option<(usize, usize)> = None;
    // Search window: [start, end) of lines, and the minimum indent of children.
    let mut start = 0;
    let mut end = lines.len();
    let mut parent_indent: Option<usize> = None;
    for segment in split_path(field) {
        let hit = match segment {
            Segment::Key(key) => find_key(&lines[start..end], key, parent_indent),
            Segment::Index(index) => find_item(&lines[start..end], index, parent_indent),
        };
        let Some((offset, indent, column)) = hit else {
            break;
        };
        let line = start + offset;
        found = Some((line + 1, column + 1));
        // The children of this node are the following lines indented deeper than it.
        let child_end = lines[line + 1..end]
            .iter()
            .position(|l| !is_blank(l) && indent_of(l) <= indent)
            .map_or(end, |p| line + 1 + p);
        start = line;
        end = child_end;
        parent_indent = Some(indent);
        // An item's or key's inline value sits on its own line; keep it in the window so
        // `- name: x` style items can be searched for `name`.
    }
    found
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(field: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    for part in field.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segments.push(Segment::Key(key));
        }
        // `[3][0]` after the key; a key that merely holds brackets (user settings and
        // env names are free text) ends the path here: the location is best effort.
        while let Some(inner) = rest.strip_prefix('[') {
            let Some((index, after)) = inner.split_once(']') else {
                break;
            };
            let Ok(index) = index.parse() else {
                break;
            };
            segments.push(Segment::Index(index));
            rest = after;
        }
    }
    segments
}

fn is_blank(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.is_empty() || trimmed.starts_with('#')
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Finds `key:` among the direct children (the shallowest indent deeper than the parent),
/// also as the first key of a sequence item (`- key: value`).
fn find_key(
    lines: &[&str],
    key: &str,
    parent_indent: Option<usize>,
) -> Option<(usize, usize, usize)> {
    let mut child_indent: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        if is_blank(line) {
            continue;
        }
        let mut indent = indent_of(line);
        let mut body = line.trim_start();
        if parent_indent.is_some_and(|p| indent <= p) && i > 0 {
            continue;
        }
        if let Some(item) = body.strip_prefix("- ") {
            // `- key: value`: the key sits two columns further in.
            indent += 2 + (item.len() - item.trim_start().len());
            body = item.trim_start();
        }
        if i == 0 && parent_indent.is_some() {
            // The window starts at the parent's own line; only an inline item counts.
            if !line.trim_start().starts_with("- ") {
                continue;
            }
        }
        let expected = *child_indent.get_or_insert(indent);
        if indent != expected {
            continue;
        }
        let name = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if name == key && body.contains(':') {
            return Some((i, indent, indent));
        }
    }
    None
}

/// Finds the `index`-th `- ` item among the direct children of the window.
fn find_item(
    lines: &[&str],
    index: usize,
    parent_indent: Option<usize>,
) -> Option<(usize, usize, usize)> {
    let mut seen = 0;
    let mut item_indent: Option<usize> = None;
    for (i, line) in lines.iter().enumerate().skip(1) {
        if is_blank(line) {
            continue;
        }
        let indent = indent_of(line);
        if parent_indent.is_some_and(|p| indent < p) {
            break;
        }
        let body = line.trim_start();
        if !body.starts_with('-') {
            continue;
        }
        let expected = *item_indent.get_or_insert(indent);
        if indent != expected {
            continue;
        }
        if seen == index {
            return Some((i, indent, indent + 2));
        }
        seen += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_survives_keys_that_hold_brackets() {
        let text = "spec:\n  env:\n    \"=[0]]\": x\n    \"a[é]\": y\n";
        for field in [
            "spec.env.=[0]]",
            "spec.env.a[é]",
            "spec.env.[",
            "]",
            "x[1]][",
        ] {
            // Best effort: the deepest parent found, and no panic.
            let _ = locate(text, field);
        }
        assert_eq!(locate(text, "spec.env.=[0]]"), Some((2, 3)));
    }

    #[test]
    fn locate_finds_nested_keys_and_items() {
        let text = "# comment\nmetadata:\n  name: x\nspec:\n  port: 1\n  groups:\n    - a\n    - b\n  other: 2\n";
        assert_eq!(locate(text, "spec.port"), Some((5, 3)));
        assert_eq!(locate(text, "metadata.name"), Some((3, 3)));
        assert_eq!(locate(text, "spec.groups[1]"), Some((8, 7)));
        assert_eq!(locate(text, "spec.other"), Some((9, 3)));
        // A missing leaf falls back to its parent.
        assert_eq!(locate(text, "spec.missing"), Some((4, 1)));
    }

    #[test]
    fn locate_inside_sequence_of_mappings() {
        let text = "tabs:\n  - name: A\n    items:\n      - name: X\n        github_url: u\n";
        assert_eq!(locate(text, "tabs[0].items[0].github_url"), Some((5, 9)));
    }
}
