//! Fuzzing of the spec and config parsers (proptest), run with the normal test suite.
//!
//! Every property hands text to the library's public entry points exactly as the binary
//! does: `spec::load` (the controller's scan and `devbox validate`),
//! `DevServer::from_yaml` (`devbox apply`, `get`, the API's spec file edits),
//! `Config::parse` (`--config` and `devbox validate`) and `yaml::top_level_keys` (how
//! `devbox validate` tells a config file from a spec file). The properties:
//!
//! - arbitrary bytes, arbitrary text and a soup of YAML tokens and field names never
//!   panic, and every error is a non-empty list of diagnostics that name the file, carry a
//!   message, and point at a line of the text (1 to lines + 1) when they give one;
//! - the valid seeds (the README's spec, `examples/`, `specs/`, the shipped configs) with
//!   random structural mutations (a key dropped, duplicated, replaced by a random scalar,
//!   list or map, an unknown key, deep nesting, very long strings, unicode, anchors and
//!   aliases, alias bombs) and text mutations (tabs, line endings, inserted tokens,
//!   truncation) never panic and finish within `CASE_TIME_LIMIT`;
//! - round trip: a spec that parses, written back with `DevServer::to_yaml` (what the API
//!   and `devbox apply` write), parses to an equal value; arbitrary `DevServer` values
//!   make the same trip, and load (valid or not) without a panic; arbitrary configs
//!   written with `yaml::to_string` parse without a panic, and read back equal when valid;
//! - alias bombs ("billion laughs"), alias amplification and deep flow nesting are
//!   rejected quickly: the YAML library's parser and budget (as `yaml` sets them) refuse
//!   anchors, aliases and nesting deeper than 128 levels.
//!
//! The default case counts keep this file well under 30 seconds in a debug build (about
//! 9 s on two idle cores), which is what CI runs (`cargo test`). `PROPTEST_CASES` sets
//! the count of every property, so a longer run is:
//!
//! ```sh
//! PROPTEST_CASES=20000 cargo test --release --test fuzz_parsers    # about 3 minutes
//! PROPTEST_CASES=100000 cargo test --release --test fuzz_parsers   # about 15 minutes
//! ```
//!
//! (`PROPTEST_RNG_SEED=N` makes a run repeatable.) Failures are not persisted to files
//! (CI runs on clean clones): a failure prints the shrunk input, which belongs in a
//! regular unit test next to the code it breaks. Each bug found here keeps a regression
//! test at the end of this file.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::mpsc;
use std::time::Duration;

use devbox::config::{
    Backoff, Config, DEFAULT_CONFIG_YAML, ExtensionGroup, IconLink, PoolScale, PortRange,
    TemplateItem, TemplateTab,
};
use devbox::diagnostic::{self, Diagnostic};
use devbox::duration::HumanDuration;
use devbox::spec::{
    self, ApiVersion, DesiredState, DevServer, DevServerSpec, GitWorkspace, Kind, Metadata,
    RestartPolicy, TemplateRef, Workspace,
};
use devbox::yaml;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

/// Longest one case may take (all entry points on one input, in a debug build) before it
/// counts as a hang.
const CASE_TIME_LIMIT: Duration = Duration::from_secs(20);

/// The file spec texts are checked as, unless they name a valid server.
const SPEC_FILE: &str = "specs/fuzz.yaml";
const CONFIG_FILE: &str = "config/devbox.yaml";

/// Proptest settings: `default_cases` unless `PROPTEST_CASES` says otherwise (an explicit
/// `cases` would beat the variable), no failure files in the source tree.
fn fuzz_config(default_cases: u32) -> ProptestConfig {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: from_env.unwrap_or(default_cases),
        failure_persistence: None,
        // A failing case is shrunk for at most a minute.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// The embedded default config and the example one: specs are checked against both.
static CONFIGS: LazyLock<Vec<Config>> = LazyLock::new(|| {
    let example = Config::parse(
        Path::new("examples/config/devbox.yaml"),
        include_str!("../examples/config/devbox.yaml"),
    )
    .expect("examples/config/devbox.yaml is valid");
    vec![Config::embedded_default(), example]
});

// ---------------------------------------------------------------------------------------
// Running the entry points

/// Runs `f` on its own thread; a panic is passed on (proptest shrinks it), and a run
/// longer than `CASE_TIME_LIMIT` fails the case as a hang (its thread is left running).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fuzz-case".into())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .expect("spawn a thread");
    match rx.recv_timeout(CASE_TIME_LIMIT) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} did not finish within {CASE_TIME_LIMIT:?}"),
    }
}

/// Number of lines of `text`, counting every line break YAML knows (`\n`, `\r\n`, `\r`,
/// and YAML 1.1's NEL, LS and PS, which libyaml counts too).
fn line_count(text: &str) -> usize {
    let mut lines = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines += 1;
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => lines += 1,
            _ => {}
        }
    }
    lines
}

/// An error must be diagnostics that name `file`, say something, and point into `text`.
fn check_diagnostics(file: &Path, text: &str, diagnostics: &[Diagnostic]) {
    assert!(!diagnostics.is_empty(), "an error without diagnostics");
    let last_line = line_count(text) + 1;
    for d in diagnostics {
        assert_eq!(d.file, file, "{d:?}");
        assert!(!d.message.trim().is_empty(), "no message: {d:?}");
        if let Some(line) = d.line {
            assert!(
                (1..=last_line).contains(&line),
                "line {line} outside 1..={last_line}: {d:?}"
            );
        }
        if let Some(column) = d.column {
            assert!(d.line.is_some() && column >= 1, "column {column}: {d:?}");
        }
        if let Some(field) = &d.field {
            assert!(!field.is_empty(), "empty field: {d:?}");
        }
        let shown = d.to_string();
        assert!(shown.starts_with(&file.display().to_string()), "{shown}");
    }
    let _ = diagnostic::join(diagnostics);
}

/// Hands `text` to every public entry point as the binary does, checks each error, and
/// checks that the entry points agree with each other. Returns the parsed spec, if any.
fn parse_everywhere(text: String) -> Option<DevServer> {
    bounded("parsing", move || {
        // `devbox apply` / `get` / spec edits.
        let parsed = DevServer::from_yaml(Path::new(SPEC_FILE), &text);
        if let Err(d) = &parsed {
            check_diagnostics(Path::new(SPEC_FILE), &text, std::slice::from_ref(d));
        }
        // The controller's scan and `devbox validate`, against each config, with the file
        // named as the spec says (else only `metadata.name` would ever be wrong).
        let file = match &parsed {
            Ok(server) if spec::is_valid_name(&server.metadata.name) => seed_file(server),
            _ => PathBuf::from(SPEC_FILE),
        };
        for config in CONFIGS.iter() {
            match spec::load(&file, &text, config) {
                Ok(resolved) => {
                    assert!(parsed.is_ok(), "load accepted what from_yaml rejected");
                    assert_eq!(resolved.file, file);
                    assert_eq!(resolved.name, parsed.as_ref().unwrap().metadata.name);
                }
                Err(diags) => {
                    check_diagnostics(&file, &text, &diags);
                    if let Err(parse_error) = &parsed {
                        assert_eq!(
                            diags,
                            std::slice::from_ref(parse_error),
                            "load and from_yaml differ"
                        );
                    }
                }
            }
        }
        // `devbox validate`'s config-or-spec test, and the config parser.
        let _ = yaml::top_level_keys(&text);
        if let Err(diags) = Config::parse(Path::new(CONFIG_FILE), &text) {
            check_diagnostics(Path::new(CONFIG_FILE), &text, &diags);
        }
        parsed.ok()
    })
}

/// Config texts get the config parser (and the validate dispatch) only.
fn parse_config(text: String) {
    bounded("parsing a config", move || {
        let file = Path::new(CONFIG_FILE);
        let _ = yaml::top_level_keys(&text);
        match Config::parse(file, &text) {
            Ok(config) => assert_eq!(config.source.as_deref(), Some(file)),
            Err(diags) => check_diagnostics(file, &text, &diags),
        }
    })
}

// ---------------------------------------------------------------------------------------
// Seeds

/// The spec block of the README's "Specs" section.
fn readme_spec() -> Option<String> {
    let readme = include_str!("../README.md");
    let section = readme.find("## Specs")?;
    let start = section + readme[section..].find("```yaml\n")? + "```yaml\n".len();
    let end = start + readme[start..].find("```")?;
    Some(readme[start..end].to_owned())
}

/// Valid spec files: the README's, the examples', and the shipped one.
static SPEC_SEEDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut seeds: Vec<String> = [
        include_str!("../examples/specs/git-workspace.yaml"),
        include_str!("../examples/specs/vsix-extension.yaml"),
        include_str!("../examples/workshop/student-01.yaml"),
        include_str!("../examples/workshop/student-02.yaml"),
        include_str!("../examples/workshop/student-03.yaml"),
        include_str!("../specs/welcome.yaml"),
    ]
    .map(str::to_owned)
    .into();
    seeds.extend(readme_spec());
    seeds
});

static CONFIG_SEEDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    vec![
        DEFAULT_CONFIG_YAML.to_owned(),
        include_str!("../examples/config/devbox.yaml").to_owned(),
    ]
});

/// The file a seed is valid as: `specs/<metadata.name>.yaml`.
fn seed_file(server: &DevServer) -> PathBuf {
    PathBuf::from(format!("specs/{}.yaml", server.metadata.name))
}

#[test]
fn seeds_are_valid() {
    assert!(
        readme_spec().is_some(),
        "README.md has no spec in `## Specs`"
    );
    for text in SPEC_SEEDS.iter() {
        let server = DevServer::from_yaml(Path::new("seed.yaml"), text).unwrap();
        let file = seed_file(&server);
        let valid = CONFIGS
            .iter()
            .any(|config| spec::load(&file, text, config).is_ok());
        assert!(valid, "seed {file:?} is valid against no config:\n{text}");
    }
    for text in CONFIG_SEEDS.iter() {
        Config::parse(Path::new(CONFIG_FILE), text).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Unstructured inputs

/// Characters that mean something to YAML or to devbox's field paths, and the odd ones.
const SPECIAL_CHARS: &[char] = &[
    ':',
    '-',
    '?',
    '[',
    ']',
    '{',
    '}',
    ',',
    '&',
    '*',
    '!',
    '|',
    '>',
    '\'',
    '"',
    '%',
    '@',
    '`',
    '#',
    '=',
    '.',
    '~',
    '\\',
    ' ',
    ' ',
    '\t',
    '\n',
    '\n',
    '\r',
    '\0',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{2028}',
    '\u{2029}',
    '\u{feff}',
    '\u{200b}',
    '\u{202e}',
    '\u{fffd}',
    'é',
    'ß',
    '中',
    '😀',
    '\u{10ffff}',
];

fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('0', '9'),
        3 => select(SPECIAL_CHARS),
        2 => any::<char>(),
    ]
}

/// Bytes with YAML's indicators over-represented.
fn yamlish_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => any::<u8>(),
        1 => select(b": -[]{},&*!|>'\"%@#\n\t\r.=~".as_slice()),
    ]
}

/// Pieces of YAML and of devbox's files: syntax, directives, field names, values.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    // syntax
    ": ", ":", "\n", "\n", "\n  ", "\n    ", "\n      ", "- ", "-", "[", "]", "{", "}",
    ", ", "&a ", "*a", "&b ", "*b", "!!str ", "!!int ", "!!map ", "!!seq ", "!!binary ",
    "!!float ", "!custom ", "!<tag:yaml.org,2002:str> ", "? ", "---\n", "...\n",
    "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "# c\n", "\"", "'", "\\", "\\u00e9", "|", "|-\n",
    ">+\n", "|2\n", "<<: ", "\t", "\r", "\r\n", "\u{feff}", "\0", " ", "  ",
    // spec fields
    "apiVersion", "kind", "metadata", "name", "display_name", "id", "labels", "annotations",
    "spec", "state", "port", "extension_groups", "extensions", "user_settings", "workspace",
    "git", "url", "ref", "zip", "zip_strip_top_level", "path", "template", "tab", "env",
    "restart_policy", "idle_timeout",
    // config fields
    "server", "default_port", "bind_address", "code_server_port_range", "start", "end",
    "request_timeout", "api_token", "cors_allowed_origins", "ui",
    "default_extension_groups", "settings", "auto_refresh_interval", "packaged_assets",
    "tabs", "items", "github_url", "extensions_groups", "icon_links", "lucide_icon",
    "code_server", "binary", "extra_args", "extension_install_concurrency", "controller",
    "specs_dir", "vsix_dir", "restart_backoff", "initial", "max", "crash_loop_threshold",
    "on_shutdown", "log_max_bytes", "description",
    // values
    "devbox/v1", "DevServer", "running", "stopped", "on-failure", "always", "never", "keep",
    "8012", "8000", "99999", "65536", "-1", "0", "0x1f", "0o17", "1e400", "1.5", ".nan",
    "~", "null", "true", "no", "2h", "30s", "0s", "18446744073709551616s", "1y", "python",
    "Workshops", "Databricks Workshop", "ms-python.python", "local-tool.vsix", "../x.vsix",
    "https://x/y.git", "git@h:r.git", "--upload-pack=x", "127.0.0.1", "::1",
    "6c0de5b0-9d1e-4f0a-8a53-2f6b1c9e7d42",
    // keys that look like field paths
    "=[0]", "a[1]", "x[0]y", "=[x]", "[", "]]", ".", "..", "a.b", "é", "😀",
];

fn token_soup() -> impl Strategy<Value = String> {
    vec(select(TOKENS), 0..80).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(fuzz_config(256))]

    /// Arbitrary bytes, read as the binary reads files (as UTF-8; what is not UTF-8 never
    /// reaches the parser, so it is replaced here).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(yamlish_byte(), 0..512)) {
        parse_everywhere(String::from_utf8_lossy(&bytes).into_owned());
    }

    /// Arbitrary text, YAML's special characters over-represented.
    #[test]
    fn arbitrary_text_never_panics(chars in vec(nasty_char(), 0..512)) {
        parse_everywhere(chars.into_iter().collect());
    }

    /// Text built from YAML syntax and devbox's field names and values.
    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        parse_everywhere(text);
    }
}

// ---------------------------------------------------------------------------------------
// Structured inputs: valid documents, mutated

/// A YAML document as a tree, so that mutations can make what serde values cannot:
/// duplicate keys, anchors, aliases, raw scalars.
#[derive(Debug, Clone)]
enum Node {
    /// A scalar as written (plain, quoted, or anything else).
    Scalar(String),
    Seq(Vec<Node>),
    /// Keys as written.
    Map(Vec<(String, Node)>),
    Anchored(String, Box<Node>),
    Alias(String),
}

impl Node {
    fn from_json(value: &Value) -> Node {
        match value {
            Value::Null => Node::Scalar("null".into()),
            Value::Bool(b) => Node::Scalar(b.to_string()),
            Value::Number(n) => Node::Scalar(n.to_string()),
            Value::String(s) => Node::Scalar(scalar_text(s)),
            Value::Array(items) => Node::Seq(items.iter().map(Node::from_json).collect()),
            Value::Object(map) => Node::Map(
                map.iter()
                    .map(|(k, v)| (scalar_text(k), Node::from_json(v)))
                    .collect(),
            ),
        }
    }

    fn is_map(&self) -> bool {
        matches!(self, Node::Map(_))
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Node::Scalar(_))
    }
}

/// A string as a YAML scalar that reads back as that string: plain when that is safe,
/// else double-quoted (JSON's escapes are YAML's).
fn scalar_text(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

/// How a tree is written out.
#[derive(Debug, Clone, Copy)]
struct Style {
    indent: usize,
    /// Collections nested deeper than this are written in flow style (`{a: 1}`, `[x]`).
    flow_below: usize,
}

fn render(node: &Node, style: Style) -> String {
    let mut out = String::new();
    match node {
        Node::Map(entries) if !entries.is_empty() && style.flow_below > 0 => {
            for (key, value) in entries {
                out.push_str(key);
                out.push(':');
                render_value(&mut out, value, style, 0, 1);
            }
        }
        _ => {
            render_flow(&mut out, node);
            out.push('\n');
        }
    }
    out
}

/// Writes `node` after a `key:` or `- ` at `indent`, with the line break.
fn render_value(out: &mut String, node: &Node, style: Style, indent: usize, depth: usize) {
    let child = indent + style.indent;
    match node {
        Node::Map(entries) if !entries.is_empty() && depth < style.flow_below => {
            out.push('\n');
            for (key, value) in entries {
                out.push_str(&" ".repeat(child));
                out.push_str(key);
                out.push(':');
                render_value(out, value, style, child, depth + 1);
            }
        }
        Node::Seq(items) if !items.is_empty() && depth < style.flow_below => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(child));
                out.push('-');
                render_value(out, item, style, child, depth + 1);
            }
        }
        Node::Anchored(name, inner) => {
            out.push_str(" &");
            out.push_str(name);
            render_value(out, inner, style, indent, depth);
        }
        _ => {
            out.push(' ');
            render_flow(out, node);
            out.push('\n');
        }
    }
}

fn render_flow(out: &mut String, node: &Node) {
    match node {
        Node::Scalar(text) => out.push_str(text),
        Node::Alias(name) => {
            out.push('*');
            out.push_str(name);
        }
        Node::Anchored(name, inner) => {
            out.push('&');
            out.push_str(name);
            out.push(' ');
            render_flow(out, inner);
        }
        Node::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_flow(out, item);
            }
            out.push(']');
        }
        Node::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push_str(": ");
                render_flow(out, value);
            }
            out.push('}');
        }
    }
}

/// Number of nodes for which `pred` holds.
fn count(node: &Node, pred: fn(&Node) -> bool) -> usize {
    let own = usize::from(pred(node));
    own + match node {
        Node::Seq(items) => items.iter().map(|c| count(c, pred)).sum(),
        Node::Map(entries) => entries.iter().map(|(_, c)| count(c, pred)).sum(),
        Node::Anchored(_, inner) => count(inner, pred),
        _ => 0,
    }
}

/// Applies `f` to the `n`-th node (pre-order) for which `pred` holds.
fn with_nth(
    node: &mut Node,
    pred: fn(&Node) -> bool,
    n: &mut usize,
    f: &mut dyn FnMut(&mut Node),
) -> bool {
    if pred(node) {
        if *n == 0 {
            f(node);
            return true;
        }
        *n -= 1;
    }
    match node {
        Node::Seq(items) => items.iter_mut().any(|c| with_nth(c, pred, n, &mut *f)),
        Node::Map(entries) => entries
            .iter_mut()
            .any(|(_, c)| with_nth(c, pred, n, &mut *f)),
        Node::Anchored(_, inner) => with_nth(inner, pred, n, f),
        _ => false,
    }
}

/// Applies `f` to the node that `index` picks among those for which `pred` holds.
fn at(root: &mut Node, index: &Index, pred: fn(&Node) -> bool, mut f: impl FnMut(&mut Node)) {
    let total = count(root, pred);
    if total > 0 {
        let mut n = index.index(total);
        with_nth(root, pred, &mut n, &mut f);
    }
}

fn any_node(_: &Node) -> bool {
    true
}

/// An exponential alias bomb: `depth` levels, each `width` aliases of the one before.
fn alias_bomb(width: usize, depth: usize) -> Node {
    let mut levels = vec![Node::Anchored(
        "l0".into(),
        Box::new(Node::Seq(vec![Node::Scalar("lol".into()); width])),
    )];
    for d in 1..depth {
        levels.push(Node::Anchored(
            format!("l{d}"),
            Box::new(Node::Seq(vec![Node::Alias(format!("l{}", d - 1)); width])),
        ));
    }
    Node::Seq(levels)
}

#[derive(Debug, Clone)]
enum Mutation {
    DropKey(Index, Index),
    DuplicateKey(Index, Index, Option<Node>),
    Replace(Index, Node),
    InsertKey(Index, Index, String, Node),
    Nest(Index, usize, bool),
    LongString(Index, char, usize, bool),
    Unicode(Index, String),
    RenameKey(Index, Index, String),
    AnchorAndAlias(Index, Index, String),
    AliasBomb(Index, usize, usize),
}

fn apply(root: &mut Node, mutation: &Mutation) {
    match mutation {
        Mutation::DropKey(map, entry) => at(root, map, Node::is_map, |node| {
            if let Node::Map(entries) = node
                && !entries.is_empty()
            {
                entries.remove(entry.index(entries.len()));
            }
        }),
        Mutation::DuplicateKey(map, entry, other) => at(root, map, Node::is_map, |node| {
            if let Node::Map(entries) = node
                && !entries.is_empty()
            {
                let (key, value) = entries[entry.index(entries.len())].clone();
                entries.push((key, other.clone().unwrap_or(value)));
            }
        }),
        Mutation::Replace(target, new) => at(root, target, any_node, |node| *node = new.clone()),
        Mutation::InsertKey(map, position, key, value) => at(root, map, Node::is_map, |node| {
            if let Node::Map(entries) = node {
                let i = position.index(entries.len() + 1);
                entries.insert(i, (key.clone(), value.clone()));
            }
        }),
        Mutation::Nest(target, depth, as_map) => at(root, target, any_node, |node| {
            let mut nested = node.clone();
            for _ in 0..*depth {
                nested = if *as_map {
                    Node::Map(vec![("k".into(), nested)])
                } else {
                    Node::Seq(vec![nested])
                };
            }
            *node = nested;
        }),
        Mutation::LongString(target, c, len, quoted) => at(root, target, Node::is_scalar, |node| {
            let long: String = std::iter::repeat_n(*c, *len).collect();
            *node = Node::Scalar(if *quoted {
                serde_json::to_string(&long).expect("a string serialises")
            } else {
                long
            });
        }),
        Mutation::Unicode(target, text) => at(root, target, Node::is_scalar, |node| {
            *node = Node::Scalar(text.clone());
        }),
        Mutation::RenameKey(map, entry, key) => at(root, map, Node::is_map, |node| {
            if let Node::Map(entries) = node
                && !entries.is_empty()
            {
                let i = entry.index(entries.len());
                entries[i].0 = key.clone();
            }
        }),
        Mutation::AnchorAndAlias(anchor, alias, name) => {
            at(root, anchor, any_node, |node| {
                *node = Node::Anchored(name.clone(), Box::new(node.clone()));
            });
            at(root, alias, any_node, |node| {
                *node = Node::Alias(name.clone())
            });
        }
        Mutation::AliasBomb(target, width, depth) => at(root, target, any_node, |node| {
            *node = alias_bomb(*width, *depth);
        }),
    }
}

/// Scalars as written: YAML's special values, numbers, quoted and plain text.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(TOKENS).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        1 => (0u16..=u16::MAX).prop_map(|n| n.to_string()),
        2 => vec(nasty_char(), 0..16).prop_map(String::from_iter),
        2 => vec(nasty_char(), 0..16)
            .prop_map(|c| serde_json::to_string(&String::from_iter(c)).unwrap()),
        1 => vec(nasty_char(), 0..16)
            .prop_map(|c| format!("'{}'", String::from_iter(c).replace('\'', "''"))),
    ]
}

/// Keys: devbox's field names, odd text, and field-path look-alikes.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(TOKENS).prop_map(str::to_owned),
        1 => vec(nasty_char(), 1..12).prop_map(String::from_iter),
        1 => vec(nasty_char(), 0..12)
            .prop_map(|c| serde_json::to_string(&String::from_iter(c)).unwrap()),
    ]
}

/// A random scalar, list or map.
fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        8 => scalar().prop_map(Node::Scalar),
        1 => select(&["a", "b", "l0"][..]).prop_map(|a| Node::Alias(a.into())),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Node::Seq),
            vec((key(), inner.clone()), 0..5).prop_map(Node::Map),
            (select(&["a", "b"][..]), inner)
                .prop_map(|(a, n)| Node::Anchored(a.into(), Box::new(n))),
        ]
    })
}

fn unicode_text() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..32).prop_map(String::from_iter),
        vec(nasty_char(), 0..32).prop_map(String::from_iter),
        vec(any::<char>(), 0..32)
            .prop_map(|c| serde_json::to_string(&String::from_iter(c)).unwrap()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(m, e)| Mutation::DropKey(m, e)),
        2 => (any::<Index>(), any::<Index>(), proptest::option::of(node()))
            .prop_map(|(m, e, n)| Mutation::DuplicateKey(m, e, n)),
        4 => (any::<Index>(), node()).prop_map(|(t, n)| Mutation::Replace(t, n)),
        2 => (any::<Index>(), any::<Index>(), key(), node())
            .prop_map(|(m, p, k, n)| Mutation::InsertKey(m, p, k, n)),
        1 => (any::<Index>(), 1usize..300, any::<bool>())
            .prop_map(|(t, d, m)| Mutation::Nest(t, d, m)),
        1 => (any::<Index>(), nasty_char(), 1000usize..40_000, any::<bool>())
            .prop_map(|(t, c, l, q)| Mutation::LongString(t, c, l, q)),
        2 => (any::<Index>(), unicode_text()).prop_map(|(t, s)| Mutation::Unicode(t, s)),
        2 => (any::<Index>(), any::<Index>(), key())
            .prop_map(|(m, e, k)| Mutation::RenameKey(m, e, k)),
        2 => (any::<Index>(), any::<Index>(), select(&["a", "b", "x y", "l0"][..]))
            .prop_map(|(a, b, n)| Mutation::AnchorAndAlias(a, b, n.into())),
        1 => (any::<Index>(), 2usize..12, 2usize..12)
            .prop_map(|(t, w, d)| Mutation::AliasBomb(t, w, d)),
    ]
}

/// Edits of the written text: what a tree cannot express.
#[derive(Debug, Clone)]
enum TextEdit {
    Insert(Index, String),
    Delete(Index, usize),
    /// The indentation of one line becomes a tab.
    TabIndent(Index),
    Truncate(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    LineEndings(&'static str),
}

fn text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        3 => (any::<Index>(), prop_oneof![
            select(TOKENS).prop_map(str::to_owned),
            nasty_char().prop_map(String::from),
        ]).prop_map(|(i, s)| TextEdit::Insert(i, s)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| TextEdit::Delete(i, n)),
        2 => any::<Index>().prop_map(TextEdit::TabIndent),
        1 => any::<Index>().prop_map(TextEdit::Truncate),
        1 => any::<Index>().prop_map(TextEdit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| TextEdit::SwapLines(a, b)),
        1 => select(&["\r\n", "\r", "\u{85}", "\u{2028}", "\n\n"][..]).prop_map(TextEdit::LineEndings),
    ]
}

/// The char boundary at or before the byte `index` picks.
fn boundary(text: &str, index: &Index) -> usize {
    let mut at = index.index(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn edit_text(text: &mut String, edit: &TextEdit) {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    match edit {
        TextEdit::Insert(i, s) => {
            let at = boundary(text, i);
            text.insert_str(at, s);
            return;
        }
        TextEdit::Delete(i, n) => {
            let start = boundary(text, i);
            let mut end = (start + n).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(start..end, "");
            return;
        }
        TextEdit::Truncate(i) => {
            let at = boundary(text, i);
            text.truncate(at);
            return;
        }
        TextEdit::LineEndings(ending) => {
            *text = text.replace('\n', ending);
            return;
        }
        TextEdit::TabIndent(i) => {
            let i = i.index(lines.len());
            let line = &mut lines[i];
            let body = line.trim_start_matches(' ');
            if body.len() < line.len() {
                *line = format!("\t{body}");
            }
        }
        TextEdit::DuplicateLine(i) => {
            let i = i.index(lines.len());
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        TextEdit::SwapLines(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
    }
    *text = lines.join("\n");
}

/// One seed's text, mutated as a tree and then as text.
#[derive(Debug, Clone)]
struct Mutated {
    seed: usize,
    mutations: Vec<Mutation>,
    indent: usize,
    flow_below: usize,
    edits: Vec<TextEdit>,
}

fn mutated(max_mutations: usize, max_edits: usize) -> impl Strategy<Value = Mutated> {
    (
        any::<usize>(),
        vec(mutation(), 0..=max_mutations),
        1usize..=4,
        prop_oneof![3 => Just(usize::MAX), 1 => 1usize..4],
        vec(text_edit(), 0..=max_edits),
    )
        .prop_map(|(seed, mutations, indent, flow_below, edits)| Mutated {
            seed,
            mutations,
            indent,
            flow_below,
            edits,
        })
}

impl Mutated {
    fn text(&self, seeds: &[String]) -> String {
        let seed = &seeds[self.seed % seeds.len()];
        let value: Value = yaml::from_str(seed).expect("seeds are YAML");
        let mut root = Node::from_json(&value);
        for mutation in &self.mutations {
            apply(&mut root, mutation);
        }
        let style = Style {
            indent: self.indent,
            flow_below: self.flow_below,
        };
        let mut text = render(&root, style);
        for edit in &self.edits {
            edit_text(&mut text, edit);
        }
        text
    }
}

/// The mutations start from documents that are valid as written here: the tree writer is
/// sound, whatever its indentation and flow style.
#[test]
fn rendered_seeds_are_valid() {
    for (seeds, is_spec) in [(&*SPEC_SEEDS, true), (&*CONFIG_SEEDS, false)] {
        for seed in 0..seeds.len() {
            for indent in 1..=4 {
                for flow_below in [1, 2, 3, usize::MAX] {
                    let unchanged = Mutated {
                        seed,
                        mutations: vec![],
                        indent,
                        flow_below,
                        edits: vec![],
                    };
                    let text = unchanged.text(seeds);
                    if is_spec {
                        let original = DevServer::from_yaml(Path::new(SPEC_FILE), &seeds[seed]);
                        assert_eq!(parse_everywhere(text.clone()), original.ok(), "{text}");
                    } else {
                        let original = Config::parse(Path::new(CONFIG_FILE), &seeds[seed]);
                        let written = Config::parse(Path::new(CONFIG_FILE), &text);
                        assert_eq!(written, original, "{text}");
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(fuzz_config(128))]

    /// Valid specs with structural mutations (and no text edits): YAML that is mostly
    /// well-formed, so the checks behind the parser are reached.
    #[test]
    fn mutated_specs_never_panic(m in mutated(4, 0)) {
        parse_everywhere(m.text(&SPEC_SEEDS));
    }

    /// Valid specs with structural mutations and text edits.
    #[test]
    fn mutated_spec_text_never_panics(m in mutated(2, 4)) {
        parse_everywhere(m.text(&SPEC_SEEDS));
    }

    /// Valid configs with structural mutations and text edits.
    #[test]
    fn mutated_configs_never_panic(m in mutated(4, 2)) {
        parse_config(m.text(&CONFIG_SEEDS));
    }

    /// A spec that parses, written back with devbox's writer, parses to an equal value,
    /// and writing that again gives the same text.
    #[test]
    fn parsed_specs_round_trip(m in mutated(3, 0)) {
        let text = m.text(&SPEC_SEEDS);
        if let Some(server) = parse_everywhere(text) {
            round_trip(server);
        }
    }
}

/// Writes `server` as `devbox apply` and the API do, reads it back, and compares.
fn round_trip(server: DevServer) {
    let written = bounded("writing", {
        let server = server.clone();
        move || server.to_yaml()
    })
    .unwrap_or_else(|err| panic!("cannot write {server:?}: {err}"));
    let read = DevServer::from_yaml(Path::new(SPEC_FILE), &written)
        .unwrap_or_else(|d| panic!("cannot read back what was written: {d}\n{written}"));
    assert_eq!(read, server, "changed by a round trip through\n{written}");
    let again = read.to_yaml().expect("written once, written twice");
    assert_eq!(again, written, "writing is not stable");
}

// ---------------------------------------------------------------------------------------
// Round trip of arbitrary values

/// Strings that YAML writers get wrong: keywords, numbers, indicators, breaks, blanks.
#[rustfmt::skip]
const NASTY_STRINGS: &[&str] = &[
    "", " ", "~", "null", "Null", "NULL", "true", "False", "yes", "No", "on", "OFF", "y",
    "n", "0", "-0", "1", "0x10", "0o7", "0b1", "1e3", "1_000", ".5", "+1", ".inf", "-.Inf",
    ".nan", "2001-12-14", "12:30", "<<", "=", "-", "- x", "-x", "?", "? x", ":", ": x",
    "x:", "x: y", "#x", "x #y", "x#y", "&a", "*a", "!tag", "!!str", "%YAML", "---", "...",
    "--- x", "'", "\"", "''", "|", ">", "@x", "`x", "[a]", "{a: b}", "a, b", " lead",
    "trail ", "\t", "a\tb", "\n", "a\n", "\na", "a\nb", "a\n\n", " \n ", "a\r", "\r\n",
    "a\r\nb", "\u{85}", "\u{2028}", "\u{2029}", "\u{feff}x", "x\u{feff}", "\0", "\u{7f}",
    "\u{1b}[31m", "\u{a0}", "é", "😀", "\u{202e}abc", "a\\b", "\\n", "devbox/restarted-at",
];

/// Characters of devbox's field paths (`spec.extensions[2]`): keys made of them end up
/// inside the paths of diagnostics.
const PATH_CHARS: &[char] = &['[', ']', '0', '1', '.', '=', 'a', 'é', ' ', '\0'];

fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(NASTY_STRINGS).prop_map(str::to_owned),
        1 => vec(select(PATH_CHARS), 0..10).prop_map(String::from_iter),
        3 => vec(nasty_char(), 0..24).prop_map(String::from_iter),
        1 => (select(NASTY_STRINGS), select(NASTY_STRINGS), vec(nasty_char(), 0..4))
            .prop_map(|(a, b, c)| format!("{a}{}{b}", String::from_iter(c))),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(nasty_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn duration() -> impl Strategy<Value = HumanDuration> {
    prop_oneof![
        (0u64..100_000, 0u32..1_000_000_000),
        (any::<u64>(), 0u32..1_000_000_000),
    ]
    .prop_map(|(secs, nanos)| HumanDuration(Duration::new(secs, nanos)))
}

fn path() -> impl Strategy<Value = PathBuf> {
    nasty_string().prop_map(PathBuf::from)
}

fn metadata() -> impl Strategy<Value = Metadata> {
    (
        nasty_string(),
        proptest::option::of(nasty_string()),
        proptest::option::of(any::<u128>().prop_map(uuid::Uuid::from_u128)),
        proptest::option::of(nasty_string()),
        btree_map(nasty_string(), nasty_string(), 0..4),
        btree_map(nasty_string(), nasty_string(), 0..4),
    )
        .prop_map(
            |(name, display_name, id, owner, labels, annotations)| Metadata {
                name,
                display_name,
                id,
                owner,
                labels,
                annotations,
            },
        )
}

fn workspace() -> impl Strategy<Value = Workspace> {
    (
        proptest::option::of((nasty_string(), proptest::option::of(nasty_string()))),
        proptest::option::of(path()),
        any::<bool>(),
        proptest::option::of(path()),
    )
        .prop_map(|(git, zip, zip_strip_top_level, path)| Workspace {
            git: git.map(|(url, reference)| GitWorkspace { url, reference }),
            zip,
            zip_strip_top_level,
            path,
        })
}

fn server_spec() -> impl Strategy<Value = DevServerSpec> {
    (
        (
            select(&[DesiredState::Running, DesiredState::Stopped][..]),
            proptest::option::of(any::<u16>()),
            vec(nasty_string(), 0..4),
            vec(nasty_string(), 0..4),
            btree_map(nasty_string(), json_value(), 0..4),
        ),
        (
            proptest::option::of(workspace()),
            proptest::option::of(
                (nasty_string(), nasty_string()).prop_map(|(tab, name)| TemplateRef { tab, name }),
            ),
            btree_map(nasty_string(), nasty_string(), 0..4),
            select(
                &[
                    RestartPolicy::Always,
                    RestartPolicy::OnFailure,
                    RestartPolicy::Never,
                ][..],
            ),
            proptest::option::of(duration()),
            proptest::option::of(resources()),
            proptest::option::of(proptest::sample::select(vec![
                devbox::runtime::Backend::Local,
                devbox::runtime::Backend::Slurm,
            ])),
        ),
    )
        .prop_map(
            |(
                (state, port, extension_groups, extensions, user_settings),
                (workspace, template, env, restart_policy, idle_timeout, resources, runtime),
            )| DevServerSpec {
                state,
                port,
                extension_groups,
                extensions,
                user_settings: user_settings.into_iter().collect(),
                workspace,
                template,
                env,
                restart_policy,
                idle_timeout,
                resources,
                runtime,
            },
        )
}

/// Limits as a spec may hold them (any byte count, cores in thousandths).
fn resources() -> impl Strategy<Value = devbox::resources::Resources> {
    (
        proptest::option::of((1u64 << 20)..(1u64 << 44)),
        proptest::option::of(10u32..64_000),
        proptest::option::of(1u64..100_000),
    )
        .prop_map(|(memory, cpu_millis, pids)| devbox::resources::Resources {
            memory: memory.map(devbox::resources::ByteSize),
            cpus: cpu_millis.map(|m| {
                devbox::resources::Cpus::from_cores(f64::from(m) / 1000.0).expect("in range")
            }),
            pids,
        })
}

fn dev_server() -> impl Strategy<Value = DevServer> {
    (metadata(), server_spec()).prop_map(|(metadata, spec)| DevServer {
        api_version: ApiVersion::V1,
        kind: Kind::DevServer,
        metadata,
        spec,
    })
}

proptest! {
    #![proptest_config(fuzz_config(256))]

    /// Any spec devbox can hold (what the API and `devbox apply` write) survives being
    /// written and read back.
    #[test]
    fn arbitrary_specs_round_trip(server in dev_server()) {
        round_trip(server);
    }

    /// What devbox writes is what its controller and `devbox validate` then read: any
    /// written spec, valid or not, is checked without a panic.
    #[test]
    fn written_specs_load_without_panic(server in dev_server()) {
        let written = server.to_yaml().expect("a spec is written");
        prop_assert_eq!(parse_everywhere(written), Some(server));
    }
}

// ---------------------------------------------------------------------------------------
// Configs: arbitrary values written with devbox's YAML writer

/// A shipped config with random groups, templates, ports and settings.
fn arbitrary_config() -> impl Strategy<Value = Config> {
    let group = (
        nasty_string(),
        nasty_string(),
        vec(nasty_string(), 0..4),
        btree_map(nasty_string(), json_value(), 0..3),
    )
        .prop_map(|(name, description, extensions, settings)| ExtensionGroup {
            name,
            description,
            extensions,
            user_settings: settings.into_iter().collect(),
        });
    let item = (
        nasty_string(),
        vec(nasty_string(), 0..3),
        nasty_string(),
        vec((nasty_string(), nasty_string()), 0..2),
        (
            proptest::option::of(nasty_string()),
            0u32..3,
            vec((nasty_string(), 0u32..3), 0..2),
        ),
    )
        .prop_map(
            |(name, extensions_groups, github_url, icons, (github_ref, prebuilt, schedule))| {
                TemplateItem {
                    name,
                    description: String::new(),
                    extensions_groups,
                    thumbnail_url: String::new(),
                    github_url,
                    github_ref,
                    icon_links: icons
                        .into_iter()
                        .map(|(lucide_icon, url)| IconLink { lucide_icon, url })
                        .collect(),
                    prebuilt,
                    prebuilt_schedule: schedule
                        .into_iter()
                        .map(|(cron, count)| PoolScale { cron, count })
                        .collect(),
                }
            },
        );
    let tab =
        (nasty_string(), vec(item, 0..3)).prop_map(|(name, items)| TemplateTab { name, items });
    (
        (
            0..CONFIG_SEEDS.len(),
            btree_map(nasty_string(), group, 0..3),
            vec(nasty_string(), 0..3),
            vec(tab, 0..3),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            proptest::option::of(nasty_string()),
            vec(nasty_string(), 0..3),
        ),
        (
            btree_map(nasty_string(), nasty_string(), 0..3),
            vec(nasty_string(), 0..3),
            0usize..3,
            duration(),
            duration(),
            proptest::option::of(path()),
        ),
    )
        .prop_map(
            |(
                (seed, groups, default_groups, tabs),
                (default_port, start, end, api_token, cors),
                (env, extra_args, concurrency, initial, max, vsix_dir),
            )| {
                let mut config = CONFIGS[seed].clone();
                config.source = None;
                config.extension_groups.extend(groups);
                config.ui.default_extension_groups.extend(default_groups);
                config.packaged_assets.tabs.extend(tabs);
                config.server.default_port = default_port;
                config.server.code_server_port_range = PortRange { start, end };
                config.server.api_token = api_token;
                config.server.cors_allowed_origins = cors;
                config.code_server.env = env;
                config.code_server.extra_args = extra_args;
                config.code_server.extension_install_concurrency = concurrency;
                config.controller.restart_backoff = Backoff { initial, max };
                config.controller.vsix_dir = vsix_dir;
                config
            },
        )
}

proptest! {
    #![proptest_config(fuzz_config(128))]

    /// Any config, written with devbox's YAML writer, is checked without a panic, and
    /// one that is valid reads back as the value written.
    #[test]
    fn arbitrary_configs_parse_without_panic(config in arbitrary_config()) {
        let text = yaml::to_string(&config).expect("a config is written");
        let file = Path::new(CONFIG_FILE);
        parse_config(text.clone());
        if let Ok(mut read) = Config::parse(file, &text) {
            prop_assert_eq!(read.source.as_deref(), Some(file));
            read.source = None;
            prop_assert_eq!(read, config);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Alias bombs

/// The classic "billion laughs": nine levels of nine aliases each, 9^9 leaves if expanded.
fn billion_laughs() -> String {
    let mut text = String::from("- &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let prev = format!("*l{}", level - 1);
        text.push_str(&format!("- &l{level} [{}]\n", vec![prev; 9].join(", ")));
    }
    text
}

fn indented(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

#[test]
fn billion_laughs_is_rejected_quickly() {
    let bomb = billion_laughs();
    let header = "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: fuzz\n";
    let specs = [
        // A value devbox reads as free-form JSON: serde would expand it all. (Elsewhere
        // the types stop at the first alias; `devbox validate`'s config-or-spec test
        // still reads the whole document.)
        format!(
            "{header}spec:\n  user_settings:\n    bomb:\n{}",
            indented(&bomb, 6)
        ),
        format!("{header}spec: {{}}\nbomb:\n{}", indented(&bomb, 2)),
    ];
    for text in specs {
        let started = std::time::Instant::now();
        let parsed = parse_everywhere(text.clone());
        assert!(parsed.is_none(), "a bomb was accepted:\n{text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}:\n{text}",
            started.elapsed()
        );
    }
    let config = format!(
        "extension_groups:\n  g:\n    name: G\n    user_settings:\n      bomb:\n{}",
        indented(&bomb, 8)
    );
    let started = std::time::Instant::now();
    parse_config(config.clone());
    let errors = Config::parse(Path::new(CONFIG_FILE), &config).unwrap_err();
    assert!(!errors.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------
// Bugs found by this file, each kept as a regression test:
// - field paths with brackets in their keys panicked when located;
// - libyaml's scanner (unsafe-libyaml 0.2.11 under serde_yaml, devbox's YAML library
//   then) is quadratic in flow nesting depth: 40 KB of `[` took seconds per parse. Fixed
//   by refusing nesting deeper than 128 levels; now serde-saphyr's parser does (`yaml`);
// - serde_yaml expanded aliases without a total budget: a 2.6 KB spec expanded to ~9
//   million values (20 s and 1 GB per parse in a debug build). Fixed by refusing anchors
//   and aliases, with the line and column of the first one; now serde-saphyr's budget
//   refuses them (`yaml`).

#[test]
fn bracketed_keys_in_field_paths_do_not_panic() {
    for key in ["=[0]]", "=[]]", "=[0]é]"] {
        let text = format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata: {{name: fuzz}}\nspec:\n  env: {{{}: x}}\n",
            serde_json::to_string(key).unwrap()
        );
        let file = Path::new(SPEC_FILE);
        let errors = spec::load(file, &text, &CONFIGS[0]).unwrap_err();
        assert_eq!(
            errors[0].field.as_deref(),
            Some(&*format!("spec.env.{key}"))
        );
        parse_everywhere(text);
    }
    for id in ["g[0]]", "g[]]", "g[0]é]"] {
        let text = format!(
            "extension_groups:\n  {}: {{name: G, extensions: [nope]}}\n",
            serde_json::to_string(id).unwrap()
        );
        let errors = Config::parse(Path::new(CONFIG_FILE), &text).unwrap_err();
        assert!(errors[0].message.contains("nope"), "{}", errors[0]);
        parse_config(text);
    }
}

#[test]
fn deep_flow_nesting_is_rejected_quickly() {
    let depth = 20_000;
    let texts = [
        format!("spec: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
        format!("spec: {}\n", "{".repeat(depth)),
    ];
    for text in texts {
        let started = std::time::Instant::now();
        assert!(parse_everywhere(text).is_none());
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{depth} levels took {took:?}"
        );
    }
}

/// A spec of about 5·`n` bytes whose settings expand to 99·`n`² values: anchor `a` is a
/// list of `n` scalars, `b` is 99 aliases of `a`, and the last list `n` aliases of `b`.
/// serde_yaml, devbox's YAML library before serde-saphyr, only limited alias jumps (100
/// per event of the document), which these stay below.
fn alias_amplifier(n: usize) -> String {
    format!(
        "apiVersion: devbox/v1\nkind: DevServer\nmetadata: {{name: fuzz}}\nspec:\n  user_settings:\n    a: &a [{}]\n    b: &b [{}]\n    c: [{}]\n",
        vec!["x"; n].join(", "),
        vec!["*a"; 99].join(", "),
        vec!["*b"; n].join(", ")
    )
}

#[test]
fn alias_amplification_is_bounded() {
    let text = alias_amplifier(300);
    assert!(text.len() < 3000);
    let started = std::time::Instant::now();
    assert!(parse_everywhere(text.clone()).is_none());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // Refused at the first anchor, as a located diagnostic.
    let error = DevServer::from_yaml(Path::new(SPEC_FILE), &text).unwrap_err();
    assert_eq!((error.line, error.column), (Some(6), Some(8)), "{error}");
    assert!(error.message.starts_with("anchor `&a`: "), "{error}");
}
