//! The worked test vectors of docs/AUDIT.md, computed here and checked to
//! appear in the doc verbatim, so the doc cannot drift from the code.
//! To regenerate after a deliberate format change:
//! `cargo test --lib audit::vectors -- --nocapture` and paste the section it prints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;

use super::archive::{ArchiveRef, Base, record_path};
use super::checkpoint::{Checkpoint, key_id, vault_origin};
use super::export::{checkpoint_line, leaf_line};
use super::leaf::{Leaf, Op};
use super::merkle::{self, Frontier, Hash, NodeId, Nodes};
use super::verify::{verify_export, verify_files};
use crate::crypto::{Key32, SigningKey};
use crate::format::hex;

const DOC: &str = include_str!("../../docs/AUDIT.md");

struct Mem(HashMap<NodeId, Hash>);

impl Nodes for Mem {
    type Error = Infallible;
    fn node(&self, id: NodeId) -> Result<Hash, Infallible> {
        Ok(self.0[&id])
    }
}

fn example_leaves() -> [Leaf; 2] {
    let open = Leaf {
        seq: 0,
        time_ns: 1_735_689_600_000_000_000,
        uid: 1000,
        gid: 1000,
        pid: 4242,
        comm: b"cat".to_vec(),
        op: Op::Open,
        level: Some(1),
        ino: 42,
        path: b"/1-working/prefs.md".to_vec(),
        offset: 0,
        len: 0,
        result: 0,
        note: Vec::new(),
    };
    let read = Leaf { seq: 1, time_ns: 1_735_689_600_000_250_000, op: Op::Read, len: 18, ..open.clone() };
    [open, read]
}

fn proof_list(out: &mut String, hashes: &[Hash]) {
    for h in hashes {
        writeln!(out, "    {}", hex(h)).expect("writing to a String cannot fail");
    }
}

/// `bytes` as a fenced block of hex, 32 bytes a line, between blank lines.
fn hex_block(out: &mut String, bytes: &[u8]) {
    let w = |out: &mut String, l: &str| writeln!(out, "{l}").expect("writing to a String cannot fail");
    w(out, "");
    w(out, "```");
    for chunk in bytes.chunks(32) {
        w(out, &hex(chunk));
    }
    w(out, "```");
    w(out, "");
}

/// The "Test vectors" section of docs/AUDIT.md, from its heading to its last line.
fn render() -> String {
    let mut s = String::new();
    let w = &mut s;
    macro_rules! line { ($($t:tt)*) => { writeln!(w, $($t)*).expect("writing to a String cannot fail") } }

    line!("## Test vectors");
    line!();
    line!("Generated and checked by `src/audit/vectors.rs`: the test fails if this section differs");
    line!("from what the code computes. Hex is lowercase; `‖` is concatenation.");
    line!();

    let [open, read] = example_leaves();
    let bytes = open.encode();
    line!("### One leaf");
    line!();
    line!("The leaf {{seq 0, time_ns 1735689600000000000, uid 1000, gid 1000, pid 4242, comm \"cat\",");
    line!("op open, level 1, ino 42, path \"/1-working/prefs.md\", offset 0, len 0, result 0}}");
    line!("encodes to {} bytes:", bytes.len());
    hex_block(w, &bytes);
    line!("leaf hash = BLAKE3(0x00 ‖ bytes) = `{}`", hex(&open.hash()));
    line!();

    // `truncate -s 3`: the new size is in `len`, `offset` is 0.
    let truncate =
        Leaf { seq: 2, op: Op::Setattr, comm: b"truncate".to_vec(), offset: 0, len: 3, ..open.clone() };
    let bytes = truncate.encode();
    line!("### A truncate");
    line!();
    line!("`truncate -s 3 /1-working/prefs.md` is recorded as the leaf {{seq 2, the same time, ids,");
    line!("level, ino and path as above, comm \"truncate\", op setattr, offset 0, len 3, result 0}}:");
    line!("the new size is in `len`. It encodes to {} bytes:", bytes.len());
    hex_block(w, &bytes);
    line!("leaf hash = `{}`", hex(&truncate.hash()));
    line!();

    // A succession step: no level, the root inode, the step in the path.
    let release = Leaf {
        seq: 3,
        comm: b"vaultfs".to_vec(),
        op: Op::Succession,
        level: None,
        ino: 1,
        path: b"succession release 5be1c0de".to_vec(),
        ..open.clone()
    };
    let bytes = release.encode();
    line!("### A succession release");
    line!();
    line!("`vaultfs succession release` of will 5be1c0de…, due, run by uid 1000 (pid 4242, comm");
    line!("\"vaultfs\"), is the leaf {{seq 3, the same time and ids, comm \"vaultfs\", op succession,");
    line!("level absent, ino 1, path \"succession release 5be1c0de\", offset 0, len 0, result 0}}.");
    line!("It encodes to {} bytes:", bytes.len());
    hex_block(w, &bytes);
    line!("leaf hash = `{}`", hex(&release.hash()));
    line!();

    line!("### Trees");
    line!();
    line!("Here leaf *i* is the single byte *i* (not a leaf encoding), for i = 0, 1, 2, ….");
    line!();
    let (leaves, mem, roots) = seven_leaf_tree();
    line!("```");
    line!("empty tree root  {}", hex(&roots[0]));
    for (i, l) in leaves.iter().enumerate() {
        line!("leaf hash {i}      {}", hex(l));
    }
    line!("node(0,1)        {}", hex(&merkle::node_hash(&leaves[0], &leaves[1])));
    line!("root, 3 leaves   {}", hex(&roots[3]));
    line!("root, 7 leaves   {}", hex(&roots[7]));
    line!("```");
    line!();
    let incl = merkle::inclusion_proof(&mem, 2, 7).expect("in-memory nodes cannot fail");
    line!("Inclusion proof of leaf 2 in the tree of 7 leaves (in order):");
    line!();
    proof_list(w, &incl);
    line!();
    let cons = merkle::consistency_proof(&mem, 3, 7).expect("in-memory nodes cannot fail");
    line!("Consistency proof from 3 leaves to 7 leaves (in order):");
    line!();
    proof_list(w, &cons);
    line!();

    line!("### Checkpoint");
    line!();
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let key = SigningKey::from_seed(Key32::from_bytes(seed));
    let vk = key.verifying_key();
    let vault_id: [u8; 16] = core::array::from_fn(|i| i as u8 * 0x11);
    let origin = vault_origin(&vault_id);
    line!("```");
    line!("Ed25519 seed     {}", hex(&seed));
    line!("public key       {}", hex(&vk.0));
    line!("vault id         {}", hex(&vault_id));
    line!("origin/key name  {origin}");
    line!("key id           {}", hex(&key_id(&origin, &vk)));
    line!("```");
    line!();
    let cp = Checkpoint { origin: origin.clone(), size: 7, root: roots[7] };
    let note = cp.sign(&key);
    line!("The checkpoint of the 7-leaf tree above, signed with this key (the note text, which");
    line!("ends with a newline):");
    line!();
    line!("```");
    w.push_str(&note);
    line!("```");
    line!();

    line!("### A complete `.audit` file");
    line!();
    line!("The leaf above (an open) and a read of 18 bytes 250 µs later, then the checkpoint");
    line!("over both, signed with the key above. Each line ends with a newline.");
    line!();
    let mut f = Frontier::default();
    let mut text = String::new();
    for l in [&open, &read] {
        f.append(l.hash());
        text.push_str(&leaf_line(l));
    }
    let cp2 = Checkpoint { origin, size: f.size, root: f.root() };
    text.push_str(&checkpoint_line(&cp2.sign(&key)));
    assert!(verify_export(text.as_bytes(), &vk).is_ok(), "the example export must verify");
    line!("```");
    w.push_str(&text);
    line!("```");
    line!();

    line!("### An archive and the file after it");
    line!();
    line!("The file above, kept as the archive `a.vfsaudit` of records 0 and 1. The file after it");
    line!("(the `.audit` of the store that archived them) starts with the base line, then the");
    line!("`archive` record (500 µs after the open, written by `vaultfs` as uid 0, pid 4242)");
    line!("naming the archive's BLAKE3, then a checkpoint over the 3 records:");
    line!();
    let digest = crate::crypto::blake3_of(text.as_bytes());
    let base = Base {
        frontier: f.clone(),
        archives: vec![ArchiveRef { first: 0, end: 2, file: "a.vfsaudit".into(), blake3: digest }],
    };
    let record = Leaf {
        seq: 2,
        time_ns: 1_735_689_600_000_500_000,
        uid: 0,
        gid: 0,
        comm: b"vaultfs".to_vec(),
        op: Op::Archive,
        level: None,
        ino: 8,
        path: record_path("a.vfsaudit", &digest),
        offset: 0,
        len: 2,
        ..open.clone()
    };
    let mut next = base.line();
    next.push_str(&leaf_line(&record));
    f.append(record.hash());
    next.push_str(&checkpoint_line(
        &Checkpoint { origin: cp2.origin.clone(), size: f.size, root: f.root() }.sign(&key),
    ));
    let files = [("a".to_string(), text.into_bytes()), ("next".to_string(), next.clone().into_bytes())];
    assert!(verify_files(&files, &vk).is_ok(), "the example chain must verify");
    line!("```");
    w.push_str(&next);
    line!("```");
    s
}

#[test]
fn doc_shows_exactly_these_vectors() {
    let section = render();
    println!("{section}");
    assert!(
        DOC.contains(&section),
        "docs/AUDIT.md must contain the test vector section printed above, verbatim (run with --nocapture)"
    );
}

#[test]
fn vectors_are_self_consistent() {
    // The proofs printed in the doc verify with the roots printed next to them.
    let (leaves, mem, roots) = seven_leaf_tree();
    let incl = merkle::inclusion_proof(&mem, 2, 7).unwrap();
    assert!(merkle::verify_inclusion(&leaves[2], 2, 7, &incl, &roots[7]));
    let cons = merkle::consistency_proof(&mem, 3, 7).unwrap();
    assert!(merkle::verify_consistency(3, 7, &roots[3], &roots[7], &cons));
    // And the 3-leaf root is the definition spelled out.
    let n01 = merkle::node_hash(&leaves[0], &leaves[1]);
    assert_eq!(roots[3], merkle::node_hash(&n01, &leaves[2]));
}

/// The trees of the doc's vectors: leaf i is the single byte i. Returns the
/// leaf hashes, every stored node, and the root of each size 0..=7.
fn seven_leaf_tree() -> (Vec<Hash>, Mem, Vec<Hash>) {
    let leaves: Vec<Hash> = (0..7u8).map(|i| merkle::leaf_hash(&[i])).collect();
    let mut f = Frontier::default();
    let mut mem = Mem(HashMap::new());
    let mut roots = vec![f.root()];
    for l in &leaves {
        mem.0.extend(f.append(*l));
        roots.push(f.root());
    }
    (leaves, mem, roots)
}
