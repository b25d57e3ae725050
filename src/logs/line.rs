//! How long one log line may be, and how an over-long line is cut and marked.
//!
//! A line is kept whole up to [`MAX_LINE_BYTES`]; a longer one keeps its first
//! [`MAX_LINE_BYTES`] and ends with a visible mark that says how long it was, so
//! whoever reads the log knows it was cut and by how much. Every reader of log
//! output (the in-memory ring, the file tails, the failure reasons) cuts the same way.

/// The most bytes of one log line that devbox keeps. 16 KiB holds any line a person
/// reads (stack frames, a JSON log record, a long command line) many times over,
/// and keeps the worst case small: the ring's default 1 MiB still holds 64 such
/// lines, and the live feed's 1024 slots stay under 17 MiB.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// How long the line was, as far as the reader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// The whole line was seen (its bytes were counted, not kept).
    Exactly(u64),
    /// Only part of the line was seen (its start lies before what was read).
    MoreThan(u64),
}

/// `bytes` as text, cut to [`MAX_LINE_BYTES`] and marked when `length` says the line
/// was longer than that (or only partly seen). Invalid UTF-8 is replaced, not refused:
/// a log shows what a program printed, whatever it was.
pub fn cut(bytes: &[u8], length: Length) -> String {
    let kept = &bytes[..bytes.len().min(MAX_LINE_BYTES)];
    let mut text = String::from_utf8_lossy(kept).into_owned();
    match length {
        Length::Exactly(total) if total <= MAX_LINE_BYTES as u64 => {}
        Length::Exactly(total) => text.push_str(&format!(" … [cut: {total} bytes in all]")),
        Length::MoreThan(seen) => text.push_str(&format!(" … [cut: more than {seen} bytes]")),
    }
    text
}

/// Room for the mark of a cut line (and a character that the cut split, replaced):
/// a line up to [`MAX_LINE_BYTES`] and this much longer is taken as cut already.
const MARK_BYTES: usize = 64;

/// The most bytes a line has once cut and marked.
pub const MAX_MARKED_LINE_BYTES: usize = MAX_LINE_BYTES + MARK_BYTES;

/// `message` cut like a line of [`MAX_LINE_BYTES`] (for text devbox itself makes, such
/// as events that quote code-server's output). A line cut already is left as it is.
pub fn cut_text(message: String) -> String {
    if message.len() <= MAX_MARKED_LINE_BYTES {
        return message;
    }
    cut(message.as_bytes(), Length::Exactly(message.len() as u64))
}

/// A line being read piece by piece (its newline may be megabytes away): keeps at
/// most [`MAX_LINE_BYTES`] of it and counts the rest.
#[derive(Debug, Default)]
pub struct PartialLine {
    kept: Vec<u8>,
    total: u64,
}

impl PartialLine {
    /// Adds the next piece of the line.
    pub fn extend(&mut self, piece: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&piece[..piece.len().min(room)]);
        self.total += piece.len() as u64;
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The line so far, cut and marked, trailing whitespace trimmed; the reader starts
    /// a new line. `None` for a blank line.
    pub fn take(&mut self) -> Option<String> {
        let total = std::mem::take(&mut self.total);
        let kept = std::mem::take(&mut self.kept);
        let text = cut(&kept, Length::Exactly(total));
        let text = if total <= MAX_LINE_BYTES as u64 {
            text.trim_end().to_owned()
        } else {
            text
        };
        (!text.trim().is_empty()).then_some(text)
    }

    /// Bytes of the line held in memory.
    #[cfg(test)]
    pub fn kept_len(&self) -> usize {
        self.kept.len()
    }

    /// Forgets the line (its file was truncated under it).
    pub fn clear(&mut self) {
        self.kept.clear();
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lines_are_kept_whole() {
        assert_eq!(cut(b"hello", Length::Exactly(5)), "hello");
        assert_eq!(cut_text("x".repeat(MAX_LINE_BYTES)).len(), MAX_LINE_BYTES);
    }

    #[test]
    fn long_lines_are_cut_and_say_how_long_they_were() {
        let line = vec![b'a'; 20 << 20];
        let text = cut(&line, Length::Exactly(line.len() as u64));
        assert!(text.starts_with(&"a".repeat(MAX_LINE_BYTES)));
        assert!(
            text.ends_with(" … [cut: 20971520 bytes in all]"),
            "{}",
            &text[MAX_LINE_BYTES..]
        );
        assert!(text.len() < MAX_MARKED_LINE_BYTES);
        assert_eq!(cut_text(text.clone()), text, "cut once only");
        let text = cut(b"tail", Length::MoreThan(4));
        assert_eq!(text, "tail … [cut: more than 4 bytes]");
    }

    #[test]
    fn a_line_read_in_pieces_keeps_only_its_start() {
        let mut line = PartialLine::default();
        for _ in 0..1000 {
            line.extend(&[b'z'; 1 << 16]);
            assert!(line.kept.len() <= MAX_LINE_BYTES);
        }
        let text = line.take().unwrap();
        assert!(text.ends_with(&format!("[cut: {} bytes in all]", 1000u64 << 16)));
        assert!(line.is_empty());
        line.extend(b"  \r");
        assert_eq!(line.take(), None, "blank lines are dropped");
        line.extend(b"ok\r");
        assert_eq!(line.take().as_deref(), Some("ok"));
    }

    #[test]
    fn a_cut_inside_a_character_stays_valid_text() {
        // One byte first, so that the cut falls inside a two-byte character.
        let mut line = format!("a{}", "é".repeat(MAX_LINE_BYTES)).into_bytes();
        line.truncate(MAX_LINE_BYTES + 1);
        let text = cut(&line, Length::Exactly(line.len() as u64));
        assert!(text.contains("[cut:"));
    }
}
