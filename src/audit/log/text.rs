//! The `.audit` text (docs/AUDIT.md, "The `.audit` file"), read in ranges.
//! A snapshot is a tree size and the checkpoint signed over it; its lines
//! are rendered from the stored leaves as they are read, never held whole,
//! so a log of any length shows in bounded memory. To find the line at a
//! byte offset, the log keeps where the lines of every group of `GROUP`
//! leaves end, from its archive base on (8 bytes per 256 records), filled
//! by the first snapshot and extended by the next ones.
//!
//! Leaves are immutable once appended, so a group's lines never change;
//! only chunk boundaries near the end of the stored log do (commits repack
//! the last chunk and the slots). Groups are read without the log's state
//! lock, and read again under it if a repack got in the way.

use std::sync::{Arc, Mutex, MutexGuard};

use super::*;

/// Leaves per entry of the line index.
pub const GROUP: u64 = 256;

/// Where the lines of whole groups of leaves end, from the archive base.
#[derive(Default)]
pub(super) struct LineIndex {
    base: u64,
    /// `ends[g]`: the bytes of the lines of leaves `base .. base + (g + 1) · GROUP`.
    ends: Arc<Vec<u64>>,
}

/// One snapshot of `.audit`: the base line, the leaf lines from the
/// archive base to `size`, the checkpoint line.
pub struct AuditText {
    base: u64,
    size: u64,
    head: Vec<u8>,
    /// The index as it was (shared with the log; only appended to while
    /// the base stays) and how many of its groups this snapshot shows.
    ends: Arc<Vec<u64>>,
    groups: usize,
    /// The lines of the leaves after the whole groups.
    tail: Vec<u8>,
    checkpoint: Vec<u8>,
    /// The group read last, rendered: readers move through the text in
    /// order, a few KiB at a time, so a group serves many reads.
    last: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
}

impl AuditText {
    /// The text's length in bytes.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.lines_len() + self.tail.len() as u64 + self.checkpoint.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Leaves `base..size` are shown.
    pub fn leaves(&self) -> std::ops::Range<u64> {
        self.base..self.size
    }

    fn lines_len(&self) -> u64 {
        self.group_end(self.groups)
    }

    /// Where group `g - 1`'s lines end (0 for g = 0), from the first leaf line.
    fn group_end(&self, g: usize) -> u64 {
        if g == 0 { 0 } else { self.ends[g - 1] }
    }

    fn last(&self) -> MutexGuard<'_, Option<(usize, Arc<Vec<u8>>)>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Log {
    fn index(&self) -> MutexGuard<'_, LineIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of `.audit` now: pending records are stored, a checkpoint
    /// is signed over the whole log (if it grew), and the line index is
    /// brought up to date (the first snapshot renders every stored leaf
    /// once). None for an empty log.
    pub fn text(&self, store: &Store) -> Result<Option<AuditText>> {
        let first = self.base_size();
        self.text_once(store).or_else(|e| {
            // Records archived while the index was filled: once more, from the new base.
            if self.base_size() != first { self.text_once(store) } else { Err(e) }
        })
    }

    fn text_once(&self, store: &Store) -> Result<Option<AuditText>> {
        let (note, size, base) = {
            let mut st = self.state();
            self.write_pending(store, &mut st, Batch::default(), true)?;
            let Some(note) = self.checkpoint_locked(store, &mut st, false)? else { return Ok(None) };
            let base = self.base.read().unwrap_or_else(|p| p.into_inner()).clone();
            (note, st.frontier.size, base)
        };
        let first = base.frontier.size;
        let whole = usize::try_from((size - first) / GROUP).map_err(|_| corrupt("log too long"))?;
        let mut index = self.index();
        if index.base != first {
            *index = LineIndex { base: first, ends: Arc::default() };
        }
        // Extended in one step: snapshots share the index, and the first
        // extension while one is held copies it.
        let mut end = index.ends.last().copied().unwrap_or(0);
        let mut ends = Vec::with_capacity(whole.saturating_sub(index.ends.len()));
        for g in index.ends.len()..whole {
            let from = first + g as u64 * GROUP;
            end += self.lines(store, from, from + GROUP)?.len() as u64;
            ends.push(end);
        }
        if !ends.is_empty() {
            Arc::make_mut(&mut index.ends).extend(ends);
        }
        let ends = index.ends.clone();
        drop(index);
        let tail = self.lines(store, first + whole as u64 * GROUP, size)?;
        let head = if first > 0 { base.line().into_bytes() } else { Vec::new() };
        Ok(Some(AuditText {
            base: first,
            size,
            head,
            ends,
            groups: whole,
            tail,
            checkpoint: export::checkpoint_line(&note).into_bytes(),
            last: Mutex::default(),
        }))
    }

    /// Up to `len` bytes of `text` from `offset` (fewer only at its end).
    pub fn read_text(&self, store: &Store, text: &AuditText, offset: u64, len: u32) -> Result<Vec<u8>> {
        let end = offset.saturating_add(u64::from(len)).min(text.len());
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        let head = text.head.len() as u64;
        let lines = head + text.lines_len();
        let tail = lines + text.tail.len() as u64;
        while pos < end {
            // The section `pos` is in, and where that section starts.
            let group;
            let (piece, start): (&[u8], u64) = if pos < head {
                (&text.head, 0)
            } else if pos < lines {
                let g = text.ends[..text.groups].partition_point(|&e| e <= pos - head);
                group = self.group_text(store, text, g)?;
                (&group, head + text.group_end(g))
            } else if pos < tail {
                (&text.tail, lines)
            } else {
                (&text.checkpoint, tail)
            };
            let from = (pos - start) as usize;
            let to = piece.len().min(from + (end - pos) as usize);
            out.extend_from_slice(&piece[from..to]);
            pos += (to - from) as u64;
        }
        Ok(out)
    }

    /// Group `g` of `text`, rendered (or the one rendered last).
    fn group_text(&self, store: &Store, text: &AuditText, g: usize) -> Result<Arc<Vec<u8>>> {
        if let Some((held, lines)) = &*text.last()
            && *held == g
        {
            return Ok(lines.clone());
        }
        let from = text.base + g as u64 * GROUP;
        if from < self.base_size() {
            return Err(LogError::Range(format!(
                "leaves before {} were archived after this .audit was opened; open it again",
                self.base_size()
            )));
        }
        let lines = self.lines(store, from, from + GROUP)?;
        let want = text.group_end(g + 1) - text.group_end(g);
        if lines.len() as u64 != want {
            return Err(corrupt(format!(
                "leaves {from}..{} render to {} bytes, not the {want} indexed",
                from + GROUP,
                lines.len()
            )));
        }
        let lines = Arc::new(lines);
        *text.last() = Some((g, lines.clone()));
        Ok(lines)
    }

    /// The `.audit` lines of stored leaves `from..to`. Read first without
    /// the state lock; a failure may be a commit repacking the chunks being
    /// read, so the leaves are read again under the lock before the error
    /// stands.
    fn lines(&self, store: &Store, from: u64, to: u64) -> Result<Vec<u8>> {
        let render = || -> Result<Vec<u8>> {
            let mut out = Vec::new();
            for entry in self.leaves(store, from, to) {
                export::write_leaf_line(&mut out, &entry?.1)?;
            }
            Ok(out)
        };
        render().or_else(|_| {
            let _st = self.state();
            render()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::archive::tests::{archive, grow, grown, signer};
    use super::*;
    use crate::audit::verify::verify_export;

    /// The text built whole, as before ranges: head, every leaf's line, checkpoint.
    fn whole(log: &Log, store: &Store, text: &AuditText) -> Vec<u8> {
        let mut out = text.head.clone();
        for r in log.leaves(store, text.base, text.size) {
            out.extend(export::leaf_line_from_bytes(&r.unwrap().1).unwrap().into_bytes());
        }
        out.extend(&text.checkpoint);
        out
    }

    /// The text read `step` bytes at a time, each read as long as asked
    /// until the end.
    fn read_all(log: &Log, store: &Store, text: &AuditText, step: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let got = log.read_text(store, text, out.len() as u64, step).unwrap();
            let left = text.len() - out.len() as u64;
            assert_eq!(got.len() as u64, left.min(u64::from(step)));
            if got.is_empty() {
                return out;
            }
            out.extend(got);
        }
    }

    #[test]
    fn reads_of_any_size_at_any_offset_match_the_whole_text() {
        let (_dir, store, log) = grown(3 * GROUP + 37);
        let text = log.text(&store).unwrap().unwrap();
        assert_eq!((text.groups, text.tail.is_empty()), (3, false));
        let want = whole(&log, &store, &text);
        assert_eq!(text.len(), want.len() as u64);
        verify_export(&want, &signer().verifying_key()).unwrap();
        for step in [1, 7, 4096, 65536, u32::MAX] {
            assert!(read_all(&log, &store, &text, step) == want, "step {step}");
        }
        let len = want.len() as u64;
        for at in [0, 1, text.ends[0] - 3, text.ends[0], text.ends[1] + 5, text.ends[2] - 1, len - 2, len, len + 9] {
            let got = log.read_text(&store, &text, at, 300).unwrap();
            let (a, b) = (at.min(len) as usize, (at + 300).min(len) as usize);
            assert!(got == want[a..b], "at {at}");
        }
        assert!(log.read_text(&store, &text, u64::MAX - 3, 10).unwrap().is_empty());
    }

    #[test]
    fn a_snapshot_stays_as_taken_while_the_log_grows_and_the_index_is_extended() {
        let (_dir, store, log) = grown(300);
        let a = log.text(&store).unwrap().unwrap();
        let want_a = whole(&log, &store, &a);
        grow(&log, &store, 2 * GROUP + 10);
        let b = log.text(&store).unwrap().unwrap();
        assert_eq!((a.groups, b.groups), (1, 3));
        assert_eq!(b.ends[..1], a.ends[..1]);
        assert!(read_all(&log, &store, &a, 5000) == want_a);
        let want_b = whole(&log, &store, &b);
        assert!(read_all(&log, &store, &b, 5000) == want_b);
        let key = signer().verifying_key();
        assert_eq!(verify_export(&want_a, &key).unwrap().leaves, a.size);
        assert_eq!(verify_export(&want_b, &key).unwrap().leaves, b.size);
    }

    #[test]
    fn after_an_archive_the_text_starts_at_the_base_and_older_snapshots_say_so() {
        let (_dir, store, log) = grown(700);
        let before = log.text(&store).unwrap().unwrap();
        archive(&log, &store, 300, "a1");
        let after = log.text(&store).unwrap().unwrap();
        assert_eq!(after.leaves(), 300..log.size());
        let text = read_all(&log, &store, &after, 4096);
        assert!(text.starts_with(b"{\"base\":300,"));
        assert!(text == whole(&log, &store, &after));
        verify_export(&text, &signer().verifying_key()).unwrap();
        // The first group of the snapshot taken before is in the archive now.
        let err = log.read_text(&store, &before, 0, 4096).unwrap_err();
        assert!(matches!(&err, LogError::Range(m) if m.contains("open it again")), "{err}");
        // Its last group and tail are still stored.
        let end = before.len();
        assert_eq!(log.read_text(&store, &before, end - 10, 100).unwrap().len(), 10);
    }

    #[test]
    fn an_empty_log_has_no_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let log = Log::open(&store, [9; 16], Key32::from_bytes([1; 32]), signer()).unwrap();
        assert!(log.text(&store).unwrap().is_none());
        assert!(log.export(&store).unwrap().is_empty());
    }
}
