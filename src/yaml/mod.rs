//! All YAML reading and writing in devbox goes through this module.
//!
//! The library is serde-saphyr (maintained, panic-free, on granit-parser). Keeping every
//! call to it here means the rest of devbox sees [`from_str`], [`to_string`],
//! [`top_level_keys`] and [`YamlError`], which carries the line, column and dotted path
//! of the field that was wrong: what `devbox validate` and server status show.
//!
//! What devbox refuses in a YAML text, and what checks it:
//! - a text over [`MAX_YAML_BYTES`]: checked here before parsing (the library bounds the
//!   bytes of reader input only, not of a string already in memory);
//! - collections nested deeper than [`MAX_NESTING`], anchors and aliases (`&name`,
//!   `*name`), duplicate keys and a second document: the library's parser and budget, on
//!   its own events, as set in [`read_options`]. Spec and config files are small hand- or
//!   API-written documents with no use for anchors, and with none allowed there is no
//!   alias expansion to bound. [`refusal`] words and locates what was refused.
//!
//! devbox kept a scanner of its own in front of serde_yaml for those limits: libyaml took
//! seconds to scan deep flow nesting, and serde_yaml expanded aliases without bound.
//! Neither holds here (20 000 unclosed `[` are refused in under a millisecond), so only
//! the size check is left of it.
//!
//! The options keep what devbox read when it was built on serde_yaml (YAML 1.2 scalars):
//! `yes`, `on` and `off` are strings, not booleans; `0755` and `1_000` in free-form values
//! (user settings) stay strings; `.inf` in them reads as null; `<<` is an ordinary key;
//! an empty or `null` value read into a string is its text.

mod locate;
mod refusal;

pub use locate::locate;

use std::fmt;

use indexmap::IndexMap;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::{MergeKeyPolicy, NonFiniteFloatPolicy, Options};

/// Largest YAML text devbox parses: 256 KiB, some 40 times the largest file devbox ships
/// (spec and config files are a few KB). It bounds what a parse can cost: the slowest
/// 256 KiB texts measured (a flow list of 130 000 scalars; 100-level-deep flow mappings
/// repeated to the end) take about 0.13 s in a release build and at most 60 MB of memory
/// (serde_yaml: 0.09 s and 55 MB on the same texts).
pub const MAX_YAML_BYTES: usize = 256 * 1024;

/// Deepest nesting of collections (flow and block together) devbox parses: serde_yaml's
/// recursion limit, which devbox used before, so no file it read then is refused now.
pub const MAX_NESTING: usize = 128;

/// Stack of the thread a text is read on. The library's deserializer recurses once per
/// nesting level, measured at about 28 KiB a level in a debug build (under 5 KiB in a
/// release build): [`MAX_NESTING`] levels need some 3.6 MiB there, more than the 2 MiB
/// of a tokio worker or a test thread, and a stack overflow aborts the whole process.
/// Only the pages a parse touches are ever committed.
const READ_STACK_BYTES: usize = 16 << 20;

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

/// How devbox reads YAML: the limits and scalar rules of the module's documentation.
fn read_options() -> Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_anchors: 0,
            max_aliases: 0,
            max_depth: MAX_NESTING,
            // Flow nesting alone: the scanner stops at it before building any event.
            flow_nesting_limit: MAX_NESTING,
        },
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        null_as_string: true,
        merge_keys: MergeKeyPolicy::AsOrdinary,
        non_finite_float_policy: NonFiniteFloatPolicy::PassThrough,
        // Errors are located by line and column; a rendered snippet is not wanted.
        with_snippet: false,
    }
}

/// Refuses a text over [`MAX_YAML_BYTES`] before it is parsed.
fn check_size(text: &str) -> Result<(), YamlError> {
    if text.len() > MAX_YAML_BYTES {
        return Err(YamlError {
            line: None,
            column: None,
            field: None,
            message: format!(
                "the document is {} bytes; devbox reads YAML of at most {MAX_YAML_BYTES} bytes (256 KiB)",
                text.len()
            ),
        });
    }
    Ok(())
}

/// Runs `read` on a thread of its own with [`READ_STACK_BYTES`] of stack.
fn on_read_stack<R: Send>(read: impl FnOnce() -> R + Send) -> Result<R, YamlError> {
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("yaml-read".into())
            .stack_size(READ_STACK_BYTES)
            .spawn_scoped(scope, read)
            .map_err(|err| YamlError {
                line: None,
                column: None,
                field: None,
                message: format!("cannot start a thread to read YAML: {err}"),
            })?;
        Ok(reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// Parses `text` into `T`, reporting where and in which field it went wrong.
pub fn from_str<T: DeserializeOwned + Send>(text: &str) -> Result<T, YamlError> {
    check_size(text)?;
    on_read_stack(|| {
        let mut path = None;
        serde_saphyr::with_deserializer_from_str_with_options(
            text,
            read_options(),
            |deserializer| {
                serde_path_to_error::deserialize(deserializer).map_err(|err| {
                    path = Some(err.path().to_string());
                    err.into_inner()
                })
            },
        )
        .map_err(|err| refusal::to_yaml_error(text, path.as_deref(), &err))
    })?
}

/// Serialises `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|err| YamlError {
        line: None,
        column: None,
        field: None,
        message: err.to_string(),
    })
}

/// Reads a null as the type's default: for collections and config sections, where a
/// key with nothing after it (`extensions:`, or a `server:` whose entries are all
/// commented out) means "none". serde-saphyr reads such an empty value as null and,
/// unlike serde_yaml before it, refuses null for a list or a mapping; the attribute
/// `deserialize_with = "crate::yaml::null_as_default"` keeps the old reading on every
/// such field (JSON's `null` reads the same).
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or_default())
}

/// The keys of the top-level mapping of `text`, or `None` when the document is not a
/// mapping (or not YAML devbox reads at all). Used to tell a spec file from a config file.
pub fn top_level_keys(text: &str) -> Option<Vec<String>> {
    check_size(text).ok()?;
    let read = on_read_stack(|| {
        serde_saphyr::from_str_with_options::<Option<IndexMap<String, IgnoredAny>>>(
            text,
            read_options(),
        )
    });
    // `None` also for a text with no document at all (empty, or only comments).
    let mapping = read.ok()?.ok()??;
    Some(mapping.into_keys().collect())
}

#[cfg(test)]
mod tests;
