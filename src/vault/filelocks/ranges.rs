//! Byte-range locks as POSIX defines them: each owner holds ranges shared
//! or exclusive; a new lock replaces what its owner held in its range
//! (splitting what it cuts, merging what it touches); two locks conflict
//! when their owners differ, their ranges overlap and one is exclusive.
//! flock(2) locks are whole-file ranges of their open file's owner, as
//! the kernel hands them to a FUSE file system (and as NFS keeps them).

/// How a range is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shared,
    Exclusive,
}

/// A locked range: `start..=end` (`end` = i64::MAX: to the end of the file,
/// however far it grows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub kind: Kind,
}

/// A range one owner (a process, or an open file for flock) holds on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub owner: u64,
    /// Reported by F_GETLK.
    pub pid: u32,
    pub span: Span,
}

impl Span {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    /// Whether a lock of `kind` on `start..=end` by someone else conflicts with this.
    pub fn blocks(&self, start: u64, end: u64, kind: Kind) -> bool {
        self.overlaps(start, end) && (self.kind == Kind::Exclusive || kind == Kind::Exclusive)
    }
}

/// The first lock another owner holds that a lock of `kind` on
/// `start..=end` by `owner` conflicts with.
pub fn conflict(held: &[Held], owner: u64, start: u64, end: u64, kind: Kind) -> Option<Held> {
    held.iter().find(|h| h.owner != owner && h.span.blocks(start, end, kind)).copied()
}

/// Makes `owner` hold `start..=end` as `kind` (None: not at all), keeping
/// what it holds outside that range and merging adjacent ranges of one kind.
pub fn set(held: &mut Vec<Held>, owner: u64, pid: u32, start: u64, end: u64, kind: Option<Kind>) {
    let mut kept = Vec::with_capacity(held.len() + 2);
    for h in held.drain(..) {
        if h.owner != owner || !h.span.overlaps(start, end) {
            kept.push(h);
            continue;
        }
        if h.span.start < start {
            kept.push(Held { span: Span { end: start - 1, ..h.span }, ..h });
        }
        if h.span.end > end {
            kept.push(Held { span: Span { start: end + 1, ..h.span }, ..h });
        }
    }
    if let Some(kind) = kind {
        let mut new = Span { start, end, kind };
        kept.retain(|h| {
            let touches =
                h.span.end.checked_add(1) == Some(new.start) || new.end.checked_add(1) == Some(h.span.start);
            if h.owner == owner && h.span.kind == kind && touches {
                new.start = new.start.min(h.span.start);
                new.end = new.end.max(h.span.end);
                return false;
            }
            true
        });
        kept.push(Held { owner, pid, span: new });
    }
    *held = kept;
}

/// What this host holds, as other hosts see it: every range, owners left out.
pub fn spans(held: &[Held]) -> Vec<Span> {
    let mut s: Vec<Span> = held.iter().map(|h| h.span).collect();
    s.sort_by_key(|s| (s.start, s.end, s.kind == Kind::Exclusive));
    s.dedup();
    s
}

const SPAN_LEN: usize = 17;

/// `start u64 ‖ end u64 ‖ kind u8` (1 shared, 2 exclusive) per span, big-endian.
pub fn encode(spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spans.len() * SPAN_LEN);
    for s in spans {
        out.extend_from_slice(&s.start.to_be_bytes());
        out.extend_from_slice(&s.end.to_be_bytes());
        out.push(if s.kind == Kind::Exclusive { 2 } else { 1 });
    }
    out
}

/// The spans `encode` wrote; None if the bytes are not such a list.
pub fn decode(bytes: &[u8]) -> Option<Vec<Span>> {
    if bytes.len() % SPAN_LEN != 0 {
        return None;
    }
    bytes
        .chunks(SPAN_LEN)
        .map(|c| {
            let start = u64::from_be_bytes(c[..8].try_into().ok()?);
            let end = u64::from_be_bytes(c[8..16].try_into().ok()?);
            let kind = match c[16] {
                1 => Kind::Shared,
                2 => Kind::Exclusive,
                _ => return None,
            };
            (start <= end).then_some(Span { start, end, kind })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EOF: u64 = i64::MAX as u64;

    fn sp(start: u64, end: u64, kind: Kind) -> Span {
        Span { start, end, kind }
    }

    #[test]
    fn a_lock_in_the_middle_splits_and_an_unlock_cuts() {
        let mut h = Vec::new();
        set(&mut h, 1, 10, 0, 99, Some(Kind::Shared));
        set(&mut h, 1, 10, 40, 59, Some(Kind::Exclusive));
        assert_eq!(
            spans(&h),
            vec![sp(0, 39, Kind::Shared), sp(40, 59, Kind::Exclusive), sp(60, 99, Kind::Shared)]
        );
        set(&mut h, 1, 10, 30, 49, None);
        assert_eq!(
            spans(&h),
            vec![sp(0, 29, Kind::Shared), sp(50, 59, Kind::Exclusive), sp(60, 99, Kind::Shared)]
        );
        // Back to one kind: adjacent ranges merge.
        set(&mut h, 1, 10, 30, 59, Some(Kind::Shared));
        assert_eq!(spans(&h), vec![sp(0, 99, Kind::Shared)]);
        set(&mut h, 1, 10, 0, EOF, None);
        assert!(h.is_empty());
    }

    #[test]
    fn owners_conflict_only_over_an_exclusive_overlap() {
        let mut h = Vec::new();
        set(&mut h, 1, 10, 0, 9, Some(Kind::Shared));
        set(&mut h, 2, 20, 5, 14, Some(Kind::Shared));
        assert_eq!(conflict(&h, 3, 0, EOF, Kind::Shared), None);
        assert_eq!(conflict(&h, 3, 12, 20, Kind::Exclusive).map(|c| c.pid), Some(20));
        assert_eq!(conflict(&h, 3, 15, EOF, Kind::Exclusive), None);
        // An owner never conflicts with itself: it upgrades in place.
        assert_eq!(conflict(&h, 1, 0, 4, Kind::Exclusive), None);
        assert!(conflict(&h, 1, 0, 5, Kind::Exclusive).is_some());
    }

    #[test]
    fn ranges_to_the_end_of_the_file_neither_overflow_nor_merge_past_it() {
        let mut h = Vec::new();
        set(&mut h, 1, 1, 100, u64::MAX, Some(Kind::Exclusive));
        set(&mut h, 1, 1, 0, 99, Some(Kind::Exclusive));
        assert_eq!(spans(&h), vec![sp(0, u64::MAX, Kind::Exclusive)]);
        set(&mut h, 1, 1, u64::MAX, u64::MAX, None);
        assert_eq!(spans(&h), vec![sp(0, u64::MAX - 1, Kind::Exclusive)]);
    }

    #[test]
    fn malformed_span_lists_are_refused() {
        let s = vec![sp(0, 9, Kind::Shared), sp(7, EOF, Kind::Exclusive)];
        assert_eq!(decode(&encode(&s)), Some(s));
        assert_eq!(decode(&[0; 16]), None);
        let mut bad = encode(&[sp(0, 9, Kind::Shared)]);
        bad[16] = 3;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&encode(&[sp(9, 0, Kind::Shared)])), None);
    }

    proptest! {
        /// Against a model of every byte in 0..64: after any sequence of
        /// locks and unlocks, each byte is held by each owner as the last
        /// operation covering it said, and no owner's ranges overlap.
        #[test]
        fn set_matches_a_byte_model(ops in proptest::collection::vec((0u64..3, 0u64..64, 0u64..64, 0u8..3), 1..40)) {
            let mut h = Vec::new();
            let mut model = [[None::<Kind>; 64]; 3];
            for (owner, a, b, k) in ops {
                let (start, end) = (a.min(b), a.max(b));
                let kind = [None, Some(Kind::Shared), Some(Kind::Exclusive)][k as usize];
                set(&mut h, owner, 0, start, end, kind);
                for byte in start..=end {
                    model[owner as usize][byte as usize] = kind;
                }
            }
            for owner in 0..3u64 {
                for byte in 0..64u64 {
                    let held: Vec<Kind> = h.iter().filter(|x| x.owner == owner && x.span.overlaps(byte, byte)).map(|x| x.span.kind).collect();
                    prop_assert!(held.len() <= 1);
                    prop_assert_eq!(held.first().copied(), model[owner as usize][byte as usize]);
                }
            }
        }
    }
}
