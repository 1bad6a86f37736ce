//! Helpers for tests that drive a mounted vault's control socket and read
//! its `.audit` view: command outcomes, `status --json`, pending approvals.

use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use super::{Mount, wait_for};

pub fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("expected an error").raw_os_error().unwrap()
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn refused(out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn vaultfs(m: &Mount, args: &[&str]) -> Output {
    m.run(args)
}

pub fn store(m: &Mount) -> &str {
    m.store.to_str().unwrap()
}

pub fn mnt(m: &Mount) -> &str {
    m.mnt.to_str().unwrap()
}

pub fn pass(m: &Mount) -> &str {
    m.passfile.to_str().unwrap()
}

pub fn status(m: &Mount) -> serde_json::Value {
    serde_json::from_str(&ok(&vaultfs(m, &["status", mnt(m), "--json"]))).unwrap()
}

pub fn level_state(m: &Mount, level: usize) -> String {
    status(m)["levels"][level]["state"].as_str().unwrap().to_string()
}

pub fn audit_ops(m: &Mount) -> Vec<(String, Option<u64>, i64, String)> {
    let text = fs::read_to_string(m.path(".audit")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("op").is_some())
        .map(|v| {
            (
                v["op"].as_str().unwrap().to_string(),
                v["level"].as_u64(),
                v["result"].as_i64().unwrap(),
                v["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Opens `path` for reading in a thread; returns its handle.
pub fn open_in_thread(path: PathBuf) -> std::thread::JoinHandle<std::io::Result<String>> {
    std::thread::spawn(move || fs::read_to_string(path))
}

pub fn wait_pending(m: &Mount) -> serde_json::Value {
    let mut found = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(10), || {
            let st = status(m);
            if st["pending"].as_u64() > Some(0) {
                found = st;
                true
            } else {
                false
            }
        }),
        "no open waited for approval"
    );
    found
}
