//! All YAML reading and writing in devbox goes through this module.
//!
//! serde_yaml is archived upstream (sound, but unmaintained). Keeping every call to it
//! here means a swap to a maintained fork touches this one file. The module also turns
//! parser errors into [`YamlError`]s that carry a line, a column and the dotted path of
//! the field that was wrong, which is what `devbox validate` and server status show.
//!
//! Every text is first checked by [`precheck`]: too large, nested too deep, or using
//! anchors and aliases is refused before serde_yaml sees it.

mod precheck;

pub use precheck::{MAX_NESTING, MAX_YAML_BYTES, precheck};

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A YAML document that could not be read into the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line of the problem, when the parser knows it.
    pub line: Option<usize>,
    /// 1-based column of the problem, when the parser knows it.
    pub column: Option<usize>,
    /// Dotted path of the offending field (`spec.port`, `spec.extensions[2]`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for YamlError {}

/// Parses `text` into `T`, reporting where and in which field it went wrong.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    precheck(text)?;
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.location();
        let mut message = inner.to_string();
        // serde_yaml appends " at line L column C" to its messages; we report the
        // location in its own fields, so drop the duplicate.
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        // serde_yaml also prefixes some messages with the path; it has its own field.
        if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
            message = rest.to_owned();
        }
        let field = (path != "." && !path.is_empty()).then_some(path);
        let (line, column) = match location {
            Some(loc) => (Some(loc.line()), Some(loc.column())),
            None => field
                .as_deref()
                .and_then(|f| locate(text, f))
                .map_or((None, None), |(l, c)| (Some(l), Some(c))),
        };
        YamlError {
            line,
            column,
            field,
            message,
        }
    })
}

/// Serialises `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_yaml::to_string(value).map_err(|err| YamlError {
        line: None,
        column: None,
        field: None,
        message: err.to_string(),
    })
}

/// The keys of the top-level mapping of `text`, or `None` when the document is not a
/// mapping (or not YAML at all). Used to tell a spec file from a config file.
pub fn top_level_keys(text: &str) -> Option<Vec<String>> {
    precheck(text).ok()?;
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let mapping = value.as_mapping()?;
    Some(
        mapping
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Best-effort 1-based (line, column) of a dotted field path such as `spec.port` or
/// `spec.extension_groups[1]` in a block-style YAML document.
///
/// serde_yaml reports locations for syntax and type errors, but semantic checks made
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
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
        #[serde(default)]
        list: Vec<String>,
    }

    #[test]
    fn type_error_has_field_and_location() {
        let err = from_str::<Outer>("name: a\ninner:\n  port: 99999\n").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("inner.port"));
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("99999"), "{}", err.message);
    }

    #[test]
    fn unknown_field_is_named() {
        let err = from_str::<Outer>("name: a\ninner:\n  port: 1\n  prot: 2\n").unwrap_err();
        assert!(
            err.message.contains("unknown field `prot`"),
            "{}",
            err.message
        );
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn syntax_error_has_location() {
        let err = from_str::<Outer>("name: [a\ninner: {").unwrap_err();
        assert!(err.line.is_some());
    }

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

    #[test]
    fn top_level_keys_of_mapping() {
        assert_eq!(
            top_level_keys("kind: DevServer\nspec: {}\n"),
            Some(vec!["kind".to_owned(), "spec".to_owned()])
        );
        assert_eq!(top_level_keys("- a\n"), None);
    }
}
