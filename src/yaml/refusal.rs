//! Turns what the YAML library refuses into a [`YamlError`]: line, column, field and a
//! message in devbox's words where the library's own would say too little.
//!
//! Anchors and aliases are refused by the library's budget at the node they belong to, and
//! an alias with no anchor as an unknown reference; the message devbox gives names the
//! anchor or alias and points at it, so the text is walked once more with the library's
//! parser (its anchor and unresolved-alias events carry the name and place) to find it.
//! That walk only happens on this error path.

use std::borrow::Cow;

use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::{self, ErrorKind, Event, Parser};
use serde_saphyr::{
    Error, ExternalMessageSource, Localizer, Location, MessageFormatter, SnippetMode,
    UserMessageFormatter,
};

use super::{MAX_NESTING, YamlError, locate};

/// Longest anchor name, or scalar, quoted in a message; longer ones are cut with `…`.
const QUOTED_CHARS: usize = 40;

/// The [`YamlError`] for `err`, raised while reading `text`; `path` is the field being
/// read when it happened, as `serde_path_to_error` tracked it.
pub(super) fn to_yaml_error(text: &str, path: Option<&str>, err: &Error) -> YamlError {
    let err = err.without_snippet();
    let located = |location: Location| {
        (
            usize::try_from(location.line()).ok(),
            usize::try_from(location.column()).ok(),
        )
    };
    if is_anchor_or_alias(err)
        && let Some(refusal) = first_anchor_or_alias(text)
    {
        return refusal;
    }
    if is_too_deep(err) {
        let (line, column) = err.location().map_or((None, None), located);
        return YamlError {
            line,
            column,
            field: None,
            message: format!(
                "collections nested deeper than {MAX_NESTING} levels are not supported in devbox files"
            ),
        };
    }
    // A syntax error is the text's, not a field's (the parser streams, so one can come up
    // while a field is being read).
    let field = path
        .filter(|_| parser_error(err).is_none())
        .and_then(field_of);
    let (line, column) = match (err, &field) {
        // The library places a missing field at the end of the mapping that lacks it;
        // devbox points at the mapping: its key, or where the document's own one starts.
        (Error::SerdeMissingField { .. }, Some(field)) => located_field(text, field),
        (Error::SerdeMissingField { .. }, None) => document_start(text),
        _ => match err.location() {
            Some(location) => located(location),
            None => field
                .as_deref()
                .map_or((None, None), |f| located_field(text, f)),
        },
    };
    let wording = Wording { text };
    let message = err.render_with_options(serde_saphyr::render_options! {
        formatter: &wording,
        snippets: SnippetMode::Off,
    });
    YamlError {
        line,
        column,
        field,
        message,
    }
}

fn located_field(text: &str, field: &str) -> (Option<usize>, Option<usize>) {
    locate(text, field).map_or((None, None), |(line, column)| (Some(line), Some(column)))
}

/// Where the first node of `text` starts (past comments and `---`); 1:1 when the
/// parser finds none.
fn document_start(text: &str) -> (Option<usize>, Option<usize>) {
    let start = Parser::new_from_str(text)
        .map_while(Result::ok)
        .find(|(event, _)| event.is_node())
        .map_or((1, 1), |(_, span)| {
            (span.start.line(), span.start.col() + 1)
        });
    (Some(start.0), Some(start.1))
}

/// The dotted field path, without the root (`.`) or a trailing key the tracker could not
/// name (`?`: a duplicate key, say; the mapping holding it is the field).
fn field_of(path: &str) -> Option<String> {
    let mut path = path;
    while let Some(parent) = path.strip_suffix('?') {
        path = parent.strip_suffix('.').unwrap_or(parent);
    }
    (!path.is_empty() && path != ".").then(|| path.to_owned())
}

fn is_anchor_or_alias(err: &Error) -> bool {
    matches!(
        err,
        Error::Budget {
            breach: BudgetBreach::Anchors { .. } | BudgetBreach::Aliases { .. },
            ..
        } | Error::UnknownAnchor { .. }
    ) || parser_error(err).is_some_and(|kind| matches!(kind, ErrorKind::UnknownAnchor))
}

fn is_too_deep(err: &Error) -> bool {
    matches!(
        err,
        Error::Budget {
            breach: BudgetBreach::Depth { .. },
            ..
        }
    ) || parser_error(err).is_some_and(|kind| matches!(kind, ErrorKind::RecursionLimitExceeded))
}

/// The kind of a syntax error the parser reported, if `err` is one.
fn parser_error(err: &Error) -> Option<&ErrorKind> {
    match err {
        Error::ExternalMessage { source, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan) => Some(scan.kind()),
            _ => None,
        },
        _ => None,
    }
}

/// The first anchor (`&name`) or alias (`*name`) of `text`, as a located refusal; `None`
/// if the parser meets a syntax error first (then that error is the one to report).
fn first_anchor_or_alias(text: &str) -> Option<YamlError> {
    let options = granit_parser::options! {
        emit_anchor_events: true,
        emit_unresolved_aliases: true,
        flow_nesting_limit: MAX_NESTING,
    };
    for event in Parser::new_from_str_with_options(text, options) {
        let (event, span) = event.ok()?;
        let (sigil, name) = match event {
            Event::Anchor(_, name) => ('&', name),
            Event::UnresolvedAlias(name) => ('*', name),
            Event::Alias(_) => {
                let token = text
                    .get(span.start.index()..span.end.index())
                    .unwrap_or("*");
                ('*', Cow::Borrowed(token.trim_start_matches('*')))
            }
            _ => continue,
        };
        let what = if sigil == '&' { "anchor" } else { "alias" };
        return Some(YamlError {
            line: Some(span.start.line()),
            column: Some(span.start.col() + 1),
            field: None,
            message: format!(
                "{what} `{sigil}{}`: anchors and aliases (&name, *name) are not supported in devbox files",
                shortened(&name)
            ),
        });
    }
    None
}

/// `text` cut to [`QUOTED_CHARS`] characters, with `…` when it was longer.
fn shortened(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// The library's user-facing messages, except where devbox's say more: a scalar that is
/// not a valid number (or boolean) is quoted, and "expected sequence start" and the like
/// name the kind of value wanted. Locations are kept apart from the text, in
/// [`YamlError`]'s own fields.
struct Wording<'a> {
    text: &'a str,
}

impl Wording<'_> {
    /// The source text at `location`, if the library gave its byte range.
    fn source_at(&self, location: &Location) -> Option<&str> {
        let span = location.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text
            .get(start..start.checked_add(len)?)
            .filter(|s| !s.is_empty())
    }
}

impl MessageFormatter for Wording<'_> {
    fn localizer(&self) -> &dyn Localizer {
        &WithoutLocation
    }

    fn format_message<'e>(&self, err: &'e Error) -> Cow<'e, str> {
        match err {
            Error::InvalidScalar { ty, location } => match self.source_at(location) {
                Some(source) => Cow::Owned(format!(
                    "invalid value `{}`, expected {ty}",
                    shortened(source)
                )),
                None => Cow::Owned(format!("invalid value, expected {ty}")),
            },
            Error::Unexpected { expected, location } => {
                // An empty value is null in YAML, not an empty collection.
                let empty = self
                    .source_at(location)
                    .is_none_or(|s| matches!(s, "~" | "null" | "Null" | "NULL"));
                Cow::Owned(match (*expected, empty) {
                    ("sequence start", false) => "expected a list".to_owned(),
                    ("sequence start", true) => {
                        "expected a list (an empty value is null: write `[]` for no items)"
                            .to_owned()
                    }
                    ("mapping start", false) => "expected a mapping".to_owned(),
                    ("mapping start", true) => {
                        "expected a mapping (an empty value is null: write `{}` for no entries)"
                            .to_owned()
                    }
                    // Raised for any scalar (a number too) when a collection came instead.
                    ("string scalar", _) => {
                        "expected a single value, not a list or mapping".to_owned()
                    }
                    (other, _) => format!("expected {other}"),
                })
            }
            Error::ExternallyTaggedEnumExpectedScalarOrMapping { .. } => {
                Cow::Borrowed("expected a name (or a mapping), not a list")
            }
            _ => UserMessageFormatter.format_message(err),
        }
    }
}

/// Leaves the message as it is: [`YamlError`] carries the line and column itself.
struct WithoutLocation;

impl Localizer for WithoutLocation {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _: Location) -> Cow<'a, str> {
        base
    }
}
