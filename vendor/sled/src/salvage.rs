//! A read-only salvage reader for a damaged sled 0.34 database (vaultfs
//! patch: vendor/README.md, "Salvage reader").
//!
//! [`salvage`] reads the log file `db` of a database directory segment by
//! segment and message by message, without opening the database and
//! without writing anything, and returns every version of every key of
//! the default tree that it finds in log messages whose CRC verifies.
//! Nothing on sled's normal open path uses this module, and the on-disk
//! format is unchanged.
//!
//! # Where keys come from
//!
//! * Leaf nodes (`InlineNode`/`BlobNode` messages, the consolidated base of
//!   a page): every key/value pair, at the message's lsn. Keys are stored
//!   prefix-encoded against the node's low key and are reconstructed.
//!   Index nodes hold no values; they are only used to tell trees apart.
//! * `Set` and `Del` links (`InlineLink`/`BlobLink` messages, deltas on a
//!   page). A link's key is prefix-encoded against the base node the link
//!   was applied to, which the link does not name, and whose prefix
//!   changes when the page splits or merges. A link is used only when
//!   its base is certain: the snapshot file (`snap.*`, which sled writes
//!   when it opens a database, with its own CRC) lists the link in its
//!   page's chain and names the base, or the base is the newest base of
//!   the page before the link with nothing in between that could hide a
//!   newer one (see `Scan::resolve_links`). Otherwise it is counted in
//!   [`Salvaged::links_skipped`].
//! * Absence: a leaf node is the whole content of its key range
//!   `[lo, hi)` at its lsn, so a key of that range missing from it was
//!   absent then. This is recorded as a `None` version (after the key's
//!   first known value only); without it a key deleted by a `Del` link
//!   whose segment was later reused would come back from an older node.
//! * Blob messages are followed into `blobs/`, whose files carry their own
//!   CRC. Meta (tree roots), counter, free, batch-manifest, cancelled and
//!   cap messages carry no keys.
//!
//! Every intact message counts, whether or not it was still part of the
//! database: a write batch cut short by damage yields the versions it
//! wrote, and old versions come from segments sled has not reused yet.
//!
//! # Damage
//!
//! Nothing is trusted before its CRC verifies and every length is bounded
//! by the segment, so no input makes the reader panic or fail. A damaged
//! message is counted and skipped: the reader then looks for the next
//! intact message of the same segment at every following byte offset (a
//! message also carries its segment number, which garbage rarely matches
//! before its CRC is checked), and records the bytes in between as a
//! damaged range. A damaged segment header is counted too; the segment's
//! number is then taken from its first intact message. What follows the
//! last intact message of the newest segment is the unwritten end of the
//! log (zeros, or leftovers of the segment's previous use) unless it
//! starts with what looks like one of that segment's message headers. A
//! file that ends inside a segment other than the newest one, or not
//! after a whole message, was cut short.
//!
//! # Limits
//!
//! * A link placed only because it is still part of its page rests on the
//!   segments missing between it and its base having been reused by sled.
//!   A segment lost whole (a file cut exactly at a segment boundary, a
//!   segment zeroed) looks the same, so such links are used only for keys
//!   that an intact node or a link placed otherwise also names: a key
//!   inserted late, in a page whose base lies beyond a reused segment, is
//!   then missed, and a wrong decoding that happens to give another key
//!   of the same page is not caught.
//! * Trees: the meta page maps tree names to root pages. When the meta
//!   pages found name trees besides the default one, pages reachable from
//!   another tree's roots (through any version of its index nodes and
//!   sibling links) and not from the default tree's are left out. Pages
//!   reached from no root, or when no meta page survives, are kept: a
//!   database with one tree (vaultfs) needs no filtering.
//! * A leaf written as the right half of a split that then lost a race
//!   (concurrent writers only) is a copy that may miss an update made
//!   during the split; it can then show an older value as the newest
//!   version of a key.
//! * Damaged messages are skipped, not repaired, even where a single
//!   flipped bit could be found from the CRC.
//! * Compressed databases (`use_compression`) are not supported.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, HashSet},
    convert::TryFrom,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    ops::Bound,
    path::Path,
};

use crate::{
    Config, DEFAULT_TREE_ID, Error, Link, Lsn, MAX_MSG_HEADER_LEN, Meta, Node,
    PageId, SEG_HEADER_LEN, Serialize, calculate_message_crc32,
    node::Data,
    pagecache::{
        MessageHeader, MessageKind, PageState, SegmentHeader, Snapshot,
        arr_to_lsn,
        constants::{COUNTER_PID, META_PID},
        read_blob,
    },
};

/// One version of a key found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The log sequence number of the message it came from (higher =
    /// newer).
    pub lsn: i64,
    /// The value, or None when this message deleted the key (a `Del`
    /// link) or is a leaf node covering the key's range without it.
    pub value: Option<Vec<u8>>,
}

/// What [`salvage`] found.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Keys of the default tree, each with every version found, newest
    /// first (sorted by lsn descending). Consecutive versions with the
    /// same value (the same node rewritten, say) are one version, at the
    /// newest lsn.
    pub keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// Messages read whose CRC verified.
    pub messages_ok: u64,
    /// Messages (or segment headers) that failed their CRC or did not
    /// parse: skipped.
    pub messages_damaged: u64,
    /// Segments of the log file read.
    pub segments: u64,
    /// Byte ranges of the log file that could not be read as messages
    /// (offset, length), in file order.
    pub damaged_ranges: Vec<(u64, u64)>,
    /// The segment size the log was read with: the one recorded in
    /// `conf` when that file is intact, else the one passed in.
    pub segment_size: usize,
    /// Blob messages whose blob file is gone (sled removes the blob of a
    /// page rewritten since, so this is normal in small numbers).
    pub blobs_missing: u64,
    /// Blob files that failed their CRC or did not parse.
    pub blobs_damaged: u64,
    /// `Set`/`Del` links left out because the base node their key was
    /// encoded against could not be established with certainty: the
    /// snapshot names a base that is damaged, no base of the page precedes
    /// them, damage lies between that base and the link, a segment is
    /// missing in between (unless the link is still part of its page and
    /// its key is known otherwise), or the decoded key falls outside the
    /// base's range. Most are old versions sled has superseded.
    pub links_skipped: u64,
    /// The tree names found in meta pages (`__sled__default` is sled's
    /// default tree).
    pub trees: Vec<Vec<u8>>,
    /// The stable lsn of the intact snapshot file (`snap.*`) used to place
    /// links, if one was found.
    pub snapshot_lsn: Option<i64>,
}

/// The segment size recorded in the `conf` file of the sled database
/// directory `dir`, when that file is intact (its CRC verifies).
pub fn configured_segment_size(dir: &Path) -> Option<usize> {
    read_conf(dir).map(|(segment_size, _)| segment_size)
}

/// Reads the sled 0.34 database directory `dir` (the one holding `conf`,
/// `db`, `snap.*`, `blobs/`) directly, never writing, and never failing
/// because of damaged data: damage is skipped and counted.
///
/// `segment_size` is the size sled was configured with; the one recorded
/// in `dir/conf` takes precedence when that file is intact.
///
/// # Errors
///
/// Only for I/O on the directory itself (the `db` file missing or
/// unreadable as a whole), a segment size sled could not have used, or a
/// database that `conf` says is compressed. A segment that cannot be read
/// is recorded as damaged.
pub fn salvage(dir: &Path, segment_size: usize) -> io::Result<Salvaged> {
    let (seg_size, compressed) =
        read_conf(dir).unwrap_or((segment_size, false));
    if compressed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the database is compressed (use_compression), which the \
             salvage reader does not support",
        ));
    }
    if seg_size.count_ones() != 1 || seg_size < 256 || seg_size > 1 << 24 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("segment size {} is not one sled uses", seg_size),
        ));
    }

    let mut file = File::open(dir.join("db"))?;
    let file_len = file.metadata()?.len();
    let seg = u64::try_from(seg_size).expect("usize fits u64");

    let mut scan = Scan::new(dir, seg_size);
    scan.partial_last = file_len % seg != 0;
    scan.vouch = read_snapshot(dir);
    scan.out.snapshot_lsn = scan.vouch.as_ref().map(|v| v.stable_lsn);
    let mut buf = vec![0_u8; seg_size];
    let slots = (file_len + seg - 1) / seg;
    for slot in 0..slots {
        let offset = slot * seg;
        let len = usize::try_from(std::cmp::min(seg, file_len - offset))
            .expect("at most a segment");
        let data = &mut buf[..len];
        let read = file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(data));
        if read.is_ok() {
            scan.slot(offset, data);
        } else {
            scan.unreadable(offset, len);
        }
    }
    Ok(scan.finish(slots))
}

/// `segment_size` and `use_compression` from `dir/conf`, if intact.
fn read_conf(dir: &Path) -> Option<(usize, bool)> {
    let bytes = std::fs::read(dir.join("conf")).ok()?;
    if bytes.len() <= 8 {
        return None;
    }
    let (text, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(<[u8; 4]>::try_from(crc_bytes).ok()?);
    if crate::crc32(text) != crc {
        return None;
    }
    let lines = std::str::from_utf8(text).ok()?.lines();
    let mut segment_size = None;
    let mut compressed = false;
    for line in lines {
        if let Some(v) = line.strip_prefix("segment_size: ") {
            segment_size = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("use_compression: ") {
            compressed = v.trim() == "true";
        }
    }
    Some((segment_size?, compressed))
}

/// What sled's newest intact snapshot file says: each page's chain (its
/// base's lsn and its links' lsns) as of `stable_lsn`. sled writes it when
/// it opens a database, from the log it has just verified.
struct Vouch {
    stable_lsn: Lsn,
    chains: HashMap<PageId, Chain>,
}

enum Chain {
    Present { base: Lsn, links: Vec<Lsn> },
    Free,
}

/// The newest snapshot file of `dir` whose CRC verifies and that parses.
fn read_snapshot(dir: &Path) -> Option<Vouch> {
    let mut files: Vec<(Lsn, std::path::PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|listed| {
            let entry = listed.ok()?;
            let name = entry.file_name();
            let hex = name.to_str()?.strip_prefix("snap.")?;
            if hex.len() != 16 {
                return None;
            }
            let lsn = u64::from_str_radix(hex, 16).ok()?;
            Some((Lsn::try_from(lsn).ok()?, entry.path()))
        })
        .collect();
    files.sort();
    files.into_iter().rev().find_map(|(_, path)| {
        // the snapshot, its length (8 bytes), its CRC (4 bytes)
        let bytes = std::fs::read(path).ok()?;
        if bytes.len() <= 12 {
            return None;
        }
        let (framed, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let body = &framed[..framed.len() - 8];
        let crc = u32::from_le_bytes(<[u8; 4]>::try_from(crc_bytes).ok()?);
        if crate::crc32(body) != crc {
            return None;
        }
        let snapshot = decode(body, wf::snapshot, Snapshot::deserialize)?;
        let stable_lsn = snapshot.stable_lsn?;
        let mut chains = HashMap::new();
        for (pid, state) in snapshot.pt.iter().enumerate() {
            let chain = match state {
                PageState::Present { base, frags } => Chain::Present {
                    base: base.0,
                    links: frags.iter().map(|f| f.0).collect(),
                },
                PageState::Free(..) => Chain::Free,
                PageState::Uninitialized => continue,
            };
            let _ = chains.insert(PageId::try_from(pid).ok()?, chain);
        }
        Some(Vouch { stable_lsn, chains })
    })
}

/// What a page was set to by a replacing message (a base node, a free),
/// at the message's lsn.
#[derive(Debug)]
enum Base {
    Leaf {
        lo: Vec<u8>,
        hi: Vec<u8>,
        prefix_len: usize,
        next: Option<PageId>,
    },
    Index {
        children: Vec<PageId>,
        next: Option<PageId>,
    },
    Free,
    /// A base node that could not be read (its blob is gone or damaged).
    Unreadable,
}

/// A key's state seen in one message.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Value(Vec<u8>),
    /// A `Del` link.
    Deleted,
    /// A leaf node whose range holds the key, without it.
    Absent,
}

impl Seen {
    fn value(&self) -> Option<&[u8]> {
        match self {
            Seen::Value(v) => Some(v),
            Seen::Deleted | Seen::Absent => None,
        }
    }
}

/// A key/value (or deletion) seen on page `pid` at `lsn`.
#[derive(Debug)]
struct Observation {
    pid: PageId,
    lsn: Lsn,
    key: Vec<u8>,
    seen: Seen,
}

/// A `Set`/`Del` link, its key still prefix-encoded.
#[derive(Debug)]
struct PendingLink {
    pid: PageId,
    lsn: Lsn,
    encoded_key: Vec<u8>,
    seen: Seen,
}

/// Bytes after the last intact message of a segment that are neither
/// zeros nor followed by another intact message of that segment.
#[derive(Debug)]
struct Tail {
    segment: Option<u64>,
    offset: u64,
    len: u64,
    /// Starts with a header naming this segment (so damage, not
    /// leftovers of the segment's previous use).
    looks_ours: bool,
}

struct Scan {
    seg: usize,
    blob_config: Config,
    out: Salvaged,
    /// Damaged byte ranges in lsn space: [start, end).
    damaged_lsns: Vec<(Lsn, Lsn)>,
    /// Damage whose lsn is unknown (a segment whose number could not be
    /// read): it may be in any segment missing from the file.
    unknown_damage: bool,
    /// Segment numbers present in the file.
    present: Vec<u64>,
    bases: HashMap<PageId, Vec<(Lsn, Base)>>,
    links: Vec<PendingLink>,
    observations: Vec<Observation>,
    metas: Vec<Meta>,
    tails: Vec<Tail>,
    /// The file ends inside a segment: the newest one, still being
    /// written, unless the file was cut short.
    partial_last: bool,
    /// The last segment read: its number, and whether its messages ran to
    /// the end of the file (or to zeros).
    last_slot: Option<(Option<u64>, bool)>,
    vouch: Option<Vouch>,
}

impl Scan {
    fn new(dir: &Path, seg: usize) -> Scan {
        Scan {
            seg,
            blob_config: Config::new().path(dir),
            out: Salvaged { segment_size: seg, ..Salvaged::default() },
            damaged_lsns: vec![],
            unknown_damage: false,
            present: vec![],
            bases: HashMap::new(),
            links: vec![],
            observations: vec![],
            metas: vec![],
            tails: vec![],
            partial_last: false,
            last_slot: None,
            vouch: None,
        }
    }

    /// The lsn at which segment number `segment` starts, if all of the
    /// segment's lsns are representable.
    fn segment_lsn(&self, segment: u64) -> Option<Lsn> {
        let seg = Lsn::try_from(self.seg).ok()?;
        let start = Lsn::try_from(segment).ok()?.checked_mul(seg)?;
        start.checked_add(seg).map(|_| start)
    }

    fn unreadable(&mut self, offset: u64, len: usize) {
        self.last_slot = Some((None, false));
        self.out.messages_damaged += 1;
        self.out.damaged_ranges.push((offset, len as u64));
        self.unknown_damage = true;
    }

    /// Reads the segment at file offset `offset` (`buf` is its content,
    /// shorter than a segment at the end of the file).
    fn slot(&mut self, offset: u64, buf: &[u8]) {
        self.last_slot = Some((None, true));
        if buf.iter().all(|b| *b == 0) {
            // never written, or zeroed by sled as free
            return;
        }
        self.last_slot = Some((None, false));
        if buf.len() < SEG_HEADER_LEN {
            self.unreadable(offset, buf.len());
            return;
        }

        let mut header_bytes = [0_u8; SEG_HEADER_LEN];
        header_bytes.copy_from_slice(&buf[..SEG_HEADER_LEN]);
        let header = SegmentHeader::from(header_bytes);
        let seg = Lsn::try_from(self.seg).expect("segment size fits i64");

        // the segment numbers its messages may carry
        let mut expect: Vec<u64> = vec![];
        let mut segment: Option<u64> = None;
        let header_segment = if header.lsn >= 0 && header.lsn % seg == 0 {
            u64::try_from(header.lsn / seg)
                .ok()
                .filter(|n| self.segment_lsn(*n).is_some())
        } else {
            None
        };
        if let (true, Some(n)) = (header.ok, header_segment) {
            segment = Some(n);
            expect.push(n);
        } else {
            self.out.messages_damaged += 1;
            self.out.damaged_ranges.push((offset, SEG_HEADER_LEN as u64));
            // candidates: the damaged header's own lsn, and what the
            // first message's header says
            expect.extend(header_segment);
            if let Some((h, _)) = header_at(buf, SEG_HEADER_LEN) {
                if h.kind != MessageKind::Corrupted
                    && self.segment_lsn(h.segment_number.0).is_some()
                {
                    expect.push(h.segment_number.0);
                }
            }
        }

        // byte ranges (start, end) within this segment found damaged
        let mut damaged: Vec<(usize, usize)> = vec![];
        let mut tail: Option<(usize, bool)> = None;
        let last_start = self.seg - MAX_MSG_HEADER_LEN;
        let mut pos = SEG_HEADER_LEN;
        while pos <= last_start && pos < buf.len() {
            if let Some((h, body, len)) = message_at(buf, pos, &expect) {
                let n = h.segment_number.0;
                if segment.is_none() {
                    segment = Some(n);
                    expect = vec![n];
                }
                self.out.messages_ok += 1;
                if h.kind == MessageKind::Cap {
                    break;
                }
                let lsn = self.segment_lsn(n).expect("checked when expected")
                    + Lsn::try_from(pos).expect("within a segment");
                self.message(&h, body, lsn);
                pos += len;
                continue;
            }
            if buf[pos..].iter().all(|b| *b == 0) {
                break;
            }
            if let Some(next) = self.resync(buf, pos + 1, &expect) {
                self.out.messages_damaged += 1;
                damaged.push((pos, next));
                pos = next;
                continue;
            }
            let looks_ours = header_at(buf, pos).map_or(false, |(h, _)| {
                h.kind != MessageKind::Corrupted
                    && expect.contains(&h.segment_number.0)
            });
            tail = Some((pos, looks_ours));
            break;
        }

        self.last_slot = Some((segment, tail.is_none()));
        if let Some(n) = segment {
            self.present.push(n);
        } else if buf.iter().filter(|b| **b != 0).count() <= buf.len() / 1024 {
            // a segment sled zeroed as free, with a few flipped bits: no
            // segment's messages can be in it
            let len = (buf.len() - SEG_HEADER_LEN) as u64;
            self.out.damaged_ranges.push((offset + SEG_HEADER_LEN as u64, len));
            return;
        }
        for (start, end) in damaged {
            self.damage(segment, offset, start, end);
        }
        if let Some((start, looks_ours)) = tail {
            self.tails.push(Tail {
                segment,
                offset: offset + start as u64,
                len: (buf.len() - start) as u64,
                looks_ours,
            });
        }
    }

    /// Records damage at bytes [start, end) of the segment at `offset`.
    fn damage(
        &mut self,
        segment: Option<u64>,
        offset: u64,
        start: usize,
        end: usize,
    ) {
        self.out
            .damaged_ranges
            .push((offset + start as u64, (end - start) as u64));
        match segment.and_then(|n| self.segment_lsn(n)) {
            Some(base) => self.damaged_lsns.push((
                base + Lsn::try_from(start).expect("within a segment"),
                base + Lsn::try_from(end).expect("within a segment"),
            )),
            None => self.unknown_damage = true,
        }
    }

    /// The first offset from `from` on where an intact message of one of
    /// the `expect`ed segment numbers starts.
    fn resync(&self, buf: &[u8], from: usize, expect: &[u64]) -> Option<usize> {
        if expect.is_empty() {
            return None;
        }
        let last = std::cmp::min(self.seg - MAX_MSG_HEADER_LEN, buf.len() - 1);
        (from..=last).find(|&q| {
            // the kind byte follows the 4-byte crc: a cheap first filter
            buf.get(q + 4).map_or(false, |kind| {
                MessageKind::from(*kind) != MessageKind::Corrupted
            }) && message_at(buf, q, expect).is_some()
        })
    }

    /// Takes in one intact message.
    fn message(&mut self, header: &MessageHeader, payload: &[u8], lsn: Lsn) {
        use MessageKind::*;
        let pid = header.pid;
        let tree_page = pid != META_PID && pid != COUNTER_PID;
        match header.kind {
            Free if tree_page => self.base(pid, lsn, Base::Free),
            InlineMeta | BlobMeta => {
                if let Some(body) = self.body(header.kind, payload) {
                    match decode(&body, wf::meta, Meta::deserialize) {
                        Some(meta) => self.metas.push(meta),
                        None => self.undecodable(header.kind),
                    }
                }
            }
            InlineNode | BlobNode if tree_page => {
                let decoded =
                    self.body(header.kind, payload).and_then(|body| {
                        let node = decode(&body, wf::node, Node::deserialize)
                            .filter(consistent);
                        if node.is_none() {
                            self.undecodable(header.kind);
                        }
                        node
                    });
                match decoded {
                    Some(node) => self.node(pid, lsn, node),
                    None => self.base(pid, lsn, Base::Unreadable),
                }
            }
            InlineLink | BlobLink if tree_page => {
                let body = match self.body(header.kind, payload) {
                    Some(body) => body,
                    None => return,
                };
                match decode(&body, wf::link, Link::deserialize) {
                    Some(Link::Set(key, value)) => {
                        self.links.push(PendingLink {
                            pid,
                            lsn,
                            encoded_key: key.to_vec(),
                            seen: Seen::Value(value.to_vec()),
                        })
                    }
                    Some(Link::Del(key)) => self.links.push(PendingLink {
                        pid,
                        lsn,
                        encoded_key: key.to_vec(),
                        seen: Seen::Deleted,
                    }),
                    Some(_) => {} // merge bookkeeping: no keys
                    None => self.undecodable(header.kind),
                }
            }
            // cancelled writes, caps, batch manifests, the id counter
            _ => {}
        }
    }

    /// A CRC-valid message (or blob) that does not parse.
    fn undecodable(&mut self, kind: MessageKind) {
        if is_blob(kind) {
            self.out.blobs_damaged += 1;
        } else {
            self.out.messages_damaged += 1;
        }
    }

    /// The serialized page update a message carries: its payload, or for a
    /// blob message the content of the blob file it points to.
    fn body<'p>(
        &mut self,
        kind: MessageKind,
        payload: &'p [u8],
    ) -> Option<Cow<'p, [u8]>> {
        if !is_blob(kind) {
            return Some(Cow::Borrowed(payload));
        }
        if payload.len() != std::mem::size_of::<Lsn>() {
            self.out.blobs_damaged += 1;
            return None;
        }
        match read_blob(arr_to_lsn(payload), &self.blob_config) {
            Ok((blob_kind, data)) if blob_kind == kind => {
                Some(Cow::Owned(data))
            }
            Err(Error::Io(ref e)) if e.kind() == io::ErrorKind::NotFound => {
                self.out.blobs_missing += 1;
                None
            }
            _ => {
                self.out.blobs_damaged += 1;
                None
            }
        }
    }

    fn base(&mut self, pid: PageId, lsn: Lsn, base: Base) {
        self.bases.entry(pid).or_insert_with(Vec::new).push((lsn, base));
    }

    fn node(&mut self, pid: PageId, lsn: Lsn, node: Node) {
        let next = node.next.map(std::num::NonZeroU64::get);
        match node.data {
            Data::Leaf(leaf) => {
                let prefix_len = usize::from(node.prefix_len);
                let prefix = &node.lo[..prefix_len];
                for (key, value) in leaf.keys.iter().zip(leaf.values.iter()) {
                    self.observations.push(Observation {
                        pid,
                        lsn,
                        key: [prefix, key].concat(),
                        seen: Seen::Value(value.to_vec()),
                    });
                }
                self.base(
                    pid,
                    lsn,
                    Base::Leaf {
                        lo: node.lo.to_vec(),
                        hi: node.hi.to_vec(),
                        prefix_len,
                        next,
                    },
                );
            }
            Data::Index(index) => self.base(
                pid,
                lsn,
                Base::Index { children: index.pointers, next },
            ),
        }
    }

    fn finish(mut self, slots: u64) -> Salvaged {
        self.out.segments = slots;
        self.present.sort_unstable();
        self.present.dedup();

        // what follows the last message of the newest segment is the end
        // of the log, unless it looks like one of its messages
        let newest = self.present.last().copied();

        // sled grows its file a whole segment at a time at the end, so a
        // file ending inside a segment ends in the newest one, after its
        // last message (or in zeros). Otherwise it was cut short, and the
        // segments after the cut, of any age, are lost.
        if self.partial_last {
            if let Some((segment, clean_end)) = self.last_slot {
                if segment.is_none() || segment != newest || !clean_end {
                    self.unknown_damage = true;
                }
            }
        }
        for tail in std::mem::take(&mut self.tails) {
            if tail.segment.is_some()
                && tail.segment == newest
                && !tail.looks_ours
            {
                continue;
            }
            self.out.messages_damaged += 1;
            let start = usize::try_from(tail.offset % self.seg as u64)
                .expect("within a segment");
            let end =
                start + usize::try_from(tail.len).expect("within a segment");
            self.damage(tail.segment, tail.offset - start as u64, start, end);
        }
        self.out.damaged_ranges =
            join(std::mem::take(&mut self.out.damaged_ranges));
        self.damaged_lsns.sort_unstable();
        let damaged_lsns = merge(std::mem::take(&mut self.damaged_lsns));
        for bases in self.bases.values_mut() {
            bases.sort_by_key(|(lsn, _)| *lsn);
        }

        self.resolve_links(&damaged_lsns);
        let include = self.tree_filter();

        let mut keys: BTreeMap<Vec<u8>, BTreeMap<Lsn, Seen>> = BTreeMap::new();
        for obs in std::mem::take(&mut self.observations) {
            if include.as_ref().map_or(true, |f| f.keeps(obs.pid)) {
                let _ = keys
                    .entry(obs.key)
                    .or_insert_with(BTreeMap::new)
                    .entry(obs.lsn)
                    .or_insert(obs.seen);
            }
        }

        // absence: a leaf node is all of its range at its lsn
        for (pid, bases) in &self.bases {
            if !include.as_ref().map_or(true, |f| f.authoritative(*pid)) {
                continue;
            }
            for (lsn, base) in bases {
                if let Base::Leaf { lo, hi, .. } = base {
                    let upper = if hi.is_empty() {
                        Bound::Unbounded
                    } else {
                        Bound::Excluded(&hi[..])
                    };
                    for (_, versions) in keys
                        .range_mut::<[u8], _>((Bound::Included(&lo[..]), upper))
                    {
                        let _ = versions.entry(*lsn).or_insert(Seen::Absent);
                    }
                }
            }
        }

        self.out.keys = keys
            .into_iter()
            .filter_map(|(key, seen)| {
                let versions = newest_first(seen);
                if versions.is_empty() { None } else { Some((key, versions)) }
            })
            .collect();
        self.out
    }

    /// Decodes the keys of the `Set`/`Del` links whose base node is
    /// certain:
    ///
    /// * the snapshot lists the link in its page's chain: its base is the
    ///   one the snapshot names, if that message is intact; or else
    /// * its base is the newest base of the page before the link, when no
    ///   damaged bytes lie between the two in the log (or between the
    ///   snapshot and the link, when the snapshot names that base for the
    ///   page), and every segment between them is in the file, or, when one
    ///   was reused since, the link is still part of its page (no base or
    ///   free of the page after it, no damage after it that could hide
    ///   one, no sign of a segment lost from the file) and its key is known
    ///   otherwise: a link's true base stays in the log as long as the
    ///   link is part of its page, so the newest one found is it.
    ///
    /// In both cases the base must be a leaf and the decoded key must lie
    /// in its range.
    fn resolve_links(&mut self, damaged_lsns: &[(Lsn, Lsn)]) {
        let damage_end = damaged_lsns.last().map(|(_, end)| *end);
        // links placed only because they are still part of their page,
        // with their keys: kept if the key is known otherwise
        let mut live_only: Vec<(PendingLink, Vec<u8>)> = vec![];
        for link in std::mem::take(&mut self.links) {
            let bases: &[(Lsn, Base)] =
                self.bases.get(&link.pid).map_or(&[], Vec::as_slice);
            let i = bases.partition_point(|(lsn, _)| *lsn < link.lsn);
            let latest = i.checked_sub(1).map(|before| &bases[before]);
            let chain = self
                .vouch
                .as_ref()
                .map(|v| (v.stable_lsn, v.chains.get(&link.pid)));

            let mut only_live = false;
            let base = match chain {
                // the snapshot places the link
                Some((stable, Some(Chain::Present { base, links })))
                    if link.lsn <= stable
                        && links.binary_search(&link.lsn).is_ok() =>
                {
                    bases
                        .binary_search_by_key(base, |(lsn, _)| *lsn)
                        .ok()
                        .map(|j| &bases[j].1)
                }
                _ => latest.and_then(|(base_lsn, base)| {
                    let mut from = *base_lsn;
                    // before the snapshot the link was dead already
                    let mut may_be_live = true;
                    match chain {
                        Some((stable, _)) if link.lsn <= stable => {
                            may_be_live = false;
                        }
                        Some((
                            stable,
                            Some(Chain::Present { base: at, .. }),
                        )) if *base_lsn <= stable => {
                            if *at != *base_lsn {
                                // a newer base the log has lost
                                return None;
                            }
                            from = stable;
                        }
                        Some((stable, Some(Chain::Free)))
                            if *base_lsn <= stable =>
                        {
                            return None;
                        }
                        _ => {}
                    }
                    let live = may_be_live
                        && i == bases.len()
                        && !self.unknown_damage
                        && damage_end.map_or(true, |end| end <= link.lsn);
                    if self.hidden_between(damaged_lsns, from, link.lsn, live) {
                        return None;
                    }
                    only_live = self.hidden_between(
                        damaged_lsns,
                        from,
                        link.lsn,
                        false,
                    );
                    Some(base)
                }),
            };

            let decoded = match base {
                Some(Base::Leaf { lo, hi, prefix_len, .. }) => {
                    let key =
                        [&lo[..*prefix_len], &link.encoded_key[..]].concat();
                    let in_range = key >= *lo
                        && (hi.is_empty() || key.as_slice() < hi.as_slice());
                    if in_range { Some(key) } else { None }
                }
                _ => None,
            };
            match decoded {
                Some(key) if only_live => live_only.push((link, key)),
                Some(key) => self.observations.push(Observation {
                    pid: link.pid,
                    lsn: link.lsn,
                    key,
                    seen: link.seen,
                }),
                None => self.out.links_skipped += 1,
            }
        }

        // "still part of its page" rests on the segments missing between
        // base and link having been reused by sled: a whole segment lost
        // (a file cut at a segment boundary, a segment zeroed) looks the
        // same. A key seen nowhere else is then more likely a wrong decoding
        // than a new key.
        let known: HashSet<&[u8]> =
            self.observations.iter().map(|o| o.key.as_slice()).collect();
        let (kept, unknown): (Vec<_>, Vec<_>) = live_only
            .into_iter()
            .partition(|(_, key)| known.contains(key.as_slice()));
        self.out.links_skipped += unknown.len() as u64;
        for (link, key) in kept {
            self.observations.push(Observation {
                pid: link.pid,
                lsn: link.lsn,
                key,
                seen: link.seen,
            });
        }
    }

    /// Whether a message could hide in the log between lsns `from` and
    /// `to`: damaged bytes there, or a segment missing from the file in
    /// between (unless the message sought would have kept it: `live`).
    fn hidden_between(
        &self,
        damaged_lsns: &[(Lsn, Lsn)],
        from: Lsn,
        to: Lsn,
        live: bool,
    ) -> bool {
        let d = damaged_lsns.partition_point(|(_, end)| *end <= from);
        if damaged_lsns.get(d).map_or(false, |(start, _)| *start < to) {
            return true;
        }
        let seg = Lsn::try_from(self.seg).expect("segment size fits i64");
        let segment = |lsn: Lsn| u64::try_from(lsn / seg).unwrap_or(0);
        let (first, last) = (segment(from), segment(to));
        if first > last {
            return false;
        }
        let present = self.present.partition_point(|n| *n <= last)
            - self.present.partition_point(|n| *n < first);
        present as u64 != last - first + 1 && !live
    }

    /// When meta pages name trees besides the default one: which pages
    /// belong to the default tree.
    fn tree_filter(&mut self) -> Option<TreeFilter> {
        let mut roots: BTreeMap<Vec<u8>, HashSet<PageId>> = BTreeMap::new();
        for meta in &self.metas {
            for (name, pid) in &meta.inner {
                let _ = roots.entry(name.to_vec()).or_default().insert(*pid);
            }
        }
        self.out.trees = roots.keys().cloned().collect();
        if roots.keys().all(|name| name.as_slice() == DEFAULT_TREE_ID) {
            return None;
        }
        let mut default = HashSet::new();
        let mut other = HashSet::new();
        for (name, tree_roots) in &roots {
            let reached = reach(tree_roots, &self.bases);
            if name.as_slice() == DEFAULT_TREE_ID {
                default.extend(reached);
            } else {
                other.extend(reached);
            }
        }
        Some(TreeFilter { default, other })
    }
}

/// Pages of the default tree, and of the others.
struct TreeFilter {
    default: HashSet<PageId>,
    other: HashSet<PageId>,
}

impl TreeFilter {
    /// Keys of this page are kept: it is the default tree's, or no tree's
    /// that we know of.
    fn keeps(&self, pid: PageId) -> bool {
        self.default.contains(&pid) || !self.other.contains(&pid)
    }

    /// This page's leaves may mark keys absent: it is known to be the
    /// default tree's.
    fn authoritative(&self, pid: PageId) -> bool {
        self.default.contains(&pid)
    }
}

/// Every page reachable from `roots` through any version of the index
/// nodes and sibling links found.
fn reach(
    roots: &HashSet<PageId>,
    bases: &HashMap<PageId, Vec<(Lsn, Base)>>,
) -> HashSet<PageId> {
    let mut seen = HashSet::new();
    let mut stack: Vec<PageId> = roots.iter().copied().collect();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        for (_, base) in bases.get(&pid).map_or(&[][..], Vec::as_slice) {
            match base {
                Base::Leaf { next, .. } => stack.extend(next),
                Base::Index { children, next } => {
                    stack.extend(children);
                    stack.extend(next);
                }
                Base::Free | Base::Unreadable => {}
            }
        }
    }
    seen
}

/// A key's versions newest first: absences before its first known value
/// dropped, consecutive equal values as one (the newest).
fn newest_first(versions: BTreeMap<Lsn, Seen>) -> Vec<Version> {
    let first_value = versions
        .iter()
        .find(|(_, seen)| matches!(seen, Seen::Value(_)))
        .map(|(lsn, _)| *lsn);
    let mut out: Vec<Version> = vec![];
    for (lsn, seen) in versions.into_iter().rev() {
        if seen == Seen::Absent && first_value.map_or(true, |first| lsn < first)
        {
            continue;
        }
        if let Some(newer) = out.last() {
            if newer.value.as_deref() == seen.value() {
                continue;
            }
        }
        out.push(Version { lsn, value: seen.value().map(<[u8]>::to_vec) });
    }
    out
}

/// Sorted ranges, overlapping or touching ones joined.
fn merge(ranges: Vec<(Lsn, Lsn)>) -> Vec<(Lsn, Lsn)> {
    let mut out: Vec<(Lsn, Lsn)> = vec![];
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => {
                last.1 = std::cmp::max(last.1, end)
            }
            _ => out.push((start, end)),
        }
    }
    out
}

/// (offset, length) ranges sorted, touching ones joined.
fn join(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = vec![];
    for (offset, len) in ranges {
        match out.last_mut() {
            Some(last) if offset <= last.0 + last.1 => {
                last.1 = std::cmp::max(last.0 + last.1, offset + len) - last.0;
            }
            _ => out.push((offset, len)),
        }
    }
    out
}

fn is_blob(kind: MessageKind) -> bool {
    matches!(
        kind,
        MessageKind::BlobMeta | MessageKind::BlobNode | MessageKind::BlobLink
    )
}

/// What the reader relies on in a node, which sled always writes so: its
/// key prefix is part of its low key, and its range is not empty.
fn consistent(node: &Node) -> bool {
    usize::from(node.prefix_len) <= node.lo.len()
        && (node.hi.is_empty() || node.lo < node.hi)
}

/// sled's own deserializer, run only on bytes that `well_formed` found to
/// be exactly one such item (sled's deserializers index without bounds
/// checks, trusting the CRC).
fn decode<T>(
    bytes: &[u8],
    well_formed: fn(&[u8]) -> bool,
    deserialize: fn(&mut &[u8]) -> crate::Result<T>,
) -> Option<T> {
    if !well_formed(bytes) {
        return None;
    }
    let mut cursor = bytes;
    let item = deserialize(&mut cursor).ok()?;
    if cursor.is_empty() { Some(item) } else { None }
}

/// The message header at `pos` of `buf`, and its length, if one parses
/// there (its CRC unchecked).
fn header_at(buf: &[u8], pos: usize) -> Option<(MessageHeader, usize)> {
    let avail = std::cmp::min(buf.len().checked_sub(pos)?, MAX_MSG_HEADER_LEN);
    // sled's header deserializer reads varints without bounds checks:
    // give it a full-size, zero-padded header (its maximal length)
    let mut padded = [0_u8; MAX_MSG_HEADER_LEN];
    padded[..avail].copy_from_slice(&buf[pos..pos + avail]);
    let mut cursor = &padded[..];
    let header = MessageHeader::deserialize(&mut cursor).ok()?;
    let len = MAX_MSG_HEADER_LEN - cursor.len();
    if len > avail { None } else { Some((header, len)) }
}

/// The intact message at `pos` of the segment `buf`, if there is one
/// there naming one of the `expect`ed segment numbers: its header, its
/// payload, and its length.
fn message_at<'b>(
    buf: &'b [u8],
    pos: usize,
    expect: &[u64],
) -> Option<(MessageHeader, &'b [u8], usize)> {
    let (header, header_len) = header_at(buf, pos)?;
    if header.kind == MessageKind::Corrupted
        || !expect.contains(&header.segment_number.0)
    {
        return None;
    }
    let body_start = pos + header_len;
    let end = body_start.checked_add(usize::try_from(header.len).ok()?)?;
    if end > buf.len() {
        return None;
    }
    let crc =
        calculate_message_crc32(&buf[pos..body_start], &buf[body_start..end]);
    if crc == header.crc32 {
        Some((header, &buf[body_start..end], end - pos))
    } else {
        None
    }
}

/// Bounds-checked walks over sled's serialized page updates
/// (serialization.rs): true when the bytes are exactly one such item.
mod wf {
    use std::convert::TryFrom;

    use super::Serialize;

    fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
        let width = match *buf.get(*pos)? {
            0..=240 => 1,
            241..=248 => 2,
            249 => 3,
            other => usize::from(other) - 246,
        };
        let end = pos.checked_add(width)?;
        let mut bytes = buf.get(*pos..end)?;
        let value = u64::deserialize(&mut bytes).ok()?;
        *pos = end;
        Some(value)
    }

    fn byte(buf: &[u8], pos: &mut usize) -> Option<u8> {
        let b = *buf.get(*pos)?;
        *pos += 1;
        Some(b)
    }

    fn bytes(buf: &[u8], pos: &mut usize) -> Option<()> {
        let len = usize::try_from(varint(buf, pos)?).ok()?;
        let end = pos.checked_add(len)?;
        if end > buf.len() {
            return None;
        }
        *pos = end;
        Some(())
    }

    fn exact(buf: &[u8], walk: impl FnOnce(&mut usize) -> Option<()>) -> bool {
        let mut pos = 0;
        walk(&mut pos).is_some() && pos == buf.len()
    }

    pub(super) fn node(buf: &[u8]) -> bool {
        exact(buf, |pos| {
            let _next = varint(buf, pos)?;
            let _merging_child = varint(buf, pos)?;
            let _merging = byte(buf, pos)?;
            let _prefix_len = byte(buf, pos)?;
            bytes(buf, pos)?; // lo
            bytes(buf, pos)?; // hi
            let kind = byte(buf, pos)?;
            let len = varint(buf, pos)?;
            // each item takes at least a byte: the loops end with the buffer
            for _ in 0..len {
                bytes(buf, pos)?; // keys
            }
            for _ in 0..len {
                match kind {
                    0 => bytes(buf, pos)?, // leaf values
                    1 => {
                        let _pointer = varint(buf, pos)?; // index children
                    }
                    _ => return None,
                }
            }
            if kind > 1 {
                return None;
            }
            Some(())
        })
    }

    pub(super) fn link(buf: &[u8]) -> bool {
        exact(buf, |pos| {
            match byte(buf, pos)? {
                0 => {
                    bytes(buf, pos)?;
                    bytes(buf, pos)?;
                }
                1 => bytes(buf, pos)?,
                2 => {
                    let _pid = varint(buf, pos)?;
                }
                3 | 4 => {}
                _ => return None,
            }
            Some(())
        })
    }

    fn fixed(buf: &[u8], pos: &mut usize, len: usize) -> Option<()> {
        let end = pos.checked_add(len)?;
        if end > buf.len() {
            return None;
        }
        *pos = end;
        Some(())
    }

    fn disk_ptr(buf: &[u8], pos: &mut usize) -> Option<()> {
        match byte(buf, pos)? {
            0 => {
                let _lid = varint(buf, pos)?;
            }
            1 => {
                let _lid = varint(buf, pos)?;
                fixed(buf, pos, 8)?; // blob lsn
            }
            _ => return None,
        }
        Some(())
    }

    pub(super) fn snapshot(buf: &[u8]) -> bool {
        exact(buf, |pos| {
            fixed(buf, pos, 8)?; // stable lsn
            let _active_segment = varint(buf, pos)?;
            while *pos < buf.len() {
                match byte(buf, pos)? {
                    0 => {
                        fixed(buf, pos, 8)?; // lsn
                        disk_ptr(buf, pos)?;
                    }
                    // a base and n - 1 links: (lsn, pointer, size) each
                    n => {
                        for _ in 0..n {
                            fixed(buf, pos, 8)?;
                            disk_ptr(buf, pos)?;
                            let _size = varint(buf, pos)?;
                        }
                    }
                }
            }
            Some(())
        })
    }

    pub(super) fn meta(buf: &[u8]) -> bool {
        exact(buf, |pos| {
            while *pos < buf.len() {
                bytes(buf, pos)?; // tree name
                let _root = varint(buf, pos)?;
            }
            Some(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        IVec,
        node::{Index, Leaf},
    };

    fn leaf(
        lo: &[u8],
        hi: &[u8],
        prefix_len: u8,
        kvs: &[(&[u8], &[u8])],
    ) -> Node {
        Node {
            next: std::num::NonZeroU64::new(7),
            merging_child: None,
            merging: false,
            prefix_len,
            lo: lo.into(),
            hi: hi.into(),
            data: Data::Leaf(Leaf {
                keys: kvs.iter().map(|(k, _)| IVec::from(*k)).collect(),
                values: kvs.iter().map(|(_, v)| IVec::from(*v)).collect(),
            }),
        }
    }

    /// The walks accept exactly what sled serializes, reject every
    /// truncation, and never panic (nor does decoding) on any flip.
    #[test]
    fn walks_match_sled_serialization() {
        let big = vec![9_u8; 70_000];
        let nodes = vec![
            leaf(b"", b"", 0, &[]),
            leaf(
                b"key/0001",
                b"key/0100",
                4,
                &[(b"0001", b"a"), (b"0050", &big)],
            ),
            Node {
                data: Data::Index(Index {
                    keys: vec![IVec::from(&b""[..]), IVec::from(&b"m"[..])],
                    pointers: vec![3, 300_000],
                }),
                ..Node::default()
            },
        ];
        let links = vec![
            Link::Set(IVec::from(&b"k"[..]), IVec::from(&big[..])),
            Link::Del(IVec::from(&b"k2"[..])),
            Link::ParentMergeIntention(12),
            Link::ParentMergeConfirm,
            Link::ChildMergeCap,
        ];
        let mut meta = Meta::default();
        let _ = meta.set_root(IVec::from(DEFAULT_TREE_ID), 3);
        let _ = meta.set_root(IVec::from(&b"other"[..]), 1_000);

        let snapshot = Snapshot {
            stable_lsn: Some(1 << 40),
            active_segment: Some(3 << 19),
            pt: vec![
                PageState::Present {
                    base: (7, crate::DiskPtr::Inline(20), 100),
                    frags: vec![(90, crate::DiskPtr::Blob(4000, 80), 9)],
                },
                PageState::Free(12, crate::DiskPtr::Inline(1 << 33)),
            ],
        };

        // (bytes, walk, whether no cut of them is itself well formed)
        let mut samples: Vec<(Vec<u8>, fn(&[u8]) -> bool, bool)> = vec![];
        for n in &nodes {
            let bytes = n.serialize();
            assert_eq!(
                decode(&bytes, wf::node, Node::deserialize).as_ref(),
                Some(n)
            );
            samples.push((bytes, wf::node, true));
        }
        for l in &links {
            let bytes = l.serialize();
            assert_eq!(
                decode(&bytes, wf::link, Link::deserialize).as_ref(),
                Some(l)
            );
            samples.push((bytes, wf::link, true));
        }
        let bytes = meta.serialize();
        assert_eq!(decode(&bytes, wf::meta, Meta::deserialize), Some(meta));
        samples.push((bytes, wf::meta, false));
        let bytes = snapshot.serialize();
        assert_eq!(
            decode(&bytes, wf::snapshot, Snapshot::deserialize),
            Some(snapshot)
        );
        samples.push((bytes, wf::snapshot, false));

        let mut state = 0x1234_5678_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let try_all = |bytes: &[u8]| {
            let _ = decode(bytes, wf::node, Node::deserialize);
            let _ = decode(bytes, wf::link, Link::deserialize);
            let _ = decode(bytes, wf::meta, Meta::deserialize);
            let _ = decode(bytes, wf::snapshot, Snapshot::deserialize);
            for pos in 0..bytes.len() {
                let _ = header_at(bytes, pos);
                let _ = message_at(bytes, pos, &[0, 1, 2, 3]);
            }
        };
        for (bytes, walk, prefix_free) in samples {
            assert!(walk(&bytes));
            for cut in 0..bytes.len() {
                if cut < 64 || cut + 64 > bytes.len() || cut % 97 == 0 {
                    assert!(
                        !prefix_free || !walk(&bytes[..cut]),
                        "cut at {}",
                        cut
                    );
                    try_all(&bytes[..cut]);
                }
            }
            for _ in 0..500 {
                let mut flipped = bytes.clone();
                for _ in 0..=rand() % 3 {
                    let at =
                        usize::try_from(rand() % bytes.len() as u64).unwrap();
                    flipped[at] ^= 1 << (rand() % 8);
                }
                try_all(&flipped[..flipped.len().min(4096)]);
            }
        }
        for _ in 0..20_000 {
            let len = usize::try_from(rand() % 64).unwrap();
            let junk: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
            try_all(&junk);
        }
    }

    #[test]
    fn versions_newest_first() {
        let mut v = BTreeMap::new();
        let _ = v.insert(1, Seen::Absent);
        let _ = v.insert(2, Seen::Value(b"a".to_vec()));
        let _ = v.insert(3, Seen::Value(b"a".to_vec()));
        let _ = v.insert(4, Seen::Deleted);
        let _ = v.insert(5, Seen::Absent);
        let _ = v.insert(6, Seen::Value(b"b".to_vec()));
        let got: Vec<(i64, Option<Vec<u8>>)> =
            newest_first(v).into_iter().map(|v| (v.lsn, v.value)).collect();
        assert_eq!(
            got,
            vec![(6, Some(b"b".to_vec())), (5, None), (3, Some(b"a".to_vec()))]
        );
    }
}
