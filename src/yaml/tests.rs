//! What the module reads, refuses and writes, through its public functions.

use serde::Deserialize;
use serde_json::Value;

use super::*;

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
fn top_level_keys_of_mapping() {
    assert_eq!(
        top_level_keys("kind: DevServer\nspec: {}\n"),
        Some(vec!["kind".to_owned(), "spec".to_owned()])
    );
    assert_eq!(top_level_keys("- a\n"), None);
}

/// The 1-based (line, column) and message of what is refused in `text`.
fn refused(text: &str) -> (usize, usize, String) {
    let err = from_str::<Value>(text).expect_err(text);
    assert_eq!(err.field, None, "{text}");
    (
        err.line.expect("a line"),
        err.column.expect("a column"),
        err.message,
    )
}

/// `text` parses as YAML.
fn accepted(text: &str) -> Value {
    from_str(text).unwrap_or_else(|err| {
        panic!(
            "refused at {:?}:{:?}: {}\n{text}",
            err.line, err.column, err.message
        )
    })
}

const ANCHORS: &str = "anchors and aliases (&name, *name) are not supported in devbox files";

#[test]
fn ampersands_and_stars_in_content_are_accepted() {
    let texts = [
        // Plain scalars: `&` and `*` after the first character are content.
        "cmd: ls *.txt\n",
        "a: a & b\n",
        "title: R&D\n",
        "- x*y\n- a &b\n- [a&b, c*d, e *f]\n- {k: v&w, l: x *y}\n",
        "glob: \"*\"\npattern: '*.rs'\n",
        // A continuation line of a plain scalar is content too.
        "key: some text\n  *continued &here\n",
        "- item\n  *still the item\n",
        // Quotes, with escapes and doubled quotes, over lines.
        "a: '&a *b'\nb: \"&x \\\" *y\"\nc: 'it''s *not'\nd: \"\\\\\" # *e\n",
        "a: \"first\n  *second &third\"\nb: 'one\n\n  &two'\n",
        "a: \"escaped \\\n  *break\"\n",
        "[\"&a\", '*b', {\"*c\": '&d'}]\n",
        // Comments, at the start of a line and after blanks.
        "# &a *b\nkey: value # &c *d\nlist:\n- x # *y\n",
        "key: value\n  # *indented comment\nother: [a, # *b\n  c]\n",
        // Block scalars, literal and folded, with indicators, and what follows them.
        "script: |\n  echo &a *b\n  *c\n\n  &d\nnext: 1\n",
        "folded: >-\n  &x\n    *y is still the folded scalar\n",
        "- |2\n   *three spaces\n- >+\n  &kept\n\n",
        "a:\n  b: |\n    *x\n  c: |-\n    &y\nd: 1\n",
        "|\n *top-level block scalar\n",
        // Tags may hold `&` and `*`.
        "a: !foo&bar baz\nb: !<tag:x,2000:a*b> c\n",
        // Not a node start.
        "a: b&\nc: d*\n",
    ];
    for text in texts {
        accepted(text);
    }
}

#[test]
fn anchors_and_aliases_are_refused_where_nodes_start() {
    let cases = [
        ("a: &x 1\n", (1, 4), "anchor `&x`"),
        ("a: 1\nb: *x\n", (2, 4), "alias `*x`"),
        ("- *x\n", (1, 3), "alias `*x`"),
        ("list:\n  - a\n  - &x b\n", (3, 5), "anchor `&x`"),
        ("[*x]\n", (1, 2), "alias `*x`"),
        ("{a: *x}\n", (1, 5), "alias `*x`"),
        ("[a, *x]\n", (1, 5), "alias `*x`"),
        ("{a: b,&c d: e}\n", (1, 7), "anchor `&c`"),
        ("key:\n  *x\n", (2, 3), "alias `*x`"),
        ("&a key: v\n", (1, 1), "anchor `&a`"),
        ("key: v\n*a : w\n", (2, 1), "alias `*a`"),
        ("a: !!str &x b\n", (1, 10), "anchor `&x`"),
        ("--- &x\na: 1\n", (1, 5), "anchor `&x`"),
        ("? &k key\n: v\n", (1, 3), "anchor `&k`"),
        ("a: \"&quoted\" \nb: 'x'\nc: &y z\n", (3, 4), "anchor `&y`"),
        ("s: |\n  &content\nt: *after\n", (3, 4), "alias `*after`"),
        // Columns count characters, lines every kind of line break.
        ("é: *x\n", (1, 4), "alias `*x`"),
        ("a: 1\r\nb: *x\r\n", (2, 4), "alias `*x`"),
        ("a: 1\rb: 2\nc: *x\n", (3, 4), "alias `*x`"),
        ("\u{feff}a: *x\n", (1, 4), "alias `*x`"),
        // YAML 1.2 names may hold any character but blanks and flow indicators.
        ("a: &é x\n", (1, 4), "anchor `&é`"),
    ];
    for (text, at, what) in cases {
        let (line, column, message) = refused(text);
        assert_eq!((line, column), at, "{text:?}: {message}");
        assert_eq!(message, format!("{what}: {ANCHORS}"), "{text:?}");
    }
    // U+2028 is no line break in YAML 1.2 (it was in libyaml's YAML 1.1): `b`'s value
    // runs on into `c:`, a syntax error, refused at its own place.
    let err = from_str::<Value>("a: 1\rb: 2\u{2028}c: *x\n").unwrap_err();
    assert_eq!((err.line, err.column), (Some(2), Some(7)), "{err}");
    let long = format!("a: &{} x\n", "n".repeat(100));
    let (_, _, message) = refused(&long);
    assert!(message.starts_with(&format!("anchor `&{}…`: ", "n".repeat(40))));
}

#[test]
fn refusals_become_located_diagnostics() {
    let text = "apiVersion: devbox/v1\nkind: DevServer\nmetadata: {name: fuzz}\nspec:\n  user_settings:\n    a: &a [x]\n    b: [*a]\n";
    let err = from_str::<Value>(text).unwrap_err();
    let diagnostic =
        crate::diagnostic::Diagnostic::from_yaml(std::path::Path::new("specs/fuzz.yaml"), err);
    assert_eq!(
        diagnostic.to_string(),
        format!("specs/fuzz.yaml:6:8: anchor `&a`: {ANCHORS}")
    );
    assert_eq!(top_level_keys(text), None);
}

#[test]
fn malformed_anchors_are_the_parsers_errors() {
    for text in ["a: & b\n", "- * item\n"] {
        let err = from_str::<Value>(text).unwrap_err();
        assert!(err.message.contains("alphabetic or numeric"), "{err}");
        assert_eq!(err.line, Some(1), "{text:?}");
    }
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let flow = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
    accepted(&flow);
    let mut block = String::new();
    for depth in 0..MAX_NESTING {
        block.push_str(&format!("{}k{depth}:\n", " ".repeat(depth)));
    }
    accepted(&block);
    // Brackets in quotes, comments, plain and block scalars are not nesting.
    let deep = "[".repeat(10 * MAX_NESTING);
    accepted(&format!(
        "a: \"{deep}\"\nb: '{deep}'\n# {deep}\nc: x{deep}\nd: |\n  {deep}\n"
    ));
}

#[test]
fn nesting_past_the_limit_is_refused() {
    let message = format!(
        "collections nested deeper than {MAX_NESTING} levels are not supported in devbox files"
    );
    // Flow: refused at the bracket that opens flow level 129, whether or not it closes.
    // The parser's scanner counts flow levels alone and meets that bracket before the
    // budget counts the mapping `spec:` as a level of its own.
    for (text, column) in [
        (format!("spec: {}", "[".repeat(20_000)), 6 + 129),
        (format!("spec: {}\n", "{".repeat(20_000)), 6 + 129),
        (format!("{}{}", "[".repeat(129), "]".repeat(129)), 129),
    ] {
        assert_eq!(
            refused(&text),
            (1, column, message.clone()),
            "{}",
            &text[..20]
        );
    }
    // Block mappings: the key that opens level 129.
    let mut block = String::new();
    for depth in 0..=MAX_NESTING {
        block.push_str(&format!("{}k{depth}:\n", " ".repeat(depth)));
    }
    assert_eq!(refused(&block), (129, 129, message.clone()));
    // Block sequences on one line, and block and flow levels together.
    let dashes = "- ".repeat(MAX_NESTING + 1);
    assert_eq!(refused(&dashes), (1, 2 * MAX_NESTING + 1, message.clone()));
    let mixed = format!("{}{}", "- ".repeat(100), "[".repeat(29));
    let closed = format!("{mixed}{}", "]".repeat(29));
    assert_eq!(refused(&closed), (1, 2 * 100 + 29, message));
    // Left open, the same place is refused for the syntax error: the scanner reads to the
    // end (looking for the `:` of a key) before the levels reach the budget.
    assert_eq!(
        refused(&mixed),
        (1, 2 * 100 + 29, "unclosed bracket '['".to_owned())
    );
}

#[test]
fn size_is_capped() {
    let comment = format!("# {}\n", "x".repeat(MAX_YAML_BYTES - 3));
    assert_eq!(comment.len(), MAX_YAML_BYTES);
    accepted(&comment);
    let too_big = format!("{comment}a: 1\n");
    let err = from_str::<Value>(&too_big).unwrap_err();
    assert_eq!((err.line, err.column, err.field), (None, None, None));
    assert_eq!(
        err.message,
        format!(
            "the document is {} bytes; devbox reads YAML of at most 262144 bytes (256 KiB)",
            MAX_YAML_BYTES + 5
        )
    );
    assert_eq!(top_level_keys(&too_big), None);
}

#[test]
fn repository_files_pass() {
    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("config/devbox.yaml")];
    yaml_files(&root.join("examples"), &mut files);
    yaml_files(&root.join("specs"), &mut files);
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(err) = from_str::<Value>(&text) {
            panic!(
                "{}:{:?}:{:?}: {}",
                file.display(),
                err.line,
                err.column,
                err.message
            );
        }
    }
}

#[test]
fn yaml_1_1_scalars_keep_their_yaml_1_2_meaning() {
    let value: Value = accepted(
        "a: on\nb: yes\nc: 0755\nd: 1_000\ne: 0o10\nf: 0x1F\n<<: {g: 1}\nh: .inf\ni: 2001-12-14\n",
    );
    assert_eq!(
        value,
        serde_json::json!({
            "a": "on", "b": "yes", "c": "0755", "d": "1_000", "e": 8, "f": 31,
            "<<": {"g": 1}, "h": null, "i": "2001-12-14",
        })
    );
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Flag {
        flag: bool,
    }
    for spelling in ["yes", "on", "y", "No", "off"] {
        let err = from_str::<Flag>(&format!("flag: {spelling}\n")).unwrap_err();
        assert_eq!(
            (err.field.as_deref(), err.line, err.column),
            (Some("flag"), Some(1), Some(7))
        );
    }
    assert!(from_str::<Flag>("flag: true\n").unwrap().flag);
    #[derive(Debug, Deserialize, PartialEq)]
    struct Texts {
        empty: String,
        null: String,
        tilde: String,
    }
    assert_eq!(
        from_str::<Texts>("empty:\nnull: null\ntilde: ~\n").unwrap(),
        Texts {
            empty: String::new(),
            null: "null".to_owned(),
            tilde: "~".to_owned(),
        }
    );
}

#[test]
fn duplicate_keys_are_refused_where_they_repeat() {
    let err = from_str::<Value>("spec:\n  env:\n    A: 1\n    A: 2\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("spec.env"));
    assert_eq!((err.line, err.column), (Some(4), Some(5)));
    assert_eq!(err.message, "duplicate mapping key `A` is not allowed here");
}

#[test]
fn an_empty_value_for_a_list_says_how_to_write_an_empty_one() {
    let err = from_str::<Outer>("name: a\ninner:\n  port: 1\n  list:\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("inner.list"));
    assert_eq!(err.line, Some(4));
    assert_eq!(
        err.message,
        "expected a list (an empty value is null: write `[]` for no items)"
    );
    let err = from_str::<Outer>("name: a\ninner:\n  port: 1\n  list: {a: b}\n").unwrap_err();
    assert_eq!(err.message, "expected a list");
    let err = from_str::<Outer>("name: a\ninner:\n  port: [1]\n").unwrap_err();
    assert_eq!(
        err.message,
        "expected a single value, not a list or mapping"
    );
}

#[test]
fn missing_fields_point_at_the_mapping_that_lacks_them() {
    let err = from_str::<Outer>("# comment\n---\ninner: {port: 1}\n").unwrap_err();
    assert_eq!(err.message, "missing field `name`");
    assert_eq!((err.field, err.line, err.column), (None, Some(3), Some(1)));
    let err = from_str::<Outer>("name: a\ninner:\n  list: []\n").unwrap_err();
    assert_eq!(err.message, "missing field `port`");
    assert_eq!(err.field.as_deref(), Some("inner"));
    assert_eq!((err.line, err.column), (Some(2), Some(1)));
}

#[test]
fn written_yaml_reads_back_and_quotes_what_would_read_otherwise() {
    let value = serde_json::json!({
        "yes": "on", "octal": "0755", "true": "true", "null": "null", "empty": "",
        "number": "12", "lines": "one\ntwo\n", "list": [], "map": {}, "tabbed": "a\tb",
    });
    let text = to_string(&value).unwrap();
    for quoted in [
        "\"on\"", "\"0755\"", "\"true\"", "\"null\"", "\"12\"", "\"\"",
    ] {
        assert!(text.contains(quoted), "{quoted} in\n{text}");
    }
    assert_eq!(from_str::<Value>(&text).unwrap(), value, "{text}");
}

#[test]
fn the_deepest_nesting_reads_on_a_small_stack() {
    // Tokio workers and test threads have 2 MiB; reading MAX_NESTING levels needs more
    // in a debug build, which is why `from_str` reads on a thread of its own.
    let depth = MAX_NESTING - 1;
    let text = format!("{}x{}", "{a: ".repeat(depth), "}".repeat(depth));
    let read = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || from_str::<Value>(&text).map(|_| ()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(read, Ok(()));
}
