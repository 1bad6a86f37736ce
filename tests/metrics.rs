//! Metrics and health of a real mount (`--metrics`): scraped over HTTP on
//! loopback like Prometheus does, while agents work on the mount.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::Mount;

/// A free loopback port (bound, then released for the daemon).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on the daemon's endpoint: status code and body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of the sample line that starts with `series` (name and labels).
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in:\n{body}"))
}

#[test]
fn a_scrape_shows_what_the_agents_did() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut m = Mount::new();
    m.unmount();
    let out = m.try_mount(&["--metrics", &addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    m.mounted = true;

    for i in 0..5 {
        std::fs::write(m.path(&format!("1-working/f{i}")), vec![7u8; 10_000]).unwrap();
    }
    assert_eq!(std::fs::read(m.path("1-working/f0")).unwrap().len(), 10_000);
    // A refusal: level 4 has no key.
    assert!(std::fs::read_dir(m.path("4-vaulted")).is_err());

    // A request's time is observed as its worker finishes, just after the
    // reply: poll until the last ones are in.
    let mut body = String::new();
    let counted = common::wait_for(std::time::Duration::from_secs(10), || {
        let (status, text) = get(port, "/metrics");
        assert_eq!(status, 200, "{text}");
        body = text;
        ["write", "create"].iter().all(|r| {
            let series = format!("vaultfs_request_duration_seconds_count{{request=\"{r}\"}}");
            body.lines().any(|l| {
                l.strip_prefix(series.as_str()).is_some_and(|v| v.trim().parse::<f64>().unwrap_or(0.0) >= 5.0)
            })
        })
    });
    assert!(counted, "{body}");
    assert!(value(&body, "vaultfs_operations_total{op=\"create\",result=\"ok\"}") >= 5.0, "{body}");
    assert!(value(&body, "vaultfs_operations_total{op=\"write\",result=\"ok\"}") >= 5.0, "{body}");
    assert!(body.contains("result=\"EACCES\""), "the refusal is counted:\n{body}");
    assert!(value(&body, "vaultfs_written_bytes_total") >= 50_000.0, "{body}");
    assert!(value(&body, "vaultfs_request_duration_seconds_count{request=\"write\"}") >= 5.0, "{body}");
    assert!(value(&body, "vaultfs_request_duration_seconds_count{request=\"create\"}") >= 5.0, "{body}");
    assert!(value(&body, "vaultfs_audit_leaves") > 10.0, "{body}");
    assert_eq!(value(&body, "vaultfs_level_open{level=\"1\"}"), 1.0);
    assert_eq!(value(&body, "vaultfs_level_open{level=\"4\"}"), 0.0);
    assert_eq!(value(&body, "vaultfs_lockdown"), 0.0);
    assert!(value(&body, "vaultfs_store_bytes") > 0.0);
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    let (status, body) = get(port, "/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(get(port, "/other").0, 404);

    // The same figures in `.stats`, read-only, recorded when opened.
    let stats = std::fs::read_to_string(m.path(".stats")).unwrap();
    assert!(stats.contains("vaultfs_operations_total{op=\"create\",result=\"ok\"}"), "{stats}");
    assert!(std::fs::OpenOptions::new().write(true).open(m.path(".stats")).is_err());
    assert!(std::fs::remove_file(m.path(".stats")).is_err());
    let names: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&".stats".to_string()), "{names:?}");
    let ops = common::control::audit_ops(&m);
    assert!(ops.iter().any(|(op, _, r, p)| op == "open" && *r == 0 && p == "/.stats"), "{ops:?}");

    // Lockdown shows at once.
    let out = common::vaultfs(&["lockdown", m.mnt.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(value(&get(port, "/metrics").1, "vaultfs_lockdown"), 1.0);

    // After the unmount nothing listens there any more.
    m.unmount();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_bad_metrics_address_is_refused_clearly() {
    let m = Mount::new();
    let mnt2 = m.dir.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    let out = common::vaultfs(&[
        "mount",
        m.store.to_str().unwrap(),
        mnt2.to_str().unwrap(),
        "--passphrase-file",
        m.passfile.to_str().unwrap(),
        "--metrics",
        "not an address",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics"));
}

#[test]
fn the_page_cache_grows_under_the_memory_ceiling_and_shows_in_stats() {
    let mib = |n: f64| n * f64::from(1u32 << 20);
    let mut m = Mount::with_options(&["memory=64,cache=32"]);
    std::fs::write(m.path("1-working/a.md"), b"note").unwrap();
    // The store opens with an eighth of the ceiling (8 MiB) and the
    // governor raises it, while the daemon is well under the ceiling, to
    // the 32 MiB asked for.
    let mut last = String::new();
    for _ in 0..100 {
        last = std::fs::read_to_string(m.path(".stats")).unwrap();
        if value(&last, "vaultfs_page_cache_bytes") == mib(32.0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(value(&last, "vaultfs_page_cache_bytes"), mib(32.0), "{last}");
    let resident = value(&last, "vaultfs_resident_bytes");
    assert!(resident > mib(1.0) && resident < mib(64.0), "{last}");

    // A cache that does not fit below the ceiling is refused, clearly.
    m.unmount();
    let out = m.try_mount(&["-o", "memory=64,cache=64"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("below the memory ceiling"));
}
