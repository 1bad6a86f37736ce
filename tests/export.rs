//! Audit records leaving the machine (`[export.NAME]` in policy.toml), to
//! real receivers on loopback: a UDP syslog listener, a TCP listener reading
//! RFC 6587 frames, and an HTTP collector that is down at first and comes
//! back. Every record arrives once, in order, with its index and leaf hash,
//! and a remount goes on where delivery stopped.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mount, wait_for};

/// What a receiver got: record index -> the message.
type Got = Arc<Mutex<BTreeMap<u64, String>>>;

/// The `index` a syslog or CEF line carries.
fn index_of(line: &str) -> u64 {
    let (key, end) = if line.contains("CEF:0|") { ("cn1=", ' ') } else { ("index=\"", '"') };
    let at = line.find(key).unwrap_or_else(|| panic!("no index in {line}")) + key.len();
    line[at..].split(end).next().unwrap().parse().unwrap()
}

/// Records the lines, refusing a second copy of any index.
fn keep(got: &Got, index: u64, line: String) {
    let old = got.lock().unwrap().insert(index, line);
    assert!(old.is_none(), "record {index} delivered twice");
}

fn udp_receiver() -> (String, Got) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap().to_string();
    let got: Got = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = s.recv(&mut buf) {
            let line = String::from_utf8(buf[..n].to_vec()).unwrap();
            keep(&g, index_of(&line), line);
        }
    });
    (addr, got)
}

/// RFC 6587 octet counting: "LEN SP MSG".
fn tcp_receiver() -> (String, Got) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got: Got = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let mut r = BufReader::new(conn.unwrap());
            loop {
                let mut len = Vec::new();
                if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                    break;
                }
                let n: usize = std::str::from_utf8(&len[..len.len() - 1]).unwrap().parse().unwrap();
                let mut msg = vec![0u8; n];
                r.read_exact(&mut msg).unwrap();
                let line = String::from_utf8(msg).unwrap();
                keep(&g, index_of(&line), line);
            }
        }
    });
    (addr, got)
}

/// An HTTP collector on `port`, from now on: each POST's records.
fn http_receiver(port: u16, got: Got, vault: Arc<Mutex<Option<String>>>) {
    let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            *vault.lock().unwrap() = v["vault"].as_str().map(str::to_string);
            for r in v["records"].as_array().unwrap() {
                keep(&got, r["index"].as_u64().unwrap(), r.to_string());
            }
            let _ = req.respond(tiny_http::Response::empty(200));
        }
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `.audit` lines by index: hash of each record.
fn audit_hashes(m: &Mount) -> BTreeMap<u64, String> {
    std::fs::read_to_string(m.path(".audit"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v.get("index")?.as_u64()?, v["hash"].as_str()?.to_string())))
        .collect()
}

/// Waits until `got` holds every index below `n` (and nothing else).
fn wait_all(got: &Got, n: u64, what: &str) {
    let ok = wait_for(Duration::from_secs(30), || {
        let g = got.lock().unwrap();
        g.len() as u64 >= n && g.keys().copied().eq(0..g.len() as u64)
    });
    let g = got.lock().unwrap();
    assert!(ok, "{what}: {} records, wanted 0..{n}: {:?}", g.len(), g.keys().take(5).collect::<Vec<_>>());
}

#[test]
fn records_reach_syslog_cef_and_http_collectors_once_in_order() {
    let (udp, udp_got) = udp_receiver();
    let (tcp, tcp_got) = tcp_receiver();
    let http_port = free_port();
    let mut m = Mount::new();
    m.unmount();
    std::fs::write(
        m.store.join("policy.toml"),
        format!(
            "[export.siem]\nformat = \"syslog\"\naddress = \"udp://{udp}\"\n\
             [export.arc]\nformat = \"cef\"\naddress = \"tcp://{tcp}\"\nbatch = 7\n\
             [export.lake]\nformat = \"json\"\naddress = \"http://127.0.0.1:{http_port}/ingest\"\n"
        ),
    )
    .unwrap();
    m.mount();
    for i in 0..20 {
        std::fs::write(m.path(&format!("1-working/f{i}")), format!("{i}")).unwrap();
    }
    let _ = std::fs::read_dir(m.path("4-vaulted"));
    let hashes = audit_hashes(&m);
    let n = *hashes.keys().last().unwrap() + 1;
    wait_all(&udp_got, n, "udp syslog");
    wait_all(&tcp_got, n, "tcp cef");
    for (i, hash) in &hashes {
        let line = &udp_got.lock().unwrap()[i];
        assert!(
            (line.starts_with("<110>1 ") || line.starts_with("<108>1 "))
                && line.contains(&format!("hash=\"{hash}\"")),
            "{line}"
        );
        let cef = &tcp_got.lock().unwrap()[i];
        assert!(cef.contains("CEF:0|vaultfs|vaultfs|") && cef.contains(&format!("cs2={hash}")), "{cef}");
    }
    assert!(
        udp_got.lock().unwrap().values().any(|l| l.contains("op=\"create\"") && l.contains("/1-working/f3"))
    );
    assert!(udp_got.lock().unwrap().values().any(|l| l.starts_with("<108>") && l.contains("result=\"13\"")));

    // `status` shows where each sink stands: the HTTP collector is down.
    let status = |m: &Mount| -> serde_json::Value {
        let out = common::vaultfs(&["status", m.mnt.to_str().unwrap(), "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let sink = |sinks: &serde_json::Value, name: &str| {
        sinks.as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap_or_default()
    };
    let mut sinks = serde_json::Value::Null;
    let seen = wait_for(Duration::from_secs(10), || {
        sinks = status(&m)["exports"].clone();
        sink(&sinks, "siem")["delivered"].as_u64().unwrap_or(0) >= n
            && sink(&sinks, "lake")["error"].is_string()
    });
    assert!(seen, "{sinks}");
    let lake = sink(&sinks, "lake");
    assert!(lake["error"].as_str().is_some_and(|e| e.contains("127.0.0.1")), "{sinks}");
    assert_eq!(lake["delivered"], 0, "{sinks}");
    assert!(sink(&sinks, "siem").get("error").is_none(), "{sinks}");

    // The HTTP collector was down all along: nothing was lost meanwhile.
    let http_got: Got = Arc::default();
    let vault_seen = Arc::new(Mutex::new(None));
    http_receiver(http_port, http_got.clone(), vault_seen.clone());
    wait_all(&http_got, n, "http json (after the collector came back)");
    assert_eq!(vault_seen.lock().unwrap().as_ref().map(String::len), Some(32));
    assert!(
        wait_for(Duration::from_secs(10), || {
            let st = status(&m);
            st["exports"].as_array().unwrap().iter().all(|s| s.get("error").is_none())
        }),
        "the failure clears once the collector answers"
    );

    // A remount goes on where delivery stopped: no record twice (keep()
    // refuses duplicates), none missing.
    m.unmount();
    m.mount();
    std::fs::write(m.path("1-working/after"), "more").unwrap();
    let n2 = *audit_hashes(&m).keys().last().unwrap() + 1;
    assert!(n2 > n);
    wait_all(&udp_got, n2, "udp after remount");
    wait_all(&tcp_got, n2, "tcp after remount");
    wait_all(&http_got, n2, "http after remount");
    let cursor = std::fs::read_to_string(m.store.join("export/lake.cursor")).unwrap();
    assert!(cursor.trim().parse::<u64>().unwrap() >= n);
}

/// `vaultfs audit tail --format cef|syslog` prints what the exports send.
#[test]
fn audit_tail_prints_cef_and_syslog() {
    let m = Mount::new();
    std::fs::write(m.path("1-working/x.md"), "x").unwrap();
    for (format, marker) in [("cef", "CEF:0|vaultfs|vaultfs|"), ("syslog", "[vaultfs@32473 vault=\"")] {
        let out = common::vaultfs(&["audit", "tail", m.mnt.to_str().unwrap(), "-n", "3", "--format", format]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().all(|l| l.starts_with("<1") && l.contains(marker)), "{text}");
        assert!(!text.contains("vault=\"\"") && !text.contains("cs1= "), "the vault id is shown: {text}");
    }
}
