//! Limits checked before a YAML text reaches serde_yaml.
//!
//! Every text handed to serde_yaml ([`super::from_str`], [`super::top_level_keys`]) first
//! goes through [`precheck`], which rejects, with the line and column where it found them:
//!
//! - texts over [`MAX_YAML_BYTES`];
//! - collections nested deeper than [`MAX_NESTING`] (serde_yaml's own limit). libyaml's
//!   scanner (unsafe-libyaml, under serde_yaml) costs time proportional to the flow depth
//!   for every token, so 40 KB of `[` took seconds to scan before serde_yaml refused it;
//! - anchors and aliases (`&name`, `*name`). serde_yaml expands aliases with no budget on
//!   the output (it limits alias jumps per event, not values made), so a spec of a few KB
//!   could expand to millions of values. Spec and config files are small, hand- or
//!   API-written documents with no use for them.
//!
//! The check is one linear pass that follows libyaml's scanner (0.2.5, as translated in
//! unsafe-libyaml 0.2.11) token by token, keeping only what decides where tokens start
//! and end: the flow level, the block indentation stack and the one simple key that can
//! open a block mapping. It builds no values and leaves syntax errors to serde_yaml: where
//! libyaml would give up, it stops too, or goes on when that cannot matter (libyaml hands
//! serde_yaml nothing past its first error). An `&` or `*` is therefore an anchor or
//! alias exactly when libyaml would scan one: not inside quotes, comments, block scalars
//! (`|`, `>`) or plain scalars (`cmd: ls *.txt`, `title: R&D`, a continuation line that
//! starts with `*`), nor inside a tag (`!a&b`). A simpler line-based heuristic would
//! disagree with libyaml about multi-line plain and quoted scalars and block-scalar
//! indentation, and each disagreement is either a valid file refused or an alias let
//! through. Driving unsafe-libyaml's own scanner instead would mean a direct dependency
//! on its C-style unsafe API, and its scanner is the part that is slow on deep nesting,
//! so the depth limit would still need a pass like this one in front of it.

use super::YamlError;

/// Largest YAML text devbox parses: 256 KiB, some 40 times the largest file devbox ships
/// (spec and config files are a few KB). With [`MAX_NESTING`] it bounds what a parse
/// can cost: libyaml's scanner still spends time proportional to the flow depth on every
/// token, so the worst text allowed (every token 128 levels deep) takes about 0.2 s in a
/// release build, against 0.9 s at 1 MiB.
pub const MAX_YAML_BYTES: usize = 256 * 1024;

/// Deepest nesting of collections (flow and block together) devbox parses: serde_yaml's
/// own recursion limit, so no document it would accept is refused, and libyaml's scanner
/// never sees the deep flow nesting it is slow on.
pub const MAX_NESTING: usize = 128;

/// Refuses, before serde_yaml sees it, a text that is too large, nested deeper than
/// [`MAX_NESTING`], or that uses anchors or aliases (see the module's documentation).
/// [`super::from_str`] and [`super::top_level_keys`] call it first.
///
/// A text with a syntax error may pass (serde_yaml then reports that error), and one
/// with an anchor after a syntax error is refused for the anchor: either way it is not
/// read.
pub fn precheck(text: &str) -> Result<(), YamlError> {
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
    Scanner::new(text)
        .run()
        .map_err(|Refusal { at, message }| YamlError {
            line: Some(at.line + 1),
            column: Some(at.column + 1),
            field: None,
            message,
        })
}

/// A position in the text: byte offset, and 0-based line and column (in characters, as
/// libyaml counts them; serde_yaml adds 1 to both).
#[derive(Debug, Clone, Copy)]
struct Mark {
    pos: usize,
    line: usize,
    column: usize,
}

/// What [`precheck`] refuses, and where.
struct Refusal {
    at: Mark,
    message: String,
}

/// Whether libyaml's scanner goes on after a token: `false` at the end of the stream
/// and where libyaml reports a syntax error (nothing after it reaches serde_yaml).
type Go = Result<bool, Refusal>;

/// libyaml's reader refuses any other character, so the scanner never gets past it.
fn is_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        || c >= '\u{10000}'
}

/// libyaml's `IS_ALPHA`: the characters of anchor names and tag handles.
fn is_alpha(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The part of libyaml's scanner that decides where tokens start and end (see the
/// module's documentation). Each method names the libyaml function it follows; checks
/// that only produce libyaml errors are left out, except where going on would be
/// meaningless (then the scan stops, as libyaml does).
struct Scanner<'a> {
    /// The text up to the first character libyaml's reader refuses.
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    column: usize,
    flow_level: usize,
    /// Column of the innermost block collection, -1 at the top level.
    indent: isize,
    /// The enclosing block collections' indents.
    indents: Vec<isize>,
    simple_key_allowed: bool,
    /// The possible simple key of the block context (flow level 0): where a block
    /// mapping starts if a `:` follows. Those of flow levels change no indentation.
    simple_key: Option<Mark>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        let end = text
            .char_indices()
            .find(|&(_, c)| !is_printable(c))
            .map_or(text.len(), |(i, _)| i);
        // The reader drops a leading byte order mark before the scanner starts.
        let pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
        Scanner {
            bytes: &text.as_bytes()[..end],
            pos,
            line: 0,
            column: 0,
            flow_level: 0,
            indent: -1,
            indents: Vec::new(),
            simple_key_allowed: true,
            simple_key: None,
        }
    }

    fn run(mut self) -> Result<(), Refusal> {
        while self.fetch_next_token()? {}
        Ok(())
    }

    // -- Characters (libyaml's macros). Past the end reads as 0, libyaml's `IS_Z`.

    fn at(&self, offset: usize) -> u8 {
        self.bytes.get(self.pos + offset).copied().unwrap_or(0)
    }

    fn is_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn is_break_at(&self, offset: usize) -> bool {
        let rest = self.bytes.get(self.pos + offset..).unwrap_or_default();
        matches!(
            rest,
            [b'\r' | b'\n', ..] | [0xc2, 0x85, ..] | [0xe2, 0x80, 0xa8 | 0xa9, ..]
        )
    }

    fn is_blank_at(&self, offset: usize) -> bool {
        matches!(self.at(offset), b' ' | b'\t')
    }

    fn is_breakz_at(&self, offset: usize) -> bool {
        self.pos + offset >= self.bytes.len() || self.is_break_at(offset)
    }

    fn is_blankz_at(&self, offset: usize) -> bool {
        self.is_blank_at(offset) || self.is_breakz_at(offset)
    }

    fn mark(&self) -> Mark {
        Mark {
            pos: self.pos,
            line: self.line,
            column: self.column,
        }
    }

    /// `SKIP`: one character.
    fn skip(&mut self) {
        let width = match self.at(0) {
            0x00..=0x7f => 1,
            0x80..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        self.pos += width;
        self.column += 1;
    }

    /// `SKIP_LINE`: one line break (`\r\n` counts as one), if there is one.
    fn skip_line(&mut self) {
        if self.at(0) == b'\r' && self.at(1) == b'\n' {
            self.pos += 2;
        } else if self.is_break_at(0) {
            self.skip();
        } else {
            return;
        }
        self.line += 1;
        self.column = 0;
    }

    fn skip_to_break(&mut self) {
        while !self.is_breakz_at(0) {
            self.skip();
        }
    }

    /// `---` or `...` at the start of a line.
    fn is_document_indicator(&self) -> bool {
        self.column == 0
            && matches!(
                &self.bytes[self.pos.min(self.bytes.len())..],
                [b'-', b'-', b'-', ..] | [b'.', b'.', b'.', ..]
            )
            && self.is_blankz_at(3)
    }

    // -- Indentation, flow level and simple keys.

    fn check_depth(&self, at: Mark) -> Result<(), Refusal> {
        if self.indents.len() + self.flow_level > MAX_NESTING {
            return Err(Refusal {
                at,
                message: format!(
                    "collections nested deeper than {MAX_NESTING} levels are not supported in devbox files"
                ),
            });
        }
        Ok(())
    }

    /// `yaml_parser_roll_indent`: a block collection starts at `at`'s column.
    fn roll_indent(&mut self, at: Mark) -> Result<(), Refusal> {
        let column = at.column as isize;
        if self.flow_level == 0 && self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            self.check_depth(at)?;
        }
        Ok(())
    }

    /// `yaml_parser_unroll_indent`: block collections indented deeper than `column` end.
    fn unroll_indent(&mut self, column: isize) {
        if self.flow_level == 0 {
            while self.indent > column {
                self.indent = self.indents.pop().unwrap_or(-1);
            }
        }
    }

    /// `yaml_parser_stale_simple_keys`: a simple key ends with its line, or 1024 bytes on.
    fn stale_simple_keys(&mut self) {
        if let Some(key) = self.simple_key
            && (key.line < self.line || key.pos + 1024 < self.pos)
        {
            self.simple_key = None;
        }
    }

    /// `yaml_parser_save_simple_key`: the token starting here may be a mapping key.
    fn save_simple_key(&mut self) {
        if self.flow_level == 0 && self.simple_key_allowed {
            self.simple_key = Some(self.mark());
        }
    }

    /// `yaml_parser_remove_simple_key`.
    fn remove_simple_key(&mut self) {
        if self.flow_level == 0 {
            self.simple_key = None;
        }
    }

    // -- Tokens.

    /// `yaml_parser_fetch_next_token`.
    fn fetch_next_token(&mut self) -> Go {
        self.scan_to_next_token();
        self.stale_simple_keys();
        self.unroll_indent(self.column as isize);
        if self.is_end() {
            return Ok(false);
        }
        let c = self.at(0);
        if self.column == 0 && c == b'%' {
            // A directive: its line, comment included.
            self.unroll_indent(-1);
            self.remove_simple_key();
            self.simple_key_allowed = false;
            self.skip_to_break();
            self.skip_line();
            return Ok(true);
        }
        if self.is_document_indicator() {
            self.unroll_indent(-1);
            self.remove_simple_key();
            self.simple_key_allowed = false;
            self.pos += 3;
            self.column += 3;
            return Ok(true);
        }
        let start = self.mark();
        match c {
            b'[' | b'{' => {
                self.save_simple_key();
                self.flow_level += 1;
                self.check_depth(start)?;
                self.simple_key_allowed = true;
                self.skip();
            }
            b']' | b'}' => {
                self.remove_simple_key();
                self.flow_level = self.flow_level.saturating_sub(1);
                self.simple_key_allowed = false;
                self.skip();
            }
            b',' => {
                self.remove_simple_key();
                self.simple_key_allowed = true;
                self.skip();
            }
            b'-' if self.is_blankz_at(1) => {
                self.roll_indent(start)?;
                self.remove_simple_key();
                self.simple_key_allowed = true;
                self.skip();
            }
            b'?' if self.flow_level > 0 || self.is_blankz_at(1) => {
                self.roll_indent(start)?;
                self.remove_simple_key();
                self.simple_key_allowed = self.flow_level == 0;
                self.skip();
            }
            b':' if self.flow_level > 0 || self.is_blankz_at(1) => {
                // `yaml_parser_fetch_value`: a block mapping starts at its key, or here.
                if self.flow_level == 0 {
                    if let Some(key) = self.simple_key.take() {
                        self.roll_indent(key)?;
                        self.simple_key_allowed = false;
                    } else {
                        self.roll_indent(start)?;
                        self.simple_key_allowed = true;
                    }
                } else {
                    self.simple_key_allowed = false;
                }
                self.skip();
            }
            b'*' | b'&' => {
                self.save_simple_key();
                self.simple_key_allowed = false;
                return self.scan_anchor();
            }
            b'!' => {
                self.save_simple_key();
                self.simple_key_allowed = false;
                return Ok(self.scan_tag());
            }
            b'|' | b'>' if self.flow_level == 0 => {
                self.remove_simple_key();
                self.simple_key_allowed = true;
                return Ok(self.scan_block_scalar());
            }
            b'\'' | b'"' => {
                self.save_simple_key();
                self.simple_key_allowed = false;
                return Ok(self.scan_flow_scalar(c == b'\''));
            }
            _ if self.starts_plain_scalar() => {
                self.save_simple_key();
                self.simple_key_allowed = false;
                return Ok(self.scan_plain_scalar());
            }
            // "found character that cannot start any token"
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `yaml_parser_scan_to_next_token`: blanks, comments and line breaks. (libyaml
    /// refuses a tab where a simple key may start in block context; skipping it here
    /// too is harmless, as libyaml stops there.)
    fn scan_to_next_token(&mut self) {
        loop {
            if self.column == 0
                && self.bytes[self.pos.min(self.bytes.len())..].starts_with(b"\xef\xbb\xbf")
            {
                self.skip();
            }
            while self.is_blank_at(0) {
                self.skip();
            }
            if self.at(0) == b'#' {
                self.skip_to_break();
            }
            if !self.is_break_at(0) {
                return;
            }
            self.skip_line();
            if self.flow_level == 0 {
                self.simple_key_allowed = true;
            }
        }
    }

    /// The test at the end of `yaml_parser_fetch_next_token`.
    fn starts_plain_scalar(&self) -> bool {
        let c = self.at(0);
        !(self.is_blankz_at(0) || b"-?:,[]{}#&*!|>'\"%@`".contains(&c))
            || (c == b'-' && !self.is_blank_at(1))
            || (self.flow_level == 0 && matches!(c, b'?' | b':') && !self.is_blankz_at(1))
    }

    /// `yaml_parser_scan_anchor`: an anchor or alias token is refused; a malformed one
    /// is libyaml's error.
    fn scan_anchor(&mut self) -> Go {
        let start = self.mark();
        let kind = self.at(0);
        self.skip();
        let name_start = self.pos;
        while is_alpha(self.at(0)) {
            self.skip();
        }
        let name = &self.bytes[name_start..self.pos];
        if name.is_empty() || !(self.is_blankz_at(0) || b"?:,]}%@`".contains(&self.at(0))) {
            return Ok(false);
        }
        // Names are ASCII (`is_alpha`); long ones are cut for the message.
        let shown = String::from_utf8_lossy(&name[..name.len().min(40)]);
        let ellipsis = if name.len() > 40 { "…" } else { "" };
        let what = if kind == b'&' { "anchor" } else { "alias" };
        Err(Refusal {
            at: start,
            message: format!(
                "{what} `{}{shown}{ellipsis}`: anchors and aliases (&name, *name) are not supported in devbox files",
                char::from(kind)
            ),
        })
    }

    /// `yaml_parser_scan_tag`: a tag, whose characters may include `&` and `*`.
    fn scan_tag(&mut self) -> bool {
        if self.at(1) == b'<' {
            self.pos += 2;
            self.column += 2;
            if self.scan_tag_uri(true) == Some(0) || self.at(0) != b'>' {
                return false;
            }
            self.skip();
        } else {
            // The handle: `!`, `!!` or `!name!`; or `!` and the start of a local tag.
            self.skip();
            while is_alpha(self.at(0)) {
                self.skip();
            }
            let named = self.at(0) == b'!';
            if named {
                self.skip();
            }
            match self.scan_tag_uri(false) {
                None => return false,
                Some(0) if named => return false,
                Some(_) => {}
            }
        }
        self.is_blankz_at(0) || (self.flow_level > 0 && self.at(0) == b',')
    }

    /// `yaml_parser_scan_tag_uri`: the number of URI characters, `None` on a bad `%` escape.
    fn scan_tag_uri(&mut self, verbatim: bool) -> Option<usize> {
        let mut length = 0;
        loop {
            let c = self.at(0);
            if c == b'%' {
                if !(self.at(1).is_ascii_hexdigit() && self.at(2).is_ascii_hexdigit()) {
                    return None;
                }
                self.pos += 3;
                self.column += 3;
            } else if is_alpha(c)
                || b";/?:@&=+$.!~*'()".contains(&c)
                || (verbatim && b",[]".contains(&c))
            {
                self.skip();
            } else {
                return Some(length);
            }
            length += 1;
        }
    }

    /// `yaml_parser_scan_block_scalar`: the header, then every line indented at least
    /// as much as the first non-empty one (and deeper than the enclosing collection).
    fn scan_block_scalar(&mut self) -> bool {
        self.skip();
        // Chomping (`+`, `-`) and indentation (1-9) indicators, in either order.
        let mut increment: isize = 0;
        let chomping = |b: u8| matches!(b, b'+' | b'-');
        if chomping(self.at(0)) {
            self.skip();
            if self.at(0).is_ascii_digit() {
                if self.at(0) == b'0' {
                    return false;
                }
                increment = isize::from(self.at(0) - b'0');
                self.skip();
            }
        } else if self.at(0).is_ascii_digit() {
            if self.at(0) == b'0' {
                return false;
            }
            increment = isize::from(self.at(0) - b'0');
            self.skip();
            if chomping(self.at(0)) {
                self.skip();
            }
        }
        while self.is_blank_at(0) {
            self.skip();
        }
        if self.at(0) == b'#' {
            self.skip_to_break();
        }
        if !self.is_breakz_at(0) {
            return false;
        }
        self.skip_line();
        let mut indent = 0;
        if increment != 0 {
            indent = if self.indent >= 0 {
                self.indent + increment
            } else {
                increment
            };
        }
        if !self.block_scalar_breaks(&mut indent) {
            return false;
        }
        while self.column as isize == indent && !self.is_end() {
            self.skip_to_break();
            self.skip_line();
            if !self.block_scalar_breaks(&mut indent) {
                return false;
            }
        }
        true
    }

    /// `yaml_parser_scan_block_scalar_breaks`: empty lines and indentation; settles the
    /// scalar's indentation when no indicator gave it.
    fn block_scalar_breaks(&mut self, indent: &mut isize) -> bool {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || (self.column as isize) < *indent) && self.at(0) == b' ' {
                self.skip();
            }
            max_indent = max_indent.max(self.column as isize);
            if (*indent == 0 || (self.column as isize) < *indent) && self.at(0) == b'\t' {
                return false;
            }
            if !self.is_break_at(0) {
                break;
            }
            self.skip_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
        true
    }

    /// `yaml_parser_scan_flow_scalar`: a single- or double-quoted scalar, over any
    /// number of lines.
    fn scan_flow_scalar(&mut self, single: bool) -> bool {
        let quote = if single { b'\'' } else { b'"' };
        self.skip();
        loop {
            if self.is_document_indicator() || self.is_end() {
                return false;
            }
            while !self.is_blankz_at(0) {
                let c = self.at(0);
                if single && c == b'\'' && self.at(1) == b'\'' {
                    self.pos += 2;
                    self.column += 2;
                } else if c == quote {
                    break;
                } else if !single && c == b'\\' && self.is_break_at(1) {
                    self.skip();
                    self.skip_line();
                    break;
                } else if !single && c == b'\\' {
                    let hex_digits = match self.at(1) {
                        b'0' | b'a' | b'b' | b't' | b'\t' | b'n' | b'v' | b'f' | b'r' | b'e'
                        | b' ' | b'"' | b'/' | b'\\' | b'N' | b'_' | b'L' | b'P' => 0,
                        b'x' => 2,
                        b'u' => 4,
                        b'U' => 8,
                        _ => return false,
                    };
                    self.pos += 2;
                    self.column += 2;
                    for _ in 0..hex_digits {
                        if !self.at(0).is_ascii_hexdigit() {
                            return false;
                        }
                        self.skip();
                    }
                } else {
                    self.skip();
                }
            }
            if self.at(0) == quote {
                self.skip();
                return true;
            }
            while self.is_blank_at(0) || self.is_break_at(0) {
                if self.is_blank_at(0) {
                    self.skip();
                } else {
                    self.skip_line();
                }
            }
        }
    }

    /// `yaml_parser_scan_plain_scalar`: a plain scalar, which goes on over lines indented
    /// deeper than the enclosing block collection (and any lines in flow context).
    fn scan_plain_scalar(&mut self) -> bool {
        let indent = self.indent + 1;
        let mut leading_blanks = false;
        loop {
            if self.is_document_indicator() || self.at(0) == b'#' {
                break;
            }
            while !self.is_blankz_at(0) {
                let c = self.at(0);
                if self.flow_level > 0 && c == b':' && b",?[]{}".contains(&self.at(1)) {
                    return false;
                }
                if (c == b':' && self.is_blankz_at(1))
                    || (self.flow_level > 0 && b",[]{}".contains(&c))
                {
                    break;
                }
                leading_blanks = false;
                self.skip();
            }
            if !(self.is_blank_at(0) || self.is_break_at(0)) {
                break;
            }
            while self.is_blank_at(0) || self.is_break_at(0) {
                if self.is_blank_at(0) {
                    if leading_blanks && (self.column as isize) < indent && self.at(0) == b'\t' {
                        return false;
                    }
                    self.skip();
                } else {
                    self.skip_line();
                    leading_blanks = true;
                }
            }
            if self.flow_level == 0 && (self.column as isize) < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
        true
    }
}
#[cfg(test)]
mod tests {
    use super::super::{from_str, top_level_keys};
    use super::*;

    /// The 1-based (line, column) and message of what `precheck` refuses in `text`.
    fn refused(text: &str) -> (usize, usize, String) {
        let err = precheck(text).expect_err(text);
        assert_eq!(err.field, None, "{text}");
        (
            err.line.expect("a line"),
            err.column.expect("a column"),
            err.message,
        )
    }

    /// `text` passes the check and parses as YAML.
    fn accepted(text: &str) -> serde_yaml::Value {
        if let Err(err) = precheck(text) {
            panic!(
                "refused at {:?}:{:?}: {}\n{text}",
                err.line, err.column, err.message
            );
        }
        from_str(text).unwrap_or_else(|err| panic!("{err}\n{text}"))
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
            ("a: 1\rb: 2\u{2028}c: *x\n", (3, 4), "alias `*x`"),
            ("\u{feff}a: *x\n", (1, 4), "alias `*x`"),
        ];
        for (text, at, what) in cases {
            let (line, column, message) = refused(text);
            assert_eq!((line, column), at, "{text:?}: {message}");
            assert_eq!(message, format!("{what}: {ANCHORS}"), "{text:?}");
        }
        let long = format!("a: &{} x\n", "n".repeat(100));
        let (_, _, message) = refused(&long);
        assert!(message.starts_with(&format!("anchor `&{}…`: ", "n".repeat(40))));
    }

    #[test]
    fn refusals_become_located_diagnostics() {
        let text = "apiVersion: devbox/v1\nkind: DevServer\nmetadata: {name: fuzz}\nspec:\n  user_settings:\n    a: &a [x]\n    b: [*a]\n";
        let err = from_str::<serde_yaml::Value>(text).unwrap_err();
        let diagnostic =
            crate::diagnostic::Diagnostic::from_yaml(std::path::Path::new("specs/fuzz.yaml"), err);
        assert_eq!(
            diagnostic.to_string(),
            format!("specs/fuzz.yaml:6:8: anchor `&a`: {ANCHORS}")
        );
        assert_eq!(top_level_keys(text), None);
    }

    #[test]
    fn malformed_anchors_are_left_to_the_parser() {
        // libyaml refuses these itself ("did not find expected alphabetic or numeric
        // character"); its message says more than ours would.
        for text in ["a: & b\n", "- * item\n", "a: &é x\n"] {
            precheck(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let err = from_str::<serde_yaml::Value>(text).unwrap_err();
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
        // Flow: refused at the bracket that opens level 129, whether or not it closes;
        // the mapping `spec:` is a level of its own.
        for (text, column) in [
            (format!("spec: {}", "[".repeat(20_000)), 6 + 128),
            (format!("spec: {}\n", "{".repeat(20_000)), 6 + 128),
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
        assert_eq!(refused(&mixed), (1, 2 * 100 + 29, message));
    }

    #[test]
    fn size_is_capped() {
        let comment = format!("# {}\n", "x".repeat(MAX_YAML_BYTES - 3));
        assert_eq!(comment.len(), MAX_YAML_BYTES);
        precheck(&comment).unwrap();
        let too_big = format!("{comment}a: 1\n");
        let err = from_str::<serde_yaml::Value>(&too_big).unwrap_err();
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
            if let Err(err) = precheck(&text) {
                panic!(
                    "{}:{:?}:{:?}: {}",
                    file.display(),
                    err.line,
                    err.column,
                    err.message
                );
            }
            from_str::<serde_yaml::Value>(&text).unwrap();
        }
    }
}
