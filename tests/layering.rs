//! Architecture guard (docs/ARCHITECTURE.md): each external crate is used only
//! by its owning module (and every dependency has an owner, or is declared
//! shared vocabulary), `crate::` imports only flow downward (grouped
//! imports included), and `unsafe` appears in `sys.rs` alone.

use std::fs;
use std::path::{Path, PathBuf};

/// (crate path as written in code, module directories or files that own it)
const OWNERS: &[(&str, &[&str])] = &[
    ("sled", &["store"]),
    ("etcd_client", &["store/cluster/etcd.rs"]),
    ("tokio", &["store/cluster/etcd.rs"]),
    ("s3", &["store/cluster/s3.rs"]),
    ("fuser", &["fs"]),
    ("clap", &["cli"]),
    ("clap_complete", &["cli"]),
    ("clap_mangen", &["cli"]),
    ("rpassword", &["cli"]),
    ("tracing_subscriber", &["cli"]),
    ("indicatif", &["cli"]),
    ("tss_esapi", &["gate/tpm"]),
    ("ctap_hid_fido2", &["gate/fido2"]),
    ("chacha20poly1305", &["crypto"]),
    ("argon2", &["crypto"]),
    ("hkdf", &["crypto"]),
    ("hmac", &["crypto"]),
    ("toml", &["policy"]),
    ("ed25519_dalek", &["crypto"]),
    ("notify", &["policy"]),
    ("vsss_rs", &["crypto/shamir.rs"]),
    ("rand_core", &["crypto/shamir.rs"]),
    ("hpke", &["crypto/heir.rs"]),
    ("zxcvbn", &["cli/passphrase.rs"]),
    ("prometheus_client", &["metrics"]),
    ("tiny_http", &["monitor"]),
    ("ureq", &["export"]),
    ("regex", &["scan"]),
    ("blake3", &["crypto"]),
    ("sha2", &["crypto"]),
    ("getrandom", &["crypto"]),
    // The signed-note checkpoint and `.audit` formats carry base64.
    ("base64", &["audit"]),
    // JSON: the `.audit` lines, and the front ends that print or send JSON.
    ("serde_json", &["audit", "cli", "control", "export"]),
    ("libc", &["sys.rs", "fs"]),
    ("signal_hook", &["fs"]),
];

/// Crates every module may use: derive and error vocabulary, logging, and
/// wiping secrets. Every other dependency must have an owner above.
const SHARED: &[&str] = &["serde", "thiserror", "tracing", "zeroize"];

/// Layer of each top-level module: a module may use `crate::m` only for m
/// at a strictly lower layer (or itself).
const LAYERS: &[(&str, u8)] = &[
    ("sys", 0),
    ("crypto", 0),
    ("format", 0),
    ("policy", 0),
    ("metrics", 0),
    ("scan", 0),
    ("store", 1),
    ("block", 2),
    ("meta", 2),
    ("audit", 2),
    ("gate", 2),
    ("vault", 3),
    ("fs", 4),
    ("control", 4),
    ("backup", 4),
    ("monitor", 4),
    ("export", 4),
    // The command line is the entry point: it starts the other front ends.
    ("cli", 5),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn module_of(rel: &str) -> &str {
    rel.split('/').next().unwrap().trim_end_matches(".rs")
}

fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.starts_with("//"))
}

/// Whether `line` names the path `name` (as `name::` or `use name;`), not as
/// the tail of a longer identifier or path.
fn uses_path(line: &str, name: &str) -> bool {
    let pat = format!("{name}::");
    line.match_indices(&pat).any(|(i, _)| {
        i == 0 || {
            let c = line.as_bytes()[i - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        }
    }) || line.contains(&format!("use {name};"))
}

fn source_files() -> (PathBuf, Vec<(String, String)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let out = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            (rel, fs::read_to_string(f).unwrap())
        })
        .collect();
    (src, out)
}

#[test]
fn external_crates_stay_in_their_owning_module() {
    let (_, files) = source_files();
    let mut bad = Vec::new();
    for (rel, text) in &files {
        for (krate, owners) in OWNERS {
            if owners.iter().any(|o| rel.starts_with(o)) {
                continue;
            }
            for (n, line) in code_lines(text) {
                if uses_path(line, krate) {
                    bad.push(format!("src/{rel}:{n} uses {krate} (owned by {owners:?}): {line}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "crate ownership violations:\n{}", bad.join("\n"));
}

/// The modules `use crate::{a, b::c, …};` statements name, with the line
/// each starts on (statements rustfmt spreads over lines are joined first).
fn grouped_crate_imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut stmt: Option<(usize, String)> = None;
    for (n, line) in code_lines(text) {
        let line = line
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ");
        match &mut stmt {
            Some((_, s)) => s.push_str(line),
            None if line.starts_with("use crate::{") => stmt = Some((n, line.to_string())),
            None => continue,
        }
        if let Some((start, s)) = stmt.take_if(|(_, s)| s.contains(';')) {
            out.extend(expand_group(&s).into_iter().map(|m| (start, m)));
        }
    }
    out
}

/// The first path segment of each item of a `use crate::{…};` group.
fn expand_group(stmt: &str) -> Vec<String> {
    let Some(inner) = stmt.split_once("crate::{").and_then(|(_, r)| r.trim_end().strip_suffix("};")) else {
        return Vec::new();
    };
    let (mut items, mut depth, mut item) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    items
        .iter()
        .map(|i| i.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
        .filter(|m| !m.is_empty() && m != "self")
        .collect()
}

#[test]
fn imports_flow_downward() {
    let (_, files) = source_files();
    let layer = |m: &str| LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l);
    let mut bad = Vec::new();
    for (rel, text) in &files {
        let module = module_of(rel);
        let Some(own) = layer(module) else { continue };
        let upward = |other: &str, other_layer: u8| {
            other != module && (other_layer > own || (other_layer == own && own != 0))
        };
        for (n, line) in code_lines(text) {
            for (other, other_layer) in LAYERS {
                if upward(other, *other_layer) && uses_path(line, &format!("crate::{other}")) {
                    bad.push(format!(
                        "src/{rel}:{n}: {module} (L{own}) uses {other} (L{other_layer}): {line}"
                    ));
                }
            }
        }
        for (n, other) in grouped_crate_imports(text) {
            match layer(&other) {
                Some(l) if upward(&other, l) => {
                    bad.push(format!("src/{rel}:{n}: {module} (L{own}) imports {other} (L{l}) in a group"))
                }
                _ => {}
            }
        }
    }
    assert!(bad.is_empty(), "upward or sideways imports:\n{}", bad.join("\n"));
}

#[test]
fn every_dependency_has_an_owner() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let mut missing = Vec::new();
    for line in deps.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name = line.split(['=', ' ']).next().unwrap().replace('-', "_");
        if !OWNERS.iter().any(|(k, _)| *k == name) && !SHARED.contains(&name.as_str()) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "dependencies with no owning module in tests/layering.rs: {missing:?}");
}

#[test]
fn unsafe_stays_in_sys() {
    let (_, files) = source_files();
    let mut bad = Vec::new();
    for (rel, text) in &files {
        if rel == "sys.rs" {
            continue;
        }
        for (n, line) in code_lines(text) {
            let words = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            if words.clone().any(|w| w == "unsafe") {
                bad.push(format!("src/{rel}:{n}: {line}"));
            }
        }
    }
    assert!(bad.is_empty(), "unsafe outside src/sys.rs:\n{}", bad.join("\n"));
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]") && lib.contains("#[allow(unsafe_code)]\nmod sys;"));
}

#[test]
fn every_module_has_a_layer() {
    let (_, files) = source_files();
    for (rel, _) in &files {
        let m = module_of(rel);
        if m == "lib" || m == "main" {
            continue;
        }
        assert!(LAYERS.iter().any(|(n, _)| *n == m), "src/{rel}: module {m} has no layer in this guard");
    }
}

#[test]
fn the_guard_itself_detects_violations() {
    assert!(uses_path("use sled::Db;", "sled"));
    assert!(uses_path("let x = crate::vault::Vault::open(p);", "crate::vault"));
    assert!(!uses_path("let x = not_sled::Db;", "sled"));
    assert!(!uses_path("use crate::vaultish::X;", "crate::vault"));
    assert_eq!(
        expand_group("use crate::{block, crypto::{Key32, seal}, basis as v, vault};"),
        ["block", "crypto", "basis", "vault"]
    );
    assert_eq!(expand_group("use crate::{self, fs};"), ["fs"]);
    let text = "use crate::{\n    audit::Leaf,\n    vault::Vault,\n};\nuse crate::store::Batch;\n";
    assert_eq!(grouped_crate_imports(text), [(1, "audit".to_string()), (1, "vault".to_string())]);
}
