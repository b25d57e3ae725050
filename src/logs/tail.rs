//! Following a log file another process appends to (code-server's output): the reading
//! position, the line not finished yet, and the size cap of the file.
//!
//! The file is read in fixed chunks and each line is handed on as soon as its newline
//! arrives, cut to [`MAX_LINE_BYTES`](super::line::MAX_LINE_BYTES): however much was
//! appended, and however long a line runs without a newline, what is held in memory
//! is one chunk and the start of one line.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::line::PartialLine;
use super::rotate;

/// Bytes read from the file at a time.
const CHUNK_BYTES: usize = 64 * 1024;

/// Reading position in a followed file.
pub(super) struct Tail {
    path: PathBuf,
    offset: u64,
    /// The line whose newline has not arrived yet.
    line: PartialLine,
}

impl Tail {
    /// Follows `path` from byte `offset` on.
    pub(super) fn new(path: PathBuf, offset: u64) -> Self {
        Self {
            path,
            offset,
            line: PartialLine::default(),
        }
    }

    /// Whether the file changed size since the last read (a cheap check before a read).
    pub(super) fn has_news(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() != self.offset)
    }

    /// Reads what was appended since the last call and passes each completed line to
    /// `emit`. Past `max_bytes` the file is rotated (see [`rotate`]). A file shorter
    /// than the position was truncated by someone else: it is read from the top.
    pub(super) fn read_new(
        &mut self,
        max_bytes: u64,
        emit: &mut dyn FnMut(String),
    ) -> std::io::Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.line.clear();
        }
        if len == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        self.offset += self.feed(&mut file, len - self.offset, emit)?;
        if self.offset > max_bytes {
            let rotated = rotate(&self.path)?;
            // What was written between the read above and the copy is in the copy only.
            let mut copy = std::fs::File::open(rotated)?;
            let copied = copy.metadata()?.len();
            copy.seek(SeekFrom::Start(self.offset))?;
            self.feed(&mut copy, copied.saturating_sub(self.offset), emit)?;
            self.offset = 0;
        }
        Ok(())
    }

    /// Hands on the last line even though its newline never came (following ends).
    pub(super) fn flush(&mut self, emit: &mut dyn FnMut(String)) {
        if let Some(text) = self.line.take() {
            emit(text);
        }
    }

    /// Reads up to `limit` bytes of `from` chunk by chunk, splitting them into lines.
    /// Returns how many bytes were read.
    fn feed(
        &mut self,
        from: &mut impl Read,
        limit: u64,
        emit: &mut dyn FnMut(String),
    ) -> std::io::Result<u64> {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        let mut from = from.take(limit);
        let mut read = 0u64;
        loop {
            let n = match from.read(&mut chunk) {
                Ok(0) => return Ok(read),
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            read += n as u64;
            let mut rest = &chunk[..n];
            while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
                self.line.extend(&rest[..newline]);
                if let Some(text) = self.line.take() {
                    emit(text);
                }
                rest = &rest[newline + 1..];
            }
            self.line.extend(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;
    use crate::logs::line::{MAX_LINE_BYTES, MAX_MARKED_LINE_BYTES};

    fn read(tail: &mut Tail, max_bytes: u64) -> Vec<String> {
        let mut lines = Vec::new();
        tail.read_new(max_bytes, &mut |line| lines.push(line))
            .unwrap();
        lines
    }

    #[test]
    fn tail_reads_whole_lines_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut tail = Tail::new(path.clone(), 4);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"one\ntw").unwrap();
        assert_eq!(read(&mut tail, 1000), ["one"]);
        f.write_all(b"o\n").unwrap();
        assert_eq!(read(&mut tail, 1000), ["two"]);
        f.write_all(&[b'x'; 50]).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(read(&mut tail, 20).len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "rotated");
        assert!(dir.path().join("out.log.1").exists());
        f.write_all(b"after\n").unwrap();
        assert_eq!(read(&mut tail, 1000), ["after"]);
    }

    #[test]
    fn huge_lines_are_cut_while_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        std::fs::write(&path, "").unwrap();
        let mut tail = Tail::new(path.clone(), 0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        // A line without a newline, growing between reads: nothing is handed on and
        // only its start is kept.
        for _ in 0..8 {
            f.write_all(&[b'a'; 1 << 20]).unwrap();
            assert!(read(&mut tail, u64::MAX).is_empty());
            assert!(tail.line_kept() <= MAX_LINE_BYTES);
        }
        f.write_all(b"\nshort\n").unwrap();
        let lines = read(&mut tail, u64::MAX);
        assert_eq!(lines.len(), 2, "{:?}", lines[1]);
        assert!(lines[0].ends_with(" … [cut: 8388608 bytes in all]"));
        assert!(lines[0].len() <= MAX_MARKED_LINE_BYTES);
        assert_eq!(lines[1], "short");

        f.write_all(b"no newline yet").unwrap();
        assert!(read(&mut tail, u64::MAX).is_empty());
        let mut last = Vec::new();
        tail.flush(&mut |line| last.push(line));
        assert_eq!(last, ["no newline yet"]);
    }

    impl Tail {
        fn line_kept(&self) -> usize {
            self.line.kept_len()
        }
    }
}
