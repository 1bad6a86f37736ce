//! The cluster store through the real binary and a real mount: metadata in
//! a real etcd, block data in a real S3 server (SeaweedFS), both on
//! loopback and started per test (tests/common/cluster.rs).

mod common;
#[path = "common/cluster.rs"]
mod servers;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{PASSPHRASE, bin, is_mounted, wait_for};
use servers::{Etcd, Host, ObjectStore};

const BUCKET: &str = "vault-data";

/// Environment variables for the vaultfs commands.
type Env = Vec<(&'static str, String)>;

/// A cluster vault on its own etcd and object store, mounted while `mounted`.
struct ClusterVault {
    etcd: Etcd,
    objects: ObjectStore,
    dir: tempfile::TempDir,
    address: String,
    mnt: PathBuf,
    passfile: PathBuf,
    mounted: bool,
    /// Environment of every command (how to reach a secured etcd).
    env: Env,
}

impl ClusterVault {
    fn new() -> ClusterVault {
        ClusterVault::on(Etcd::start())
    }

    /// A vault on `etcd`, addressed through all its members.
    fn on(etcd: Etcd) -> ClusterVault {
        ClusterVault::on_with(etcd, Vec::new())
    }

    /// A vault on `etcd`, every command run with `env`.
    fn on_with(etcd: Etcd, env: Env) -> ClusterVault {
        ClusterVault::build(etcd, ObjectStore::start(), "127.0.0.1", env)
    }

    /// A vault on `etcd` and `objects`, both addressed at `ip` (a local
    /// address they listen on), every command run with `env`.
    fn build(etcd: Etcd, objects: ObjectStore, ip: &str, env: Env) -> ClusterVault {
        objects.create_bucket(BUCKET);
        let dir = tempfile::tempdir().unwrap();
        let (mnt, passfile) = (dir.path().join("mnt"), dir.path().join("pass"));
        std::fs::create_dir(&mnt).unwrap();
        std::fs::write(&passfile, format!("{PASSPHRASE}\n")).unwrap();
        let address = format!("etcd://{}/agents", etcd.endpoints_on(ip).join(","));
        let v = ClusterVault { etcd, objects, dir, address, mnt, passfile, mounted: false, env };
        let data = format!("s3+http://{}/{BUCKET}", v.objects.endpoint_on(ip));
        let out = v.run(&[
            "init",
            &v.address,
            "--data",
            &data,
            "--passphrase-file",
            v.passfile.to_str().unwrap(),
            "--kdf-memory",
            "8",
            "--kdf-passes",
            "1",
        ]);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        v
    }

    /// `vaultfs ARGS` with this vault's state directory.
    fn run(&self, args: &[&str]) -> Output {
        self.run_on("state", args)
    }

    /// `vaultfs ARGS` as another host would run it: its own state
    /// directory, so it knows nothing of this host's mount.
    fn run_on(&self, host: &str, args: &[&str]) -> Output {
        self.run_with(host, &self.env, args)
    }

    /// `vaultfs ARGS` on `host` with `env` instead of the vault's own.
    fn run_with(&self, host: &str, env: &[(&str, String)], args: &[&str]) -> Output {
        self.command_with(host, None, env).args(args).output().expect("run vaultfs")
    }

    /// `vaultfs` as `host` runs it, inside the network namespace `net` if
    /// given; with this vault's environment.
    fn command(&self, host: &str, net: Option<&Host>) -> Command {
        self.command_with(host, net, &self.env)
    }

    /// `vaultfs` as `host` runs it, in `net` if given, with `env` (and
    /// none of the vault's own).
    fn command_with(&self, host: &str, net: Option<&Host>, env: &[(&str, String)]) -> Command {
        let mut c = match net {
            Some(net) => net.command(Path::new(bin())),
            None => Command::new(bin()),
        };
        c.env("VAULTFS_STATE_DIR", self.dir.path().join(host)).envs(env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn pass(&self) -> &str {
        self.passfile.to_str().unwrap()
    }

    fn try_mount(&self) -> Output {
        self.try_mount_with(&[])
    }

    /// `vaultfs mount` of this vault with extra arguments (mount options).
    fn try_mount_with(&self, extra: &[&str]) -> Output {
        let log = self.dir.path().join("daemon.log");
        let mut args =
            vec!["mount", &self.address, self.mnt.to_str().unwrap(), "--passphrase-file", self.pass()];
        args.extend_from_slice(&["--log", log.to_str().unwrap()]);
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn mount_with(&mut self, extra: &[&str]) {
        let out = self.try_mount_with(extra);
        assert!(out.status.success(), "mount failed: {}", String::from_utf8_lossy(&out.stderr));
        self.mounted = true;
    }

    /// `kill -9` of the daemon; returns once it is gone and unmounted.
    fn kill_daemon(&mut self) {
        let pid = self.daemon_pid().expect("daemon pid");
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        self.mounted = false;
        let gone = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('Z'))
        };
        assert!(wait_for(Duration::from_secs(20), gone), "the killed daemon {pid} lingers");
    }

    fn mount(&mut self) {
        self.mount_with(&[]);
    }

    /// A new empty directory `name` for another host's mount, and what
    /// unmounts whatever is mounted there when the test ends.
    fn mount_point(&self, name: &str) -> (PathBuf, Mounted) {
        let mnt = self.dir.path().join(name);
        std::fs::create_dir(&mnt).unwrap();
        (mnt.clone(), Mounted(mnt))
    }

    /// Mounts the vault here (the holder) with `file` holding `content`, and
    /// read-only on `host-b` at `mnt-b`: that mount point, its unmount guard,
    /// and both mount points as text (holder's, reader's).
    fn holder_and_reader(&mut self, file: &str, content: &[u8]) -> (PathBuf, Mounted, String, String) {
        self.mount();
        std::fs::write(self.path(file), content).unwrap();
        let (mnt_b, unmount_b) = self.mount_point("mnt-b");
        self.mount_reader("host-b", &mnt_b);
        let (a, b) = (self.mnt.to_str().unwrap().to_string(), mnt_b.to_str().unwrap().to_string());
        (mnt_b, unmount_b, a, b)
    }

    /// A read-only mount on host `host` at `mnt`, logging to `host.log`.
    fn mount_reader(&self, host: &str, mnt: &Path) {
        self.mount_reader_with(host, mnt, &self.env)
    }

    /// `mount_reader` with `env` instead of the vault's environment.
    fn mount_reader_with(&self, host: &str, mnt: &Path, env: &[(&str, String)]) {
        let out = self.try_mount_reader_with(host, mnt, env);
        assert!(out.status.success(), "{host}'s read-only mount: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A read-only mount on `host`, as it went.
    fn try_mount_reader_with(&self, host: &str, mnt: &Path, env: &[(&str, String)]) -> Output {
        self.try_mount_on(host, mnt, env, "ro")
    }

    /// A mount on `host` that shares writing (`-o shared`), logging to
    /// `host.log`.
    fn mount_sharing(&self, host: &str, mnt: &Path) {
        let out = self.try_mount_on(host, mnt, &self.env, "shared");
        assert!(out.status.success(), "{host}'s shared mount: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Mounts that share writing on host-a at `mnt-a` and host-b at
    /// `mnt-b`: each mount point with its unmount guard.
    fn two_sharing_hosts(&self) -> ((PathBuf, Mounted), (PathBuf, Mounted)) {
        let (a, b) = (self.mount_point("mnt-a"), self.mount_point("mnt-b"));
        self.mount_sharing("host-a", &a.0);
        self.mount_sharing("host-b", &b.0);
        (a, b)
    }

    /// A mount on `host` with `-o OPTIONS`, as it went.
    fn try_mount_on(&self, host: &str, mnt: &Path, env: &[(&str, String)], options: &str) -> Output {
        let log = self.dir.path().join(format!("{host}.log"));
        self.command_with(host, None, env)
            .env("VAULTFS_HOST", host)
            .args([
                "mount",
                &self.address,
                mnt.to_str().unwrap(),
                "--passphrase-file",
                self.pass(),
                "-o",
                options,
            ])
            .args(["--log", log.to_str().unwrap()])
            .output()
            .unwrap()
    }

    /// `vaultfs ARGS` on `host`, asserted to succeed.
    fn ok_on(&self, host: &str, args: &[&str]) -> String {
        let out = self.run_on(host, args);
        assert!(out.status.success(), "{args:?} on {host}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn unmount(&mut self) {
        let out = self.run(&["umount", self.mnt.to_str().unwrap()]);
        assert!(out.status.success(), "umount failed: {}", String::from_utf8_lossy(&out.stderr));
        self.mounted = false;
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn daemon_pid(&self) -> Option<i32> {
        let pid_file = self.dir.path().join("state/agents/mount.pid");
        std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// What the mount on `host` (`mount_reader`) logged.
    fn host_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{host}.log"))).unwrap_or_default()
    }

    /// `audit verify` of the unmounted vault, asserted to pass: what it printed.
    fn audit_verifies(&self) -> String {
        let out = self.run(&["audit", "verify", &self.address, "--passphrase-file", self.pass()]);
        assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `fsck` of the unmounted vault: its whole report, asserted clean.
    fn fsck_clean(&self) -> String {
        let out = self.run(&["fsck", &self.address, "--passphrase-file", self.pass()]);
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && report.contains("status: clean"),
            "fsck: {report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report
    }
}

impl Drop for ClusterVault {
    fn drop(&mut self) {
        if self.mounted {
            if let Some(pid) = self.daemon_pid()
                && std::thread::panicking()
            {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            } else {
                let _ = self.run(&["umount", self.mnt.to_str().unwrap()]);
            }
            if is_mounted(&self.mnt) {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

/// Every object of the vault's bucket, read back over plain HTTP.
fn objects_in(objects: &ObjectStore) -> Vec<(String, Vec<u8>)> {
    objects.list(BUCKET).into_iter().map(|k| (k.clone(), objects.get(BUCKET, &k))).collect()
}

/// Writes `bytes` to a new file at `path` and makes them durable: with
/// grouped commits (the default) a failure to store them shows at fsync.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What a mount writes comes back after a remount, from etcd and the
/// bucket alone; the bucket holds no plaintext and no names; fsck and the
/// audit log agree.
#[test]
fn a_cluster_vault_round_trips_through_etcd_and_s3() {
    let mut v = ClusterVault::new();
    v.mount();
    let big = pattern(3 << 20, 7);
    std::fs::write(
        v.path("1-working/findings-of-the-week.md"),
        b"SECRET-AGENT-MEMORY the launch code is 0000\n",
    )
    .unwrap();
    std::fs::write(v.path("1-working/model.bin"), &big).unwrap();
    std::fs::create_dir(v.path("2-private/notes")).unwrap();
    for i in 0..50 {
        std::fs::write(v.path(&format!("2-private/notes/n{i}")), format!("note {i}\n")).unwrap();
    }
    std::fs::rename(v.path("2-private/notes/n0"), v.path("2-private/notes/renamed")).unwrap();
    std::fs::remove_file(v.path("2-private/notes/n1")).unwrap();
    v.unmount();

    v.mount();
    assert_eq!(std::fs::read(v.path("1-working/model.bin")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(v.path("2-private/notes/renamed")).unwrap(), "note 0\n");
    assert!(!v.path("2-private/notes/n1").exists());
    assert_eq!(std::fs::read_dir(v.path("2-private/notes")).unwrap().count(), 49);
    let audit = std::fs::read_to_string(v.path(".audit")).unwrap();
    assert!(audit.contains("findings-of-the-week.md"), "the audit log lost the first mount's records");
    v.unmount();

    let objects = objects_in(&v.objects);
    assert!(!objects.is_empty(), "no object was written");
    for (name, body) in &objects {
        assert!(name.starts_with("agents/seg/"), "object {name} outside the vault's prefix");
        assert!(body.starts_with(b"VAULTSEG"), "object {name} has no segment header");
        for plain in [&b"SECRET-AGENT-MEMORY"[..], b"findings-of-the-week", b"note 4", &big[..4096]] {
            assert!(!contains(body, plain), "object {name} holds plaintext");
        }
    }
    let report = v.fsck_clean();
    assert!(report.contains("audit log"), "{report}");
    v.audit_verifies();
}

/// A read-only mount keeps what it read of the holder's keys in memory
/// while its watch of the vault brings every change: a second read costs
/// no request to etcd, a change or deletion the holder commits replaces
/// it without one, and the catch-up before each open and lookup costs one
/// (the revision), or two when another vault in the same etcd moved the
/// revision past everything this vault's watch can hear (the revision,
/// then a touch of the reader's own key, whose change it then hears).
#[test]
fn a_reader_keeps_the_holders_keys_while_its_watch_brings_their_changes() {
    use vaultfs::store::{Batch, ClusterAddress, DataAddress, Store};
    let (etcd, objects) = (Etcd::start(), ObjectStore::start());
    objects.create_bucket(BUCKET);
    let address = |vault: &str| format!("etcd://{}/{vault}", etcd.endpoint());
    let data = DataAddress::parse(&format!("s3+http://{}/{BUCKET}", objects.endpoint())).unwrap();
    let holder = Store::create_cluster(&ClusterAddress::parse(&address("agents")).unwrap(), &data).unwrap();
    holder.put(b"Ikept", b"one".to_vec()).unwrap();
    let reader = Store::open_reader(Path::new(&address("agents")), "host-b", b"A", b"L").unwrap();
    let get = |k: &[u8]| reader.get(k).unwrap().map(|v| v.to_vec());
    let costs = |f: &dyn Fn()| {
        let before = reader.etcd_requests();
        f();
        reader.etcd_requests() - before
    };
    // Once the watch is up, a value read is kept.
    let kept = || {
        get(b"Ikept");
        costs(&|| assert_eq!(get(b"Ikept").as_deref(), Some(&b"one"[..]))) == 0
    };
    assert!(wait_for(Duration::from_secs(5), kept), "a reader's second read of a key still asks etcd");
    assert_eq!(get(b"Inever"), None);
    assert_eq!(costs(&|| assert_eq!(get(b"Inever"), None)), 0, "a key known absent is asked again");

    // The holder's changes arrive by the watch, not by asking.
    let before = reader.etcd_requests();
    holder.put(b"Ikept", b"two".to_vec()).unwrap();
    let mut gone = Batch::default();
    gone.delete(b"Inever".to_vec());
    gone.put(b"Inever".to_vec(), b"made".to_vec());
    holder.apply(gone).unwrap();
    let arrived =
        || get(b"Ikept").as_deref() == Some(&b"two"[..]) && get(b"Inever").as_deref() == Some(&b"made"[..]);
    assert!(
        wait_for(Duration::from_secs(5), arrived),
        "the holder's change never reached the reader's memory"
    );
    assert_eq!(reader.etcd_requests(), before, "changes reached memory by asking etcd");
    let mut deleted = Batch::default();
    deleted.delete(b"Ikept".to_vec());
    holder.apply(deleted).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || get(b"Ikept").is_none()),
        "a deletion never reached the reader"
    );
    assert_eq!(reader.etcd_requests(), before);

    // A commit larger than a gRPC message's default (4 MiB) arrives by the
    // watch too, whole: had the watch broken, memory would have been dropped.
    let mut large = Batch::default();
    for i in 0..64u8 {
        large.put(format!("Ilarge{i:02}").into_bytes(), vec![i; 100_000]);
    }
    large.put(b"Ikept".to_vec(), b"three".to_vec());
    holder.apply(large).unwrap();
    let arrived = || get(b"Ikept").as_deref() == Some(&b"three"[..]);
    assert!(wait_for(Duration::from_secs(5), arrived), "a large commit never reached the reader's memory");
    assert_eq!(reader.etcd_requests(), before, "a large commit broke the watch");

    // A listing longer than one page of etcd's (512), read to its end, is
    // kept whole: read again, it costs nothing, on the reader as on the holder.
    let mut listing = Batch::default();
    for i in 0..700 {
        listing.put(format!("Dlist{i:04}").into_bytes(), b"entry".to_vec());
    }
    holder.apply(listing).unwrap();
    assert!(wait_for(Duration::from_secs(5), || get(b"Dlist0699").is_some()));
    let scan = |s: &Store| s.scan_prefix(b"Dlist").collect::<Result<Vec<_>, _>>().unwrap().len();
    assert_eq!(scan(&reader), 700);
    assert_eq!(costs(&|| assert_eq!(scan(&reader), 700)), 0, "a listing read whole is asked again");
    assert_eq!(scan(&holder), 700);
    let held = holder.etcd_requests();
    assert_eq!(scan(&holder), 700);
    assert_eq!(holder.etcd_requests(), held, "the holder asks again for a listing it read whole");

    // A catch-up asks for the revision, and finds the watch there.
    assert_eq!(costs(&|| reader.catch_up().unwrap()), 1);
    // Another vault's write moves etcd's revision where this vault's watch
    // hears nothing: the reader touches its own key and hears that.
    let other = Store::create_cluster(&ClusterAddress::parse(&address("others")).unwrap(), &data).unwrap();
    other.put(b"Ix", b"elsewhere".to_vec()).unwrap();
    assert_eq!(costs(&|| reader.catch_up().unwrap()), 2, "revision, touch");
    assert_eq!(
        costs(&|| assert_eq!(get(b"Inever").as_deref(), Some(&b"made"[..]))),
        0,
        "memory stopped answering"
    );
    // What the reader writes of its own (its log's kinds) stays its own.
    reader.put(b"A1", b"reader's".to_vec()).unwrap();
    holder.put(b"A1", b"holder's".to_vec()).unwrap();
    holder.put(b"Isync", b"x".to_vec()).unwrap();
    assert!(wait_for(Duration::from_secs(5), || get(b"Isync").is_some()));
    assert_eq!(reader.get(b"A1").unwrap().map(|v| v.to_vec()).as_deref(), Some(&b"reader's"[..]));

    // A miss reads the neighbours too: the next inode numbers' records,
    // and the whole directory of an entry (names and absent names alike).
    use vaultfs::format::keys;
    let mut tree = Batch::default();
    for ino in 1000..1100u64 {
        tree.put(keys::inode(ino).to_vec(), format!("inode {ino}").into_bytes());
    }
    let entry = |name: u8| keys::dirent(1, &[7; 16], &[name; 16]).to_vec();
    for name in 0..50u8 {
        tree.put(entry(name * 2), vec![name]);
    }
    holder.apply(tree).unwrap();
    assert!(wait_for(Duration::from_secs(5), || reader.catch_up().is_ok() && get(&entry(98)).is_some()));
    let inode = |ino: u64| get(&keys::inode(ino)).unwrap_or_else(|| panic!("inode {ino} not read"));
    assert_eq!(costs(&|| assert_eq!(inode(1000), b"inode 1000")), 1);
    let next = || (1001..1064).for_each(|ino| assert_eq!(inode(ino), format!("inode {ino}").into_bytes()));
    assert_eq!(costs(&next), 0, "the next inodes were asked for one by one");
    assert_eq!(costs(&|| assert!(get(&entry(0)).is_some())), 0, "the directory was read whole with entry 98");
    let others = || (0..100u8).for_each(|n| assert_eq!(get(&entry(n)).is_some(), n % 2 == 0));
    assert_eq!(costs(&others), 0, "a directory's other names were asked for one by one");
}

/// A cluster vault `agents` made through the store alone (no mount) on
/// `etcd` and an object store of its own: the servers, the vault's address
/// and the holder's store (dropped before the servers).
struct StoreVault {
    etcd: Etcd,
    objects: ObjectStore,
    address: String,
    holder: vaultfs::store::Store,
}

impl StoreVault {
    fn on(etcd: Etcd) -> StoreVault {
        use vaultfs::store::{ClusterAddress, DataAddress, Store};
        let objects = ObjectStore::start();
        objects.create_bucket(BUCKET);
        let address = format!("etcd://{}/agents", etcd.endpoint());
        let data = DataAddress::parse(&format!("s3+http://{}/{BUCKET}", objects.endpoint())).unwrap();
        let holder = Store::create_cluster(&ClusterAddress::parse(&address).unwrap(), &data).unwrap();
        StoreVault { etcd, objects, address, holder }
    }
}

/// While no reader is mounted the holder keeps its file locks to itself
/// (no etcd request per lock, as on a store directory); a reader that
/// mounts finds every one of them published before it serves, and every
/// change after; once the last reader is gone they stay here again.
#[test]
fn a_holder_alone_publishes_its_locks_only_once_a_reader_mounts() {
    use vaultfs::store::{LockClaim, Store};
    let StoreVault { etcd: _etcd, objects: _objects, address, holder } = StoreVault::on(Etcd::start());
    let claim = |ino: u64, value: &[u8]| match holder.claim_host_locks(ino, 0, Some(value.to_vec())).unwrap()
    {
        LockClaim::Won(_) => (),
        LockClaim::Lost(..) => panic!("the holder lost a claim on inode {ino} with no reader mounted"),
    };
    let costs = |f: &dyn Fn()| {
        let before = holder.etcd_requests();
        f();
        holder.etcd_requests() - before
    };
    // Its first look at the readers' keys finds none.
    assert!(
        wait_for(Duration::from_secs(5), || costs(&|| claim(7, b"seven")) == 0),
        "a lock on a holder alone still costs etcd requests"
    );
    assert_eq!(costs(&|| claim(8, b"eight")), 0);
    assert_eq!(costs(&|| holder.set_host_locks(8, None).unwrap()), 0);
    assert_eq!(costs(&|| claim(9, b"nine")), 0);
    assert_eq!(costs(&|| holder.set_host_locks(9, Some(b"less".to_vec())).unwrap()), 0);

    // A reader's mount returns once the holder said it saw it: by then
    // every lock the holder holds is there for it, and none it let go.
    let reader = Store::open_reader(Path::new(&address), "host-b", b"A", b"L").unwrap();
    let others = |ino: u64| reader.host_locks(ino).unwrap().0;
    assert_eq!(others(7), vec![b"seven".to_vec()]);
    assert_eq!(others(8), Vec::<Vec<u8>>::new());
    assert_eq!(others(9), vec![b"less".to_vec()]);
    // From now on each change reaches etcd before it returns.
    holder.set_host_locks(7, None).unwrap();
    assert_eq!(others(7), Vec::<Vec<u8>>::new());
    let (_, token) = holder.host_locks(10).unwrap();
    assert!(matches!(holder.claim_host_locks(10, token, Some(b"ten".to_vec())).unwrap(), LockClaim::Won(_)));
    assert_eq!(others(10), vec![b"ten".to_vec()]);
    // The reader's own lock is the holder's to see, and to be refused by.
    let (_, token) = reader.host_locks(11).unwrap();
    assert!(matches!(reader.claim_host_locks(11, token, Some(b"b's".to_vec())).unwrap(), LockClaim::Won(_)));
    assert_eq!(holder.host_locks(11).unwrap().0, vec![b"b's".to_vec()]);
    assert!(matches!(holder.claim_host_locks(11, 0, Some(b"a's".to_vec())).unwrap(), LockClaim::Lost(..)));

    // The reader gone, the holder is alone again.
    drop(reader);
    assert!(
        wait_for(Duration::from_secs(5), || costs(&|| claim(12, b"twelve")) == 0),
        "the holder still publishes its locks after the last reader left"
    );
    // A second reader finds the locks taken meanwhile.
    let reader = Store::open_reader(Path::new(&address), "host-c", b"A", b"L").unwrap();
    assert_eq!(reader.host_locks(12).unwrap().0, vec![b"twelve".to_vec()]);
    assert_eq!(reader.host_locks(10).unwrap().0, vec![b"ten".to_vec()]);
}

/// The holder's locks on many files reach etcd in transactions small
/// enough for an etcd left at its own limits (128 operations), where
/// `-o sync` mounts run.
#[test]
fn a_holder_publishes_locks_on_many_files_within_etcds_own_limits() {
    use vaultfs::store::{LockClaim, Store};
    let StoreVault { etcd: _etcd, objects: _objects, address, holder } =
        StoreVault::on(Etcd::start_with_default_limits());
    let alone = || {
        let before = holder.etcd_requests();
        holder.set_host_locks(1, None).unwrap();
        holder.etcd_requests() == before
    };
    assert!(wait_for(Duration::from_secs(5), alone), "the holder never found itself alone");
    for ino in 100..300u64 {
        let won = holder.claim_host_locks(ino, 0, Some(ino.to_be_bytes().to_vec())).unwrap();
        assert!(matches!(won, LockClaim::Won(_)));
    }
    let reader = Store::open_reader(Path::new(&address), "host-b", b"A", b"L").unwrap();
    for ino in [100, 159, 160, 161, 299] {
        assert_eq!(reader.host_locks(ino).unwrap().0, vec![ino.to_be_bytes().to_vec()], "inode {ino}");
    }
}

/// A scan's page of 512 keys can be far beyond gRPC's default 4 MiB
/// response (audit records of a busy vault are up to 36 KiB each; fsck and
/// `audit verify` failed on one after fsx): it is read whole.
#[test]
fn a_scan_reads_pages_larger_than_grpcs_default_message() {
    use vaultfs::store::{Batch, Store};
    let StoreVault { etcd: _etcd, objects: _objects, address, holder } = StoreVault::on(Etcd::start());
    let value = |i: u32| vec![i as u8; 36 << 10];
    for chunk in (0..400u32).collect::<Vec<_>>().chunks(50) {
        let mut batch = Batch::default();
        for &i in chunk {
            batch.put(format!("Zbig{i:04}").into_bytes(), value(i));
        }
        holder.apply(batch).unwrap();
    }
    // A reader's memory holds none of it: every page comes from etcd.
    let reader = Store::open_reader(Path::new(&address), "host-b", b"A", b"L").unwrap();
    let scanned: Vec<(Vec<u8>, Vec<u8>)> = reader
        .scan_prefix(b"Zbig")
        .map(|r| r.map(|(k, v)| (k, v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(scanned.len(), 400);
    assert!(
        scanned
            .iter()
            .enumerate()
            .all(|(i, (k, v))| *k == format!("Zbig{i:04}").into_bytes() && *v == value(i as u32))
    );
}

/// A holder that never says it saw a reader (here a holder key an older
/// vaultfs could have left, kept alive): the reader's mount is refused
/// after 10 s, naming it, rather than serving locks and opens the holder
/// does not publish for. With the key gone, the reader mounts at once.
#[test]
fn a_reader_is_refused_by_a_holder_that_never_answers_it() {
    use vaultfs::store::Store;
    let StoreVault { etcd, objects: _objects, address, holder } = StoreVault::on(Etcd::start());
    drop(holder);
    etcd.put_key("vaultfs/agents/holder", "old-host 4242");
    let started = std::time::Instant::now();
    let refused =
        Store::open_reader(Path::new(&address), "host-b", b"A", b"L").err().expect("a reader mounted");
    let waited = started.elapsed();
    assert!(
        refused.to_string().contains("old-host 4242") && refused.to_string().contains("did not confirm"),
        "{refused}"
    );
    assert!(waited >= Duration::from_secs(10), "refused after {waited:?}");
    // Its key went with the refusal: the name is free again.
    etcd.delete_key("vaultfs/agents/holder");
    Store::open_reader(Path::new(&address), "host-b", b"A", b"L").expect("a reader with no holder");
}

/// A read on a reader whose memory still points into an object the
/// holder's collector has removed (its watch held back, as behind an etcd
/// slow to deliver): the read catches up and reads the blocks where they
/// are now, whole, never EIO.
#[test]
fn a_readers_read_behind_the_collector_looks_the_blocks_up_again() {
    let mut v = ClusterVault::new();
    v.mount();
    let hold = v.dir.path().join("hold-watch");
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    let mut env = v.env.clone();
    env.push(("VAULTFS_TEST_HOLD_WATCH", hold.to_str().unwrap().to_string()));
    // The retry is logged at debug level.
    env.push(("VAULTFS_LOG", "vaultfs=debug".to_string()));
    v.mount_reader_with("host-b", &mnt_b, &env);
    let (on_a, on_b) = (v.path("1-working/f"), mnt_b.join("1-working/f"));
    // One block: read whole by one request, never kept by readahead.
    std::fs::write(&on_a, pattern(1000, 1)).unwrap();
    assert!(wait_for(Duration::from_secs(3), || std::fs::read(&on_b).is_ok_and(|b| b == pattern(1000, 1))));
    // Open on the reader, read once (its memory keeps the block's place),
    // then, told to, drop the kernel's pages and read again.
    let script = "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.pread(fd, 1000, 0); \
                  print('held', flush=True); sys.stdin.readline(); \
                  os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); sys.stdout.buffer.write(os.pread(fd, 1000, 0))";
    let mut reading = holding("python3", &[OsStr::new("-c"), OsStr::new(script), on_b.as_os_str()]);
    std::fs::write(&hold, b"").unwrap();
    let before = v.objects.list(BUCKET);
    std::fs::write(&on_a, pattern(1000, 2)).unwrap();
    let collected = || {
        v.objects.list(BUCKET).len() < before.len()
            || before.iter().any(|o| !v.objects.list(BUCKET).contains(o))
    };
    assert!(
        wait_for(Duration::from_secs(15), collected),
        "the holder never collected the old block's object"
    );
    std::io::Write::write_all(reading.stdin.as_mut().unwrap(), b"\n").unwrap();
    let out = reading.wait_with_output().unwrap();
    std::fs::remove_file(&hold).unwrap();
    assert!(
        out.status.success(),
        "the reader's read failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.host_log("host-b")
    );
    assert!(out.stdout == pattern(1000, 2), "the reader did not read the block where it is now");
    assert!(
        v.host_log("host-b").contains("looking up again"),
        "the read never met the collected object:\n{}",
        v.host_log("host-b")
    );
}

/// A close on the holder beside a reader waits for a commit already on
/// its way (the interval's, storing a large object first): the close's
/// changes may be in it, and the reader's next open must see them. (CI
/// once saw a file closed on the holder missing on the reader's open.)
#[test]
fn a_close_beside_a_reader_waits_for_the_commit_on_its_way() {
    use vaultfs::store::{Batch, Durability, Store};
    let StoreVault { etcd: _etcd, objects: _objects, address, holder } = StoreVault::on(Etcd::start());
    // Only the calls below commit.
    holder.set_durability(Durability::Grouped(Duration::from_secs(600))).unwrap();
    let reader = Store::open_reader(Path::new(&address), "host-b", b"A", b"L").unwrap();
    for round in 0..5u8 {
        for _ in 0..7 {
            holder.append_record(&vec![round; 1 << 20]).unwrap();
        }
        let key = format!("Iclosed{round}").into_bytes();
        let mut closed = Batch::default();
        closed.put(key.clone(), vec![round]);
        holder.apply(closed).unwrap();
        std::thread::scope(|s| {
            // The interval's commit: it takes the changes, then stores 7 MiB.
            let interval = s.spawn(|| holder.flush());
            std::thread::sleep(Duration::from_millis(10));
            holder.publish().unwrap();
            reader.catch_up().unwrap();
            let seen = reader.get(&key).unwrap().map(|v| v.to_vec());
            assert_eq!(seen, Some(vec![round]), "round {round}: the close's change is not on the reader");
            interval.join().unwrap().unwrap();
        });
    }
}

/// Mounts that share writing take turns with the vault's hold: two hosts
/// each adding to one counter in etcd (read, then written, under the hold)
/// and storing records meanwhile lose no addition, whether their changes
/// were committed at once or gathered for the commit interval; a reader
/// beside them sees the sum; a change of the vault's keys outside a hold is
/// refused; and a mount that holds the vault alone keeps them waiting.
#[test]
fn mounts_that_share_writing_take_turns_and_lose_no_update() {
    use vaultfs::store::{Batch, Durability, Store};
    let StoreVault { etcd, objects: _objects, address, holder } = StoreVault::on(Etcd::start());
    drop(holder);
    let at = Path::new(&address);
    let hosts = ["host-a", "host-b"].map(|h| Store::open_writer(at, h, b"A", b"L").unwrap());
    hosts[1].set_durability(Durability::Grouped(Duration::from_millis(200))).unwrap();
    let key = b"Icounter".to_vec();
    let read = |s: &Store| s.get(&key).unwrap().map_or(0, |v| u64::from_be_bytes(v[..].try_into().unwrap()));
    const ROUNDS: u64 = 150;
    std::thread::scope(|scope| {
        for store in &hosts {
            let key = &key;
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    // Read before the hold too: memory keeps the value,
                    // which the hold must bring up to date.
                    read(store);
                    let _hold = store.hold_for_write().unwrap();
                    let n = read(store);
                    if round % 10 == 0 {
                        store.append_record(&[round as u8; 4096]).unwrap();
                    }
                    let mut b = Batch::default();
                    b.put(key.clone(), (n + 1).to_be_bytes().to_vec());
                    store.apply(b).unwrap();
                }
            });
        }
    });
    // Turns while the watches lag: each host's memory holds the counter
    // as it was before the other's last turn, which the hold must not use.
    let dir = tempfile::tempdir().unwrap();
    let lag = dir.path().join("hold-watch");
    vaultfs::store::HOLD_WATCH_WHILE.set(lag.clone()).unwrap();
    std::fs::write(&lag, b"").unwrap();
    for _ in 0..3 {
        for store in &hosts {
            read(store);
            let _hold = store.hold_for_write().unwrap();
            let n = read(store);
            let mut b = Batch::default();
            b.put(key.clone(), (n + 1).to_be_bytes().to_vec());
            store.apply(b).unwrap();
        }
    }
    std::fs::remove_file(&lag).unwrap();
    for store in &hosts {
        store.flush().unwrap();
    }
    let reader = Store::open_reader(at, "host-c", b"A", b"L").unwrap();
    reader.catch_up().unwrap();
    assert_eq!(read(&reader), 2 * ROUNDS + 6, "additions were lost between the hosts");
    for store in &hosts {
        let _hold = store.hold_for_write().unwrap();
        assert_eq!(read(store), 2 * ROUNDS + 6);
    }
    // First come, first served: while a mount that asked earlier (host-z,
    // as any etcd writer can put its key) waits, host-a does not take the
    // hold, free as it is once host-b let go when asked; it does as soon
    // as host-z's request goes.
    etcd.put_key("vaultfs/agents/wants/host-z", "");
    std::thread::scope(|scope| {
        let taking = scope.spawn(|| hosts[0].hold_for_write().map(drop));
        std::thread::sleep(Duration::from_secs(2));
        assert!(!taking.is_finished(), "host-a took the hold before host-z, which asked first");
        etcd.delete_key("vaultfs/agents/wants/host-z");
        taking.join().unwrap().unwrap();
    });
    // Outside a hold, the vault's keys are not this mount's to change (its
    // audit log's are).
    let mut b = Batch::default();
    b.put(key.clone(), 0u64.to_be_bytes().to_vec());
    assert!(hosts[0].apply(b).is_err(), "a change of the vault's keys without the hold");
    let mut own = Batch::default();
    own.put(b"Aleaf".to_vec(), b"mine".to_vec());
    hosts[0].apply(own).unwrap();
    // No one holds the vault alone while a mount shares writing it.
    let refused = Store::open(at, false).err().expect("a holder alone beside writers").to_string();
    assert!(refused.contains("-o shared on host-"), "{refused}");
    // A holder that does not share keeps the hold: a mount that shares
    // writing waits for it, then is refused with who has it.
    drop(hosts);
    let alone = Store::open(at, false).unwrap();
    let started = std::time::Instant::now();
    let refused = Store::open_writer(at, "host-a", b"A", b"L").err().expect("a writer beside a holder alone");
    let refused = refused.to_string();
    assert!(refused.contains("held alone by"), "{refused}");
    assert!(started.elapsed() >= Duration::from_secs(5), "refused at once: {refused}");
    drop(alone);
    let writer = Store::open_writer(at, "host-a", b"A", b"L").unwrap();
    drop(writer.hold_for_write().unwrap());
}

/// Two hosts writing one vault at once (`-o shared`): each writes its own
/// files and its half of a shared one, at the same time; each then sees
/// every file the other closed, whole; a rename and an unlink on one host
/// are what the other's next lookup finds; after both unmount, fsck is
/// clean and every host's audit log verifies, each access under its host.
#[test]
fn two_hosts_writing_at_once_see_each_others_files_and_lose_nothing() {
    let v = ClusterVault::new();
    let ((mnt_a, _unmount_a), (mnt_b, _unmount_b)) = v.two_sharing_hosts();
    const FILES: usize = 40;
    const HALF: usize = 8 * 4096;
    std::fs::write(mnt_a.join("1-working/shared.bin"), b"").unwrap();
    std::thread::scope(|s| {
        for (i, mnt) in [&mnt_a, &mnt_b].into_iter().enumerate() {
            s.spawn(move || {
                let dir = mnt.join(format!("1-working/from-{i}"));
                std::fs::create_dir(&dir).unwrap();
                for n in 0..FILES {
                    std::fs::write(dir.join(format!("f{n}")), pattern(3000 + n * 100, (i * 64 + n) as u8))
                        .unwrap();
                }
                use std::os::unix::fs::FileExt;
                let f =
                    std::fs::OpenOptions::new().write(true).open(mnt.join("1-working/shared.bin")).unwrap();
                for block in 0..8 {
                    f.write_all_at(&[b'a' + i as u8; 4096], (i * HALF + block * 4096) as u64).unwrap();
                }
                f.sync_all().unwrap();
            });
        }
    });
    for mnt in [&mnt_a, &mnt_b] {
        for i in 0..2 {
            for n in 0..FILES {
                let path = mnt.join(format!("1-working/from-{i}/f{n}"));
                let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(got == pattern(3000 + n * 100, (i * 64 + n) as u8), "{} differs", path.display());
            }
        }
        let shared = std::fs::read(mnt.join("1-working/shared.bin")).unwrap();
        let want = [vec![b'a'; HALF], vec![b'b'; HALF]].concat();
        assert!(shared == want, "{}: the two hosts' halves of one file were not both kept", mnt.display());
    }
    // A rename on one host, an unlink on the other: each is what the
    // other host's next lookup finds.
    std::fs::rename(mnt_a.join("1-working/from-1/f0"), mnt_a.join("1-working/renamed")).unwrap();
    assert!(!mnt_b.join("1-working/from-1/f0").exists(), "host-b still finds the old name");
    assert_eq!(std::fs::read(mnt_b.join("1-working/renamed")).unwrap(), pattern(3000, 64));
    std::fs::remove_file(mnt_b.join("1-working/from-0/f1")).unwrap();
    assert!(!mnt_a.join("1-working/from-0/f1").exists(), "host-a still finds an unlinked file");
    let names = |mnt: &Path| {
        let mut n: Vec<String> = std::fs::read_dir(mnt.join("1-working/from-0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&mnt_a), names(&mnt_b));
    assert_eq!(names(&mnt_a).len(), FILES - 1);
    for (host, mnt) in [("host-a", &mnt_a), ("host-b", &mnt_b)] {
        let out = v.run_on(host, &["umount", mnt.to_str().unwrap()]);
        assert!(out.status.success(), "umount on {host}: {}", String::from_utf8_lossy(&out.stderr));
    }
    v.fsck_clean();
    let verified = v.audit_verifies();
    for host in ["host-a", "host-b"] {
        assert!(verified.contains(host), "{host}'s log is not in the verification:\n{verified}");
    }
}

/// A host that shares writing is killed (`kill -9`) while both write: the
/// other's writes wait for the dead one's lease to lapse, then go on, none
/// failing; every file the survivor wrote is whole, fsck is clean and the
/// audit logs verify.
#[test]
fn a_host_killed_while_writing_lets_the_other_write_on() {
    let v = ClusterVault::new();
    let ((mnt_a, unmount_a), (mnt_b, _unmount_b)) = v.two_sharing_hosts();
    let pid_a: i32 = std::fs::read_to_string(v.dir.path().join("host-a/agents/mount.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // host-a writes until its daemon is gone.
        s.spawn(|| {
            let mut n = 0;
            while std::fs::write(mnt_a.join(format!("1-working/a{n}")), pattern(20_000, n as u8)).is_ok() {
                n += 1;
            }
        });
        let writer_b = s.spawn(|| {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let path = mnt_b.join(format!("1-working/b{n}"));
                write_synced(&path, &pattern(20_000, n as u8))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_secs(2));
        let _ = Command::new("kill").args(["-KILL", &pid_a.to_string()]).status();
        let _ = Command::new("umount").arg("-l").arg(&mnt_a).status();
        // Past the dead host's lease: host-b's writes go on.
        std::thread::sleep(Duration::from_secs(8));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let written = writer_b.join().unwrap();
        assert!(written > 10, "host-b wrote only {written} files");
        for n in 0..written {
            let got = std::fs::read(mnt_b.join(format!("1-working/b{n}"))).unwrap();
            assert!(got == pattern(20_000, n as u8), "b{n} differs");
        }
    });
    drop(unmount_a);
    let out = v.run_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    assert!(out.status.success(), "umount on host-b: {}", String::from_utf8_lossy(&out.stderr));
    v.fsck_clean();
    v.audit_verifies();
}

/// One holder at a time: while mounted, another host's opener is refused
/// with who holds the vault; after the unmount it opens at once.
#[test]
fn a_mounted_cluster_vault_is_refused_to_a_second_opener() {
    let mut v = ClusterVault::new();
    v.mount();
    let out = v.run_on("host-b", &["fsck", &v.address, "--passphrase-file", v.pass()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fsck ran beside the mount");
    assert!(err.contains("is open on"), "{err}");
    v.unmount();
    v.fsck_clean();
    // Init of the same name is refused and changes nothing.
    let data = format!("s3+http://{}/{BUCKET}", v.objects.endpoint());
    let out =
        v.run(&["init", &v.address, "--data", &data, "--passphrase-file", v.pass(), "--kdf-memory", "8"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a vault"));
    v.fsck_clean();
}

/// The object store goes away: making a write durable fails with EIO (no
/// panic, the mount stays up), what was written before is intact, and once
/// the object store is back the pending changes are committed and writes
/// go on; fsck is clean afterwards.
#[test]
fn an_object_store_outage_fails_writes_cleanly_then_they_resume() {
    let mut v = ClusterVault::new();
    v.mount();
    write_synced(&v.path("1-working/before"), &pattern(200_000, 1)).unwrap();
    v.objects.stop();
    let failed = write_synced(&v.path("1-working/during"), &pattern(200_000, 2));
    let err = failed.expect_err("an fsync succeeded with the object store down");
    assert_eq!(err.raw_os_error(), Some(EIO), "{err}");
    assert!(is_mounted(&v.mnt), "the mount died with the object store");
    // What is pending stays readable here meanwhile.
    assert_eq!(std::fs::read(v.path("1-working/during")).unwrap(), pattern(200_000, 2));
    v.objects.restart();
    assert!(
        wait_for(Duration::from_secs(30), || write_synced(&v.path("1-working/after"), &pattern(200_000, 3))
            .is_ok()),
        "writes did not resume: {}",
        v.log()
    );
    v.unmount();
    v.mount();
    assert_eq!(std::fs::read(v.path("1-working/before")).unwrap(), pattern(200_000, 1));
    assert_eq!(std::fs::read(v.path("1-working/after")).unwrap(), pattern(200_000, 3));
    // The change whose fsync failed was kept and committed once the object
    // store was back: whole, never half.
    assert_eq!(std::fs::read(v.path("1-working/during")).unwrap(), pattern(200_000, 2));
    v.unmount();
    v.fsck_clean();
}

/// etcd goes away for longer than the holder's lease: the mount fails
/// closed (writes refused, even once etcd is back, since another host may
/// have taken the vault meanwhile) and a new mount carries on.
#[test]
fn losing_etcd_past_the_lease_fails_closed() {
    let mut v = ClusterVault::new();
    v.mount();
    write_synced(&v.path("1-working/kept"), b"kept\n").unwrap();
    v.etcd.stop();
    assert!(write_synced(&v.path("1-working/lost"), b"x\n").is_err(), "an fsync succeeded without etcd");
    std::thread::sleep(Duration::from_secs(7));
    v.etcd.restart();
    let refused = std::fs::write(v.path("1-working/after"), b"y\n");
    assert!(refused.is_err(), "a write went on after the lease lapsed");
    v.unmount();
    v.mount();
    assert_eq!(std::fs::read_to_string(v.path("1-working/kept")).unwrap(), "kept\n");
    // Never committed: the hold was lost before etcd came back.
    assert!(!v.path("1-working/lost").exists(), "a change made without etcd appeared");
    std::fs::write(v.path("1-working/after"), b"y\n").unwrap();
    v.unmount();
    v.fsck_clean();
}

/// An etcd writer deletes the holder key under a mount. The lease is still
/// renewed, but the mount notices at its next renewal, without writing:
/// it refuses writes and reads alike (no record of them could be stored),
/// and another process can take the vault.
#[test]
fn a_deleted_holder_key_ends_the_hold() {
    let mut v = ClusterVault::new();
    v.mount();
    write_synced(&v.path("1-working/kept"), b"kept\n").unwrap();
    v.etcd.delete_key("vaultfs/agents/holder");
    assert!(
        wait_for(Duration::from_secs(5), || v.log().contains("holder key was deleted or replaced")),
        "the mount did not notice: {}",
        v.log()
    );
    let refused = std::fs::write(v.path("1-working/after"), b"y\n");
    assert_eq!(refused.expect_err("a write went on without the hold").raw_os_error(), Some(EIO));
    assert!(v.log().contains("unmount and mount again"), "{}", v.log());
    // Reads fail too: no record of them could ever be stored.
    let read = std::fs::read(v.path("1-working/kept"));
    assert_eq!(read.expect_err("a read went on without a log to record it").raw_os_error(), Some(EIO));
    // Another host may take the vault at once: fsck there opens it beside the mount.
    let out = v.run_on("host-b", &["fsck", &v.address, "--passphrase-file", v.pass()]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && report.contains("status: clean"), "{report}");
    // Its unmount cannot record itself in the log: it may say so, but it unmounts.
    let _ = v.run(&["umount", v.mnt.to_str().unwrap()]);
    assert!(wait_for(Duration::from_secs(10), || !is_mounted(&v.mnt)), "the old mount stayed");
    v.mounted = false;
    v.mount();
    assert_eq!(std::fs::read_to_string(v.path("1-working/kept")).unwrap(), "kept\n");
    std::fs::write(v.path("1-working/after"), b"y\n").unwrap();
    v.unmount();
    v.fsck_clean();
}

/// Grouped commits (the default): changes gather in memory and reach etcd
/// and the bucket together, at the commit interval or at an fsync, their
/// records in one object. A daemon killed before a commit loses only what
/// was not committed, whole changes only, and the audit log lists exactly
/// the changes the vault holds.
#[test]
fn a_cluster_vault_commits_changes_in_groups() {
    let mut v = ClusterVault::new();
    v.mount_with(&["-o", "commit=60000"]);
    let records = || v.objects.list(BUCKET).into_iter().filter(|k| k.contains("/seg/")).collect::<Vec<_>>();
    for i in 0..50u8 {
        std::fs::write(v.path(&format!("1-working/f{i}")), pattern(3000, i)).unwrap();
    }
    assert_eq!(records(), Vec::<String>::new(), "records stored before a commit");
    std::fs::File::open(v.path("1-working/f0")).unwrap().sync_all().unwrap();
    let stored = records();
    assert_eq!(stored.len(), 1, "one fsync, one object for all 50 files: {stored:?}");
    assert!(v.objects.get(BUCKET, &stored[0]).len() >= 50 * 4096, "the object lacks records");

    std::fs::write(v.path("1-working/unsynced"), pattern(3000, 99)).unwrap();
    v.kill_daemon();
    v.mount();
    for i in 0..50u8 {
        assert_eq!(std::fs::read(v.path(&format!("1-working/f{i}"))).unwrap(), pattern(3000, i), "f{i}");
    }
    let unsynced = v.path("1-working/unsynced");
    let present = unsynced.exists();
    if present {
        assert_eq!(std::fs::read(&unsynced).unwrap(), pattern(3000, 99), "a torn uncommitted file");
    }
    let audit = std::fs::read_to_string(v.path(".audit")).unwrap();
    assert_eq!(audit.contains("\"path\":\"/1-working/unsynced\""), present, "the log and the data disagree");
    assert!(audit.contains("\"path\":\"/1-working/f49\""));
    v.unmount();
    v.fsck_clean();
    v.audit_verifies();
}

/// An etcd left at its own limits on transactions (128 operations,
/// 1.5 MiB) would refuse grouped commits, which the user would learn only
/// at fsync: the mount refuses at once and names the settings; under
/// `-o sync` (a transaction per change) the vault mounts and works.
#[test]
fn a_mount_refuses_an_etcd_that_would_refuse_its_commits() {
    let mut v = ClusterVault::on(Etcd::start_with_default_limits());
    let out = v.try_mount();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted on an etcd that refuses large transactions");
    assert!(err.contains("--max-txn-ops 100000") && err.contains("-o sync"), "{err}");
    assert!(!is_mounted(&v.mnt));
    v.mount_with(&["-o", "sync"]);
    std::fs::write(v.path("1-working/f"), pattern(100_000, 7)).unwrap();
    v.unmount();
    v.mount_with(&["-o", "sync"]);
    assert_eq!(std::fs::read(v.path("1-working/f")).unwrap(), pattern(100_000, 7));
    v.unmount();
    v.fsck_clean();
}

/// `vaultfs umount` run without the state directory the mount was given
/// (VAULTFS_STATE_DIR, where a cluster vault's pid file is) still finds
/// the daemon and waits for its last commit: fsck right after it finds the
/// vault free and clean, and the file is there at the next mount.
#[test]
fn umount_without_the_mounts_state_directory_waits_for_its_daemon() {
    let mut v = ClusterVault::new();
    v.mount();
    std::fs::write(v.path("1-working/f"), pattern(100_000, 3)).unwrap();
    let out = Command::new(bin())
        .args(["umount", v.mnt.to_str().unwrap()])
        .env_remove("VAULTFS_STATE_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
    v.mounted = false;
    v.fsck_clean();
    v.mount();
    assert_eq!(std::fs::read(v.path("1-working/f")).unwrap(), pattern(100_000, 3));
    v.unmount();
}

/// A daemon killed mid-write: its claim lapses with its lease, the next
/// mount opens, fsck is clean and the audit log verifies.
#[test]
fn a_killed_daemon_leaves_a_consistent_cluster_vault() {
    let mut v = ClusterVault::new();
    v.mount();
    write_synced(&v.path("1-working/first"), &pattern(1 << 20, 4)).unwrap();
    let writer = {
        let path = v.path("1-working/busy");
        std::thread::spawn(move || {
            for i in 0..200u32 {
                if std::fs::write(&path, pattern(256 << 10, i as u8)).is_err() {
                    break;
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    v.kill_daemon();
    let _ = writer.join();
    // The lease lapses within 5 s; the open waits for it.
    v.fsck_clean();
    v.audit_verifies();
    v.mount();
    assert_eq!(std::fs::read(v.path("1-working/first")).unwrap(), pattern(1 << 20, 4));
    let busy = std::fs::read(v.path("1-working/busy")).unwrap();
    assert!(busy.is_empty() || (0..200u32).any(|i| busy == pattern(256 << 10, i as u8)), "a torn file");
    v.unmount();
}

/// Three etcd members: with one killed the other two are a quorum, and the
/// mount goes on (reads, writes, renames) through them; back, it catches up.
#[test]
fn a_mount_outlives_one_etcd_member_of_three() {
    let mut v = ClusterVault::on(Etcd::cluster(3));
    v.mount();
    std::fs::write(v.path("1-working/before"), pattern(300_000, 1)).unwrap();
    // A read-only mount beside it: its watch of the vault goes through one
    // member, and when that one dies it watches again through another.
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    v.mount_reader("host-b", &mnt_b);
    let on_b = |rel: &str| mnt_b.join(rel);
    // Closed before B mounted: within A's commit interval.
    let before = || std::fs::read(on_b("1-working/before")).is_ok_and(|b| b == pattern(300_000, 1));
    assert!(wait_for(Duration::from_secs(3), before), "A's file never reached the reader");
    for victim in [0, 2] {
        v.etcd.kill(victim);
        for i in 0..20 {
            let name = format!("1-working/m{victim}-{i}");
            std::fs::write(v.path(&name), pattern(10_000, i))
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", v.log()));
            // Close-to-open on the reader, whichever member its watch lost.
            let seen = std::fs::read(on_b(&name)).unwrap_or_else(|e| {
                panic!("{name} on the reader: {e}\nholder:\n{}\nreader:\n{}", v.log(), v.host_log("host-b"))
            });
            assert!(
                seen == pattern(10_000, i),
                "{name} on the reader is not what was closed: {} bytes read, first differing at {:?}\nholder:\n{}\nreader:\n{}",
                seen.len(),
                seen.iter().zip(pattern(10_000, i)).position(|(a, b)| *a != b),
                v.log(),
                v.host_log("host-b")
            );
        }
        std::fs::rename(v.path(&format!("1-working/m{victim}-0")), v.path(&format!("1-working/r{victim}")))
            .unwrap();
        assert_eq!(std::fs::read(v.path("1-working/before")).unwrap(), pattern(300_000, 1));
        let renamed = || {
            on_b(&format!("1-working/r{victim}")).exists()
                && !on_b(&format!("1-working/m{victim}-0")).exists()
        };
        assert!(wait_for(Duration::from_secs(5), renamed), "the rename never reached the reader");
        v.etcd.restart_member(victim);
    }
    v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    v.unmount();
    v.mount();
    assert_eq!(std::fs::read(v.path("1-working/m2-19")).unwrap(), pattern(10_000, 19));
    assert_eq!(std::fs::read(v.path("1-working/r0")).unwrap(), pattern(10_000, 0));
    v.unmount();
    v.fsck_clean();
}

/// EIO: what a store that cannot be reached turns into.
const EIO: i32 = 5;

/// etcd with TLS, client certificates and authentication on: the vault
/// works with the CA, a certificate and a user given in the environment (or
/// the certificate alone, whose name etcd takes as the user); each piece
/// missing or wrong is a clear refusal, never a hang or a panic.
#[test]
fn a_cluster_vault_on_an_etcd_with_tls_and_users() {
    let etcd = Etcd::start_secure(&[("agent", "agent-pw-not-secret")]);
    let secrets = tempfile::tempdir().unwrap();
    let (good, bad) = (secrets.path().join("good"), secrets.path().join("bad"));
    std::fs::write(&good, "agent-pw-not-secret\n").unwrap();
    std::fs::write(&bad, "guessed\n").unwrap();
    let tls = etcd.tls();
    let path = |p: PathBuf| p.display().to_string();
    let env = vec![
        ("VAULTFS_ETCD_CA", path(tls.ca())),
        ("VAULTFS_ETCD_CERT", path(tls.cert("agent"))),
        ("VAULTFS_ETCD_KEY", path(tls.key("agent"))),
        ("VAULTFS_ETCD_USER", "agent".to_string()),
        ("VAULTFS_ETCD_PASSWORD_FILE", path(good.clone())),
    ];
    let mut v = ClusterVault::on_with(etcd, env.clone());
    v.mount();
    std::fs::write(v.path("1-working/plan.md"), b"over TLS\n").unwrap();
    v.unmount();

    // The certificate alone: etcd takes its common name as the user.
    v.env.retain(|(k, _)| !k.starts_with("VAULTFS_ETCD_USER") && !k.starts_with("VAULTFS_ETCD_PASSWORD"));
    v.mount();
    assert_eq!(std::fs::read(v.path("1-working/plan.md")).unwrap(), b"over TLS\n");
    v.unmount();
    v.fsck_clean();

    let without =
        |names: &[&str]| -> Env { env.iter().filter(|(k, _)| !names.contains(k)).cloned().collect() };
    let mut wrong_password = env.clone();
    wrong_password[4].1 = path(bad);
    let mut relative = env.clone();
    relative[0].1 = "ca.pem".to_string();
    let cases: Vec<(&str, Env, &str)> = vec![
        ("a wrong password", wrong_password, "authentication failed"),
        (
            "no TLS",
            without(&["VAULTFS_ETCD_CA", "VAULTFS_ETCD_CERT", "VAULTFS_ETCD_KEY"]),
            "set VAULTFS_ETCD_CA",
        ),
        (
            "no client certificate",
            without(&["VAULTFS_ETCD_CERT", "VAULTFS_ETCD_KEY"]),
            "set VAULTFS_ETCD_CERT",
        ),
        ("a certificate without its key", without(&["VAULTFS_ETCD_KEY"]), "go together"),
        ("a relative CA path", relative, "not an absolute path"),
    ];
    for (what, env, expect) in cases {
        let start = std::time::Instant::now();
        let out = v.run_with("state", &env, &["info", &v.address]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        eprintln!("{what} ({:?}): {}", start.elapsed(), err.trim());
        assert!(err.contains(expect), "{what}: the error does not say {expect:?}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(start.elapsed() < Duration::from_secs(40), "{what}: took {:?}", start.elapsed());
    }
}

/// Unmounts a mount point when dropped, whatever happened.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A host that only reads can be confined by etcd's own access control:
/// a user that may read the vault's keys and write only its own log, its
/// reader key and the lockdown marker mounts read-only, reads, records and
/// locks the vault down; the same user cannot take the vault to write it.
#[test]
fn a_reader_confined_by_etcd_roles_reads_records_and_locks_down() {
    let reader = ("viewer", "viewer-pw-not-secret", "agents", "host-b");
    let etcd = Etcd::start_secure_with_readers(&[("agent", "agent-pw-not-secret")], &[reader]);
    let secrets = tempfile::tempdir().unwrap();
    let (agent_pw, viewer_pw) = (secrets.path().join("agent"), secrets.path().join("viewer"));
    std::fs::write(&agent_pw, "agent-pw-not-secret\n").unwrap();
    std::fs::write(&viewer_pw, "viewer-pw-not-secret\n").unwrap();
    let tls = etcd.tls();
    let path = |p: PathBuf| p.display().to_string();
    let env = |user: &str, password: &Path| -> Env {
        vec![
            ("VAULTFS_ETCD_CA", path(tls.ca())),
            // The TLS handshake's certificate; the user and password decide who it is.
            ("VAULTFS_ETCD_CERT", path(tls.cert("agent"))),
            ("VAULTFS_ETCD_KEY", path(tls.key("agent"))),
            ("VAULTFS_ETCD_USER", user.to_string()),
            ("VAULTFS_ETCD_PASSWORD_FILE", path(password.to_path_buf())),
        ]
    };
    let (agent, viewer) = (env("agent", &agent_pw), env("viewer", &viewer_pw));
    let mut v = ClusterVault::on_with(etcd, agent);
    v.mount();
    std::fs::write(v.path("2-private/plan"), b"read by a confined host\n").unwrap();
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    v.mount_reader_with("host-b", &mnt_b, &viewer);
    let (a, b) = (v.mnt.to_str().unwrap().to_string(), mnt_b.to_str().unwrap().to_string());
    let read =
        || std::fs::read(mnt_b.join("2-private/plan")).is_ok_and(|c| c == b"read by a confined host\n");
    assert!(wait_for(Duration::from_secs(3), read), "the confined reader cannot read");
    assert!(std::fs::read_to_string(mnt_b.join(".audit")).unwrap().contains("2-private/plan"));
    // Its role lets it watch the vault (what it keeps in memory rests on
    // that) and give its own key a new revision (a catch-up's touch).
    std::fs::write(v.path("2-private/plan"), b"changed on the holder\n").unwrap();
    assert_eq!(std::fs::read(mnt_b.join("2-private/plan")).unwrap(), b"changed on the holder\n");
    let log_b = std::fs::read_to_string(v.dir.path().join("host-b.log")).unwrap();
    assert!(!log_b.contains("watch"), "the confined reader could not watch the vault: {log_b}");

    let on_b = |args: &[&str]| v.run_with("host-b", &viewer, args);
    let ok = |out: Output| assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Its role lets it publish an open waiting for approval, which the
    // holder decides (the decision bound to the holder's lease).
    std::fs::write(v.path("3-sealed/terms"), b"approved across hosts\n").unwrap();
    let waiting = std::thread::spawn({
        let p = mnt_b.join("3-sealed/terms");
        move || std::fs::read(p)
    });
    let listed = || v.ok_on("state", &["pending", &a]).contains("host-b:");
    assert!(wait_for(Duration::from_secs(5), listed), "the confined reader's open was not published");
    v.ok_on("state", &["approve", &a]);
    assert_eq!(waiting.join().unwrap().unwrap(), b"approved across hosts\n");
    ok(on_b(&["lockdown", &b]));
    let locked = || v.ok_on("state", &["status", "--json", &a]).contains("\"lockdown\": true");
    assert!(wait_for(Duration::from_secs(2), locked), "the holder did not follow the reader's lockdown");
    ok(on_b(&["lockdown", &b, "--exit", "--passphrase-file", v.pass()]));
    v.ok_on("state", &["lockdown", &a, "--exit", "--passphrase-file", v.pass()]);
    ok(on_b(&["umount", &b]));
    v.unmount();

    // The vault is free, but this user may not take it.
    let out = v.run_with("host-b", &viewer, &["fsck", &v.address, "--passphrase-file", v.pass()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("permission denied"),
        "a confined reader held the vault: {err}"
    );
    let report = v.fsck_clean();
    assert!(report.contains("host host-b: "), "{report}");
}

/// A host cut off from etcd and the object store by a partition (its own
/// network namespace, whose link goes down: packets vanish, nothing
/// answers): its writes fail within the request deadline instead of
/// hanging; once its lease lapsed another host takes the vault over; when
/// the partition heals, the first host still cannot write. No split brain:
/// the vault holds exactly what the two hosts were told was written.
#[test]
fn a_partitioned_host_cannot_write_after_another_took_over() {
    let net = Host::new();
    let etcd = Etcd::start_also_on(&net.outer_ip);
    let mut v = ClusterVault::build(etcd, ObjectStore::start_everywhere(), &net.outer_ip, Vec::new());
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    let log_b = v.dir.path().join("daemon-b.log");
    let out = v
        .command("host-b", Some(&net))
        .args(["mount", &v.address, mnt_b.to_str().unwrap(), "--passphrase-file", v.pass()])
        .args(["--log", log_b.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "host B's mount: {}", String::from_utf8_lossy(&out.stderr));
    let on_b = |rel: &str| mnt_b.join(rel);
    write_synced(&on_b("1-working/before"), b"written by B\n").unwrap();

    net.partition();
    let start = std::time::Instant::now();
    let cut_off = write_synced(&on_b("1-working/during"), b"x\n");
    assert!(cut_off.is_err(), "host B made a write durable with no way to etcd");
    assert!(start.elapsed() < Duration::from_secs(45), "a cut-off write took {:?}", start.elapsed());

    // B's lease (5 s) has lapsed: host A gets the vault.
    std::thread::sleep(Duration::from_secs(6));
    v.mount();
    assert_eq!(std::fs::read_to_string(v.path("1-working/before")).unwrap(), "written by B\n");
    std::fs::write(v.path("1-working/takeover"), b"written by A\n").unwrap();

    net.heal();
    std::thread::sleep(Duration::from_secs(2));
    let late = std::fs::write(on_b("1-working/late"), b"stale\n");
    assert!(late.is_err(), "host B wrote after host A took the vault over");
    let _ = std::fs::write(on_b("1-working/takeover"), b"clobbered by B\n");
    let log = std::fs::read_to_string(&log_b).unwrap_or_default();
    assert!(log.contains("mount again"), "host B's log does not say to mount again:\n{log}");
    let out = v.command("host-b", None).args(["umount", mnt_b.to_str().unwrap()]).output().unwrap();
    if !out.status.success() {
        eprintln!("host B's unmount: {}", String::from_utf8_lossy(&out.stderr));
    }

    assert_eq!(std::fs::read_to_string(v.path("1-working/takeover")).unwrap(), "written by A\n");
    assert!(!v.path("1-working/late").exists() && !v.path("1-working/during").exists());
    std::fs::write(v.path("1-working/after"), b"A goes on\n").unwrap();
    v.unmount();
    v.fsck_clean();
    v.audit_verifies();
}

/// A read-only mount on another host beside the holder: it sees what the
/// holder wrote and closed at its next open (files, overwrites, renames,
/// deletions), cannot change anything, and records what it was asked for
/// in its own audit log: kept in etcd across its mounts, verifiable with
/// the public key alone, named after the host, and not in the holder's.
#[test]
fn a_read_only_mount_on_another_host_follows_the_holder() {
    let mut v = ClusterVault::new();
    v.mount();
    std::fs::write(v.path("1-working/before"), b"written before B mounted\n").unwrap();
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    let mount_b = || v.mount_reader("host-b", &mnt_b);
    let unmount_b = || v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    let on_b = |rel: &str| mnt_b.join(rel);
    // B's exporter sends B's log, named after B, to a syslog collector.
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::fs::create_dir_all(v.dir.path().join("host-b/agents")).unwrap();
    std::fs::write(
        v.dir.path().join("host-b/agents/policy.toml"),
        format!(
            "[export.siem]\nformat = \"syslog\"\naddress = \"udp://{}\"\n",
            collector.local_addr().unwrap()
        ),
    )
    .unwrap();
    mount_b();
    // Closed before B mounted: A did not know of B and commits it within
    // its commit interval (1 s).
    let arrived =
        || std::fs::read(on_b("1-working/before")).is_ok_and(|b| b == b"written before B mounted\n");
    assert!(wait_for(Duration::from_secs(3), arrived), "A's change before B mounted never reached B");

    // Close-to-open: each change, closed on A, is what B's next open sees
    // (no sleeping: the holder commits at a close while a reader is mounted).
    let big = pattern(3 << 20, 9);
    std::fs::write(v.path("1-working/new"), &big).unwrap();
    assert_eq!(std::fs::read(on_b("1-working/new")).unwrap(), big);
    std::fs::write(v.path("1-working/before"), b"rewritten on A\n").unwrap();
    assert_eq!(std::fs::read(on_b("1-working/before")).unwrap(), b"rewritten on A\n");
    std::fs::rename(v.path("1-working/new"), v.path("1-working/renamed")).unwrap();
    std::fs::write(v.path("1-working/marker"), b"after the rename\n").unwrap();
    assert!(!on_b("1-working/new").exists());
    assert_eq!(std::fs::read(on_b("1-working/renamed")).unwrap(), big);
    std::fs::remove_file(v.path("1-working/renamed")).unwrap();
    std::fs::write(v.path("1-working/marker"), b"after the unlink\n").unwrap();
    assert_eq!(std::fs::read(on_b("1-working/marker")).unwrap(), b"after the unlink\n");
    assert!(!on_b("1-working/renamed").exists());
    // A change of names no close follows commits at once too: the atomic
    // replace (write a temporary file, close it, rename it over the
    // target), a mkdir, an rmdir are what B's next lookup sees.
    std::fs::write(v.path("1-working/marker.tmp"), b"replaced whole\n").unwrap();
    std::fs::rename(v.path("1-working/marker.tmp"), v.path("1-working/marker")).unwrap();
    assert_eq!(std::fs::read(on_b("1-working/marker")).unwrap(), b"replaced whole\n");
    std::fs::create_dir(v.path("1-working/made")).unwrap();
    assert!(on_b("1-working/made").is_dir(), "a mkdir on A is not on B");
    std::fs::remove_dir(v.path("1-working/made")).unwrap();
    assert!(!on_b("1-working/made").exists(), "an rmdir on A is not on B");

    // B's kernel keeps a file's pages from one open to the next while the
    // file is as it was (nothing more is read through B), and drops them
    // once A changed it, even to the same size and modification time.
    let read_bytes = || {
        let stats = std::fs::read_to_string(on_b(".stats")).unwrap();
        let line = stats.lines().find_map(|l| l.strip_prefix("vaultfs_read_bytes_total ")).map(str::to_owned);
        line.unwrap_or_else(|| panic!("no read count in B's .stats: {stats}")).trim().parse::<f64>().unwrap()
    };
    let (first, second) = (pattern(1 << 20, 3), pattern(1 << 20, 4));
    std::fs::write(v.path("1-working/kept"), &first).unwrap();
    assert!(std::fs::read(on_b("1-working/kept")).unwrap() == first);
    let before = read_bytes();
    assert!(std::fs::read(on_b("1-working/kept")).unwrap() == first);
    assert_eq!(read_bytes(), before, "B read an unchanged file through the vault again");
    let mtime = std::fs::metadata(v.path("1-working/kept")).unwrap().modified().unwrap();
    std::fs::write(v.path("1-working/kept"), &second).unwrap();
    std::fs::File::options().write(true).open(v.path("1-working/kept")).unwrap().set_modified(mtime).unwrap();
    assert_eq!(std::fs::metadata(on_b("1-working/kept")).unwrap().modified().unwrap(), mtime);
    assert!(std::fs::read(on_b("1-working/kept")).unwrap() == second, "B kept the pages of a file A changed");

    // B changes nothing.
    for attempt in [
        std::fs::write(on_b("1-working/from-b"), b"x"),
        std::fs::write(on_b("1-working/before"), b"x"),
        std::fs::remove_file(on_b("1-working/marker")),
    ] {
        assert_eq!(attempt.expect_err("B changed the vault").raw_os_error(), Some(libc::EROFS));
    }

    // B's accesses are in B's own log, which verifies with the public key
    // alone and names B; A's log has none of them.
    let audit_b = std::fs::read(on_b(".audit")).unwrap();
    let text_b = String::from_utf8_lossy(&audit_b).into_owned();
    assert!(text_b.contains("/host/host-b"), "B's log does not name its host: {text_b}");
    assert!(text_b.contains("1-working/marker") && text_b.contains("\"op\":\"open\""), "{text_b}");
    let copy = v.dir.path().join("audit-b.copy");
    std::fs::write(&copy, &audit_b).unwrap();
    let key = std::fs::read_to_string(v.dir.path().join("host-b/agents/audit.pub")).unwrap();
    let out = v.run(&["audit", "verify", "--file", copy.to_str().unwrap(), "--pubkey", key.trim()]);
    assert!(out.status.success(), "B's .audit does not verify: {}", String::from_utf8_lossy(&out.stderr));
    let text_a = std::fs::read_to_string(v.path(".audit")).unwrap();
    assert!(!text_a.contains("/host/host-b"), "A's log holds B's checkpoints");
    let mut buf = vec![0u8; 65536];
    let n = collector.recv(&mut buf).expect("B's exporter sent nothing");
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(line.contains(" host-b vaultfs ") && line.contains("/host/host-b\" index=\"0\""), "{line}");

    // B's log outlives its mount.
    unmount_b();
    mount_b();
    let again = std::fs::read_to_string(on_b(".audit")).unwrap();
    assert!(again.contains("1-working/marker"), "B's second mount lost its first mount's records");
    // Checked beside a mounted reader: its log, being written, is left alone and said so.
    v.unmount();
    let report = v.fsck_clean();
    assert!(report.contains("host host-b: mounted read-only now, not checked"), "{report}");
    let said = v.audit_verifies();
    assert!(said.contains("host host-b: mounted read-only now, not checked"), "{said}");
    v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);

    let report = v.fsck_clean();
    assert!(report.contains("host host-b: ") && !report.contains("DOES NOT VERIFY"), "{report}");
    let verify = || v.run(&["audit", "verify", &v.address, "--passphrase-file", v.pass()]);
    let out = verify();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("ok: host host-b: "), "audit verify: {said}");

    // B's log is checked like the vault's: its records removed, both say so.
    v.etcd.delete_range("vaultfs/agents/hosts/host-b/k/R", "vaultfs/agents/hosts/host-b/k/S");
    let out = verify();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("audit log of host host-b"), "audit verify: {err}");
    let out = v.run(&["fsck", &v.address, "--passphrase-file", v.pass()]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("the audit log of host host-b does not verify"),
        "{report}"
    );
}

/// The holder is killed while it rewrites a file a read-only mount keeps
/// reading: every block the reader gets is a block the holder wrote whole
/// (never garbage, never an error); after the kill the file stays one
/// committed state; the reader follows the next holder; the vault stays
/// consistent (fsck clean, every log verifies).
#[test]
fn a_holder_killed_mid_write_leaves_readers_whole_blocks() {
    const LEN: usize = 1 << 20;
    const BLOCK: usize = 4096;
    let mut v = ClusterVault::new();
    v.mount();
    std::fs::write(v.path("1-working/f"), pattern(LEN, 0)).unwrap();
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    v.mount_reader("host-b", &mnt_b);
    let on_b = mnt_b.join("1-working/f");
    assert!(wait_for(Duration::from_secs(3), || std::fs::read(&on_b).is_ok_and(|d| d == pattern(LEN, 0))));
    // Each 4 KiB block must be block i of pattern(LEN, s) for some seed s.
    let whole_blocks = |data: &[u8]| -> Vec<u8> {
        assert!(data.len() <= LEN && data.len() % BLOCK == 0, "a torn length: {}", data.len());
        data.chunks(BLOCK)
            .enumerate()
            .map(|(i, block)| {
                let at = i * BLOCK;
                let seed = (block[0] ^ (at >> 11) as u8).wrapping_sub((at as u8).wrapping_mul(31));
                assert_eq!(
                    block,
                    &pattern(LEN, seed)[at..at + BLOCK],
                    "block {i} is no block the holder wrote"
                );
                seed
            })
            .collect()
    };

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, stop) = (v.path("1-working/f"), stop.clone());
        std::thread::spawn(move || {
            let mut seed = 1u8;
            // Errors once the daemon is killed end nothing: the loop stops when told.
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = std::fs::write(&path, pattern(LEN, seed));
                seed = seed.wrapping_add(1).max(1);
            }
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let data = std::fs::read(&on_b).unwrap_or_else(|e| panic!("a read beside the writer failed: {e}"));
        seen.extend(whole_blocks(&data));
    }
    v.kill_daemon();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    assert!(seen.len() > 2, "the reader saw only versions {seen:?} of a file rewritten for 3 s");
    // Nothing changes any more: one committed state, read the same twice.
    let after = std::fs::read(&on_b).unwrap();
    whole_blocks(&after);
    assert_eq!(std::fs::read(&on_b).unwrap(), after);

    // The next holder (once the killed one's lease lapsed); the reader follows it.
    v.mount();
    assert_eq!(std::fs::read(v.path("1-working/f")).unwrap(), after);
    std::fs::write(v.path("1-working/g"), b"from the next holder\n").unwrap();
    assert_eq!(std::fs::read(mnt_b.join("1-working/g")).unwrap(), b"from the next holder\n");
    v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    v.unmount();
    let report = v.fsck_clean();
    assert!(report.contains("host host-b: "), "{report}");
    v.audit_verifies();
}

/// A read-only mount cut off from etcd (its own network namespace, whose
/// link goes down) fails its reads with EIO within the request deadline
/// instead of hanging or serving from memory; once its lease lapsed it
/// serves nothing even after the partition heals (no access of it could be
/// recorded), and says to mount again. The holder goes on throughout.
#[test]
fn a_partitioned_reader_fails_closed() {
    let net = Host::new();
    let etcd = Etcd::start_also_on(&net.outer_ip);
    let mut v = ClusterVault::build(etcd, ObjectStore::start_everywhere(), &net.outer_ip, Vec::new());
    v.mount();
    std::fs::write(v.path("1-working/shared"), b"for every host\n").unwrap();
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    let log_b = v.dir.path().join("host-b.log");
    let out = v
        .command("host-b", Some(&net))
        .env("VAULTFS_HOST", "host-b")
        .args(["mount", &v.address, mnt_b.to_str().unwrap(), "--passphrase-file", v.pass(), "-o", "ro"])
        .args(["--log", log_b.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "host B's read-only mount: {}", String::from_utf8_lossy(&out.stderr));
    let on_b = mnt_b.join("1-working/shared");
    assert!(wait_for(Duration::from_secs(3), || std::fs::read(&on_b).is_ok_and(|d| d == b"for every host\n")));

    net.partition();
    let start = std::time::Instant::now();
    let cut_off = std::fs::read(&on_b);
    assert_eq!(cut_off.expect_err("B read with no way to etcd").raw_os_error(), Some(EIO));
    assert!(start.elapsed() < Duration::from_secs(45), "a cut-off read took {:?}", start.elapsed());
    std::fs::write(v.path("1-working/during"), b"A goes on\n").unwrap();

    // B's lease (5 s) has lapsed: after the partition heals it still serves nothing.
    std::thread::sleep(Duration::from_secs(6));
    net.heal();
    std::thread::sleep(Duration::from_secs(2));
    let late = std::fs::read(&on_b);
    assert_eq!(late.expect_err("B served a read it could never record").raw_os_error(), Some(EIO));
    let log = std::fs::read_to_string(&log_b).unwrap_or_default();
    assert!(log.contains("mount again"), "host B's log does not say to mount again:\n{log}");
    let _ = v.command("host-b", None).args(["umount", mnt_b.to_str().unwrap()]).output();
    assert!(wait_for(Duration::from_secs(10), || !is_mounted(&mnt_b)), "B's mount stayed");

    // Mounted again, B reads on, and what it did before is in its log.
    v.mount_reader("host-b", &mnt_b);
    assert!(wait_for(Duration::from_secs(3), || std::fs::read(mnt_b.join("1-working/during")).is_ok()));
    v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    v.unmount();
    let report = v.fsck_clean();
    assert!(report.contains("host host-b: "), "{report}");
}

/// A read-only mount's kernel keeps directories' names (only a path's last
/// component is looked up, and catches up with the holder): when the
/// holder renames, replaces or removes a directory, the reader's next
/// walk through the old name finds what the holder committed, never the
/// directory the kernel remembered (the mount answers ESTALE and the
/// kernel walks again, asking for every name).
#[test]
fn a_readers_kernel_keeps_directory_names_until_the_holder_changes_them() {
    let mut v = ClusterVault::new();
    v.mount();
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    v.mount_reader("host-b", &mnt_b);
    let on_b = |rel: &str| mnt_b.join(rel);
    std::fs::create_dir_all(v.path("1-working/proj/src")).unwrap();
    std::fs::write(v.path("1-working/proj/src/f"), b"first\n").unwrap();
    let arrived = || std::fs::read(on_b("1-working/proj/src/f")).is_ok_and(|b| b == b"first\n");
    assert!(wait_for(Duration::from_secs(5), arrived), "the holder's file never reached the reader");
    for round in 0..20 {
        // The reader's kernel now keeps `proj` and `src`; the holder moves
        // them away and makes new ones by the same names.
        let text = format!("round {round}\n");
        std::fs::rename(v.path("1-working/proj"), v.path(&format!("1-working/old{round}"))).unwrap();
        std::fs::create_dir_all(v.path("1-working/proj/src")).unwrap();
        std::fs::write(v.path("1-working/proj/src/f"), &text).unwrap();
        let seen = std::fs::read_to_string(on_b("1-working/proj/src/f"))
            .unwrap_or_else(|e| panic!("round {round}: the reader's read failed: {e}"));
        assert_eq!(seen, text, "round {round}: the reader walked a directory the holder had moved");
        let listed: Vec<_> =
            std::fs::read_dir(on_b("1-working/proj/src")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(listed, ["f"], "round {round}: the reader listed a directory the holder had moved");
        assert_eq!(
            std::fs::read_to_string(on_b(&format!("1-working/old{round}/src/f"))).unwrap(),
            if round == 0 { "first\n".to_string() } else { format!("round {}\n", round - 1) }
        );
    }
    // Removed on the holder: gone on the reader, by path and by `stat`.
    std::fs::write(v.path("1-working/proj/src/g"), b"g\n").unwrap();
    assert!(on_b("1-working/proj/src/g").exists());
    std::fs::remove_dir_all(v.path("1-working/proj")).unwrap();
    assert!(!on_b("1-working/proj/src").exists(), "a directory the holder removed still stats on the reader");
    let err = std::fs::read(on_b("1-working/proj/src/g")).expect_err("read through a removed directory");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    v.unmount();
    v.fsck_clean();
}

/// Files closed one at a time beside a read-only mount are an object each
/// (each close commits); once enough small objects wait, the holder's
/// collector packs them together in one commit: the files read the same on
/// both hosts, and the vault stays consistent.
#[test]
fn small_objects_left_by_closes_beside_a_reader_are_packed() {
    let mut v = ClusterVault::new();
    v.mount();
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    v.mount_reader("host-b", &mnt_b);
    // Object numbers are never reused: the newest tells how many were made.
    let newest = || {
        let names = v.objects.list(BUCKET);
        names.iter().filter_map(|n| u64::from_str_radix(n.rsplit('/').next()?, 16).ok()).max().unwrap_or(0)
    };
    let (before, first) = (v.objects.list(BUCKET).len(), newest());
    for i in 0..40 {
        std::fs::write(v.path(&format!("1-working/s{i}")), format!("small {i}\n")).unwrap();
    }
    let made = newest() - first;
    assert!(made >= 40, "{made} objects made for 40 files closed one at a time beside a reader");
    // Fewer than the collector's PACK_AT_LEAST (16) are not worth a pack:
    // up to 15 may be left, where 40 would be without one.
    let packed = || v.objects.list(BUCKET).len() < before + 16;
    assert!(
        wait_for(Duration::from_secs(30), packed),
        "not packed: {} objects",
        v.objects.list(BUCKET).len()
    );
    for i in 0..40 {
        let want = format!("small {i}\n");
        assert_eq!(std::fs::read_to_string(mnt_b.join(format!("1-working/s{i}"))).unwrap(), want);
        assert_eq!(std::fs::read_to_string(v.path(&format!("1-working/s{i}"))).unwrap(), want);
    }
    v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    v.unmount();
    v.fsck_clean();
    v.mount();
    assert_eq!(std::fs::read_to_string(v.path("1-working/s39")).unwrap(), "small 39\n");
    v.unmount();
}

/// Lockdown is the vault's: made on the holder, it closes a read-only
/// mount's levels within a second; made on a reader, the holder's. Leaving
/// it is each host's own `lockdown --exit` (its passphrase), and the first
/// exit removes the vault-wide marker. All recorded on each host.
#[test]
fn a_lockdown_on_any_host_closes_the_levels_on_every_host() {
    let mut v = ClusterVault::new();
    let (mnt_b, _unmount_b, a, b) = v.holder_and_reader("2-private/plan", b"level two\n");
    let on_b = mnt_b.join("2-private/plan");
    let locked =
        |host: &str, mnt: &str| v.ok_on(host, &["status", "--json", mnt]).contains("\"lockdown\": true");
    let refused = |p: &Path| std::fs::read(p).err().and_then(|e| e.raw_os_error()) == Some(libc::EACCES);
    assert!(wait_for(Duration::from_secs(3), || std::fs::read(&on_b).is_ok()), "B never read level 2");

    // On the holder: the reader follows.
    v.ok_on("state", &["lockdown", &a]);
    assert!(wait_for(Duration::from_secs(2), || locked("host-b", &b)), "B did not follow A's lockdown");
    assert!(refused(&on_b), "B still reads level 2 in lockdown");
    // B leaves it (the marker goes); A stays locked until it leaves too.
    v.ok_on("host-b", &["lockdown", &b, "--exit", "--passphrase-file", v.pass()]);
    assert_eq!(std::fs::read(&on_b).unwrap(), b"level two\n");
    assert!(locked("state", &a));
    assert!(refused(&v.path("2-private/plan")));
    v.ok_on("state", &["lockdown", &a, "--exit", "--passphrase-file", v.pass()]);
    assert_eq!(std::fs::read(v.path("2-private/plan")).unwrap(), b"level two\n");
    std::thread::sleep(Duration::from_millis(600));
    assert!(!locked("host-b", &b), "the exit on A brought B's lockdown back");

    // On the reader: the holder follows.
    v.ok_on("host-b", &["lockdown", &b]);
    assert!(wait_for(Duration::from_secs(2), || locked("state", &a)), "A did not follow B's lockdown");
    assert!(refused(&v.path("2-private/plan")));
    v.ok_on("state", &["lockdown", &a, "--exit", "--passphrase-file", v.pass()]);
    v.ok_on("host-b", &["lockdown", &b, "--exit", "--passphrase-file", v.pass()]);

    let audit_a = std::fs::read_to_string(v.path(".audit")).unwrap();
    assert!(audit_a.contains("made on another host"), "A's log does not record B's lockdown");
    let audit_b = std::fs::read_to_string(mnt_b.join(".audit")).unwrap();
    assert!(audit_b.contains("made on another host"), "B's log does not record A's lockdown");
    v.ok_on("host-b", &["umount", &b]);
    v.unmount();
    v.fsck_clean();
}

/// Whether `vaultfs status --json` on `host`'s mount `mnt` says opens at
/// `level` need an approval.
fn needs_approval(v: &ClusterVault, host: &str, mnt: &str, level: u64) -> bool {
    let status: serde_json::Value = serde_json::from_str(&v.ok_on(host, &["status", "--json", mnt])).unwrap();
    let levels = status["levels"].as_array().expect("levels in the status");
    levels.iter().any(|l| l["level"].as_u64() == Some(level) && l["approval"].as_bool() == Some(true))
}

/// The vault's policy is every host's: set on a read-only mount, the
/// holder follows it within a second, and so does the reader; a looser one
/// is stored, but each mount keeps the stricter until it mounts again; one
/// naming a host's command is refused; a value no key holder sealed is
/// refused by every mount (the policy in force stays) and refuses a new
/// mount. Recorded in each host's log.
#[test]
fn the_vaults_policy_binds_every_host() {
    let mut v = ClusterVault::new();
    let (mnt_b, _unmount_b, a, b) = v.holder_and_reader("2-private/plan", b"level two\n");
    let on_b = mnt_b.join("2-private/plan");
    assert!(wait_for(Duration::from_secs(3), || std::fs::read(&on_b).is_ok()), "B never read level 2");
    assert!(!needs_approval(&v, "state", &a, 2));
    let gated = |p: &Path| std::fs::read(p).err().and_then(|e| e.raw_os_error()) == Some(libc::EACCES);
    let file = v.dir.path().join("vault-policy.toml");
    let set = |host: &str, mnt: &str, text: &str| {
        std::fs::write(&file, text).unwrap();
        v.run_on(host, &["policy", "set", mnt, file.to_str().unwrap()])
    };

    let strict = "[levels.2]\nrequire_approval = true\napproval_timeout = \"1s\"\n";
    let out = set("host-b", &b, strict);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(needs_approval(&v, "host-b", &b, 2), "B did not apply the policy it set");
    assert!(wait_for(Duration::from_secs(2), || needs_approval(&v, "state", &a, 2)), "A did not follow");
    assert!(gated(&v.path("2-private/plan")) && gated(&on_b), "an open at level 2 went unapproved");
    assert_eq!(v.ok_on("state", &["policy", "show", &a]), strict);

    // Looser: stored, but no running mount loosens.
    let out = set("state", &a, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(800));
    assert!(needs_approval(&v, "state", &a, 2) && needs_approval(&v, "host-b", &b, 2));
    let refused = v.ok_on("host-b", &["status", &b]);
    assert!(refused.contains("vault's policy at") && refused.contains("REFUSED"), "{refused}");
    // A host's command is not the vault's.
    let out = set("state", &a, "approval_notify = [\"/bin/true\"]\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("names something on one host"), "{err}");

    // A value no holder of the keys sealed: refused everywhere, the policy stays.
    v.etcd.put_key("vaultfs/agents/k/G", "[levels.2]\nrequire_approval = false\n");
    let refused = |log: &Path| {
        std::fs::read_to_string(log).unwrap().contains("the vault's policy failed authentication")
    };
    let (audit_a, audit_b) = (v.path(".audit"), mnt_b.join(".audit"));
    assert!(wait_for(Duration::from_secs(2), || refused(&audit_a) && refused(&audit_b)), "not refused");
    assert!(needs_approval(&v, "state", &a, 2) && needs_approval(&v, "host-b", &b, 2));
    v.ok_on("host-b", &["umount", &b]);
    let out = v.try_mount_reader_with("host-b", &mnt_b, &v.env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("failed authentication"), "mounted: {err}");

    // Set again by a key holder: every mount, a new one too, follows it.
    let out = set("state", &a, strict);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    v.mount_reader("host-b", &mnt_b);
    assert!(needs_approval(&v, "host-b", &b, 2), "B's new mount ignored the vault's policy");
    let log_a = std::fs::read_to_string(&audit_a).unwrap();
    assert!(log_a.contains("loosening takes a remount"), "A did not record the loosening it refused");
    v.ok_on("host-b", &["umount", &b]);
    v.unmount();
    v.fsck_clean();
}

/// Approvals are the vault's: an open waiting on the holder is listed by
/// `vaultfs pending` on a read-only host's mount and denied there; one
/// waiting on the reader is approved on the holder (the reader's `cat` then
/// reads), after which, under a vault policy with a cooldown, the holder's
/// next open is refused at once. Each decision is recorded on both hosts,
/// with where it was made.
#[test]
fn an_open_waiting_on_one_host_is_decided_on_another() {
    let mut v = ClusterVault::new();
    let (mnt_b, _unmount_b, a, b) = v.holder_and_reader("3-sealed/contract.md", b"sealed terms\n");
    let cat = |p: PathBuf| std::process::Command::new("cat").arg(p).output().unwrap();
    let pending = |host: &str, mnt: &str| -> Vec<serde_json::Value> {
        serde_json::from_str(&v.ok_on(host, &["pending", mnt, "--json"])).unwrap()
    };
    let waiting_elsewhere = |host: &str, mnt: &str, on: &str| {
        pending(host, mnt).into_iter().find(|p| p["host"].as_str() == Some(on))
    };

    // Waits on A; denied on B.
    let holder = std::thread::spawn({
        let p = v.path("3-sealed/contract.md");
        move || cat(p)
    });
    let mut seen = None;
    assert!(
        wait_for(Duration::from_secs(5), || {
            seen = pending("host-b", &b).into_iter().find(|p| !p["host"].is_null());
            seen.is_some()
        }),
        "B never listed A's waiting open"
    );
    let seen = seen.unwrap();
    let host_a = seen["host"].as_str().unwrap().to_string();
    let id = format!("{host_a}:{}", seen["id"]);
    v.ok_on("host-b", &["deny", &b, &id]);
    let out = holder.join().unwrap();
    assert!(!out.status.success(), "A's cat read a denied file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

    // With a cooldown for the vault, an approval on one host's open makes
    // the next open on any host wait it out: refused at once.
    let policy = v.dir.path().join("cooldown.toml");
    std::fs::write(&policy, "[levels.3]\ncooldown = \"1m\"\n").unwrap();
    v.ok_on("host-b", &["policy", "set", &b, policy.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(800));
    // Waits on B; approved on A.
    let reader = std::thread::spawn({
        let p = mnt_b.join("3-sealed/contract.md");
        move || cat(p)
    });
    let mut seen = None;
    assert!(
        wait_for(Duration::from_secs(5), || {
            seen = waiting_elsewhere("state", &a, "host-b");
            seen.is_some()
        }),
        "A never listed B's waiting open: {:?}",
        pending("state", &a)
    );
    let seen = seen.unwrap();
    assert_eq!(seen["path"], "/3-sealed/contract.md", "{seen}");
    assert!(pending("host-b", &b).iter().any(|p| p["host"].is_null()), "B does not list its own open");
    let id = format!("host-b:{}", seen["id"]);
    v.ok_on("state", &["approve", &a, &id]);
    let out = reader.join().unwrap();
    assert!(out.status.success(), "B's cat: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"sealed terms\n");
    let again = v.run_on("state", &["approve", &a, &id]);
    assert!(!again.status.success(), "a decided open was approved twice");

    let started = std::time::Instant::now();
    let out = cat(v.path("3-sealed/contract.md"));
    assert!(!out.status.success(), "A's open was not cooling down after B's approval");
    assert!(started.elapsed() < Duration::from_secs(10), "A's open waited instead of cooling down");

    let audit_a = std::fs::read_to_string(v.path(".audit")).unwrap();
    let audit_b = std::fs::read_to_string(mnt_b.join(".audit")).unwrap();
    assert!(audit_a.contains("for host host-b"), "A did not record its approval of B's open");
    assert!(audit_b.contains("on host "), "B did not record the approval made on A");
    assert!(audit_b.contains(&format!("for host {host_a}")), "B did not record its denial of A's open");
    assert!(audit_a.contains("on host host-b"), "A did not record the denial made on B");
    v.ok_on("host-b", &["umount", &b]);
    v.unmount();
    v.fsck_clean();
}

/// A backup restores into a new cluster vault (the way a vault moves from
/// one machine onto etcd and a bucket, or between names): verified first,
/// written with its header last, refused where a vault exists, and removed
/// again when the write fails.
#[test]
fn a_backup_restores_into_a_new_cluster_vault() {
    let mut v = ClusterVault::new();
    v.mount();
    let big = pattern(3 << 20, 9);
    std::fs::write(v.path("1-working/model.bin"), &big).unwrap();
    std::fs::create_dir(v.path("2-private/notes")).unwrap();
    for i in 0..30 {
        std::fs::write(v.path(&format!("2-private/notes/n{i}")), format!("note {i}\n")).unwrap();
    }
    v.unmount();
    let archive = v.dir.path().join("vault.vfsbak");
    let out = v.run(&["backup", &v.address, archive.to_str().unwrap(), "--passphrase-file", v.pass()]);
    assert!(out.status.success(), "backup: {}", String::from_utf8_lossy(&out.stderr));
    let data = format!("s3+http://{}/{BUCKET}", v.objects.endpoint());
    let restore = |to: &str| v.run(&["restore", archive.to_str().unwrap(), to, "--data", &data]);

    // Never over a vault that exists.
    let out = restore(&v.address);
    assert!(!out.status.success(), "restored over an existing vault");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"), "{out:?}");
    v.fsck_clean();

    let moved = v.address.replace("/agents", "/moved");
    let out = restore(&moved);
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("restored:   etcd://"), "{report}");
    let out = v.run(&["fsck", &moved, "--passphrase-file", v.pass()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("status: clean"), "{out:?}");
    let mnt = v.dir.path().join("moved-mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = v.run_on("moved", &["mount", &moved, mnt.to_str().unwrap(), "--passphrase-file", v.pass()]);
    assert!(out.status.success(), "mount of the restored vault: {}", String::from_utf8_lossy(&out.stderr));
    let read = (
        std::fs::read(mnt.join("1-working/model.bin")),
        std::fs::read_dir(mnt.join("2-private/notes")).map(|d| d.count()),
    );
    let audit = std::fs::read_to_string(mnt.join(".audit"));
    let out = v.run_on("moved", &["umount", mnt.to_str().unwrap()]);
    assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read.0.unwrap(), big);
    assert_eq!(read.1.unwrap(), 30);
    assert!(audit.unwrap().contains("n29"), "the restored audit log lacks the backed-up records");
    let out = v.run(&["audit", "verify", &moved, "--passphrase-file", v.pass()]);
    assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stderr));

    // A write that fails (this etcd refuses the restore's transactions)
    // leaves no vault behind: not even the name.
    let small = ClusterVault::on(Etcd::start_with_default_limits());
    let target = small.address.replace("/agents", "/refused");
    let data = format!("s3+http://{}/{BUCKET}", small.objects.endpoint());
    let out = small.run(&["restore", archive.to_str().unwrap(), &target, "--data", &data]);
    assert!(!out.status.success(), "restored through an etcd that refuses its transactions");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-txn-ops"), "{out:?}");
    let out = small.run(&["info", &target]);
    assert!(!out.status.success(), "a refused restore left a vault behind");
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no vault"), "{out:?}");
    assert!(
        small.objects.list(BUCKET).iter().all(|name| !name.starts_with("refused/")),
        "a refused restore left objects behind"
    );
}

/// `flock(1)` on `path` with `args` (-x, -s, -n...) around `command`, given
/// at most 20 s; whether it got the lock and ran it.
fn flock(args: &[&str], path: &Path, command: &str) -> bool {
    Command::new("timeout")
        .args(["20", "flock"])
        .args(args)
        .arg(path)
        .args(["-c", command])
        .status()
        .unwrap()
        .success()
}

/// Starts `program ARGS`, which takes a lock, prints `held`, and keeps it
/// until a line on its standard input (`release`): returns once it holds
/// the lock, so that nothing that follows hangs on a busy machine's
/// timing. Its standard error is kept for `release`.
fn holding(program: &str, args: &[&OsStr]) -> std::process::Child {
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line, "held\n", "{program} {args:?} did not take its lock");
    child
}

/// `flock HOW PATH` waits while `held` holds its lock (still waiting after
/// 300 ms), and gets it once `held` lets go.
fn waits_until_released(how: &'static str, path: &Path, held: std::process::Child, what: &str) {
    let path = path.to_path_buf();
    let waiting = std::thread::spawn(move || flock(&[how], &path, "true"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "{what} ended while the lock was held");
    release(held);
    assert!(waiting.join().unwrap(), "{what} never ended");
}

/// Lets a `holding` child go, asserting it then ended well.
fn release(mut child: std::process::Child) {
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a lock holder failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `python3 -c SCRIPT ARGS...`; its standard output, asserting it succeeded.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("timeout").args(["60", "python3", "-c", script]).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python3 failed: {stdout}{stderr}");
    stdout.into_owned()
}

/// F_GETLK for a read lock of bytes 0..100, then F_SETLK of a read lock on
/// bytes 10..25: `TYPE START LEN PID` of the conflicting lock (or of the
/// unlocked request), then `granted` or `busy`.
const FCNTL_PROBE: &str = r#"
import errno, fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_RDLCK, 0, 0, 100, 0))
t, _, start, length, pid = struct.unpack("hhqqi", got)
print({fcntl.F_RDLCK: "read", fcntl.F_WRLCK: "write", fcntl.F_UNLCK: "unlocked"}[t], start, length, pid)
try:
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 15, 10)
    print("granted")
except OSError as e:
    assert e.errno in (errno.EAGAIN, errno.EACCES), e
    print("busy")
"#;

/// The holder's sqlite: `BEGIN IMMEDIATE`, move 1 between two accounts and
/// count it in one of 50 log rows, whose 3 KB blob it rewrites, `COMMIT`,
/// for argv[2] seconds; prints how many transactions. Rollback journal (as
/// sqlite's default); rows rewritten in place, so the file keeps its size
/// and the kernel's own look at the size never drops stale pages on a reader.
const SQLITE_WRITER: &str = r#"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS acct(id INTEGER PRIMARY KEY, bal INTEGER)")
db.execute("CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, n INTEGER, x BLOB)")
if db.execute("SELECT count(*) FROM acct").fetchone()[0] == 0:
    db.execute("INSERT INTO acct VALUES (1, 1000), (2, 0)")
    db.executemany("INSERT INTO log VALUES (?, 0, randomblob(3000))", [(i,) for i in range(50)])
n, end = 0, time.time() + float(sys.argv[2])
while time.time() < end:
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE acct SET bal = bal - 1 WHERE id = 1")
    db.execute("UPDATE acct SET bal = bal + 1 WHERE id = 2")
    db.execute("UPDATE log SET n = n + 1, x = randomblob(3000) WHERE id = ?", (n % 50,))
    db.execute("COMMIT")
    n += 1
print(n)
"#;

/// A reader's sqlite, read-only, for argv[2] seconds: every read
/// transaction must see the accounts summing to 1000, the log counting
/// what moved, and never less moved than before; prints how many
/// distinct states it saw.
const SQLITE_READER: &str = r#"
import sqlite3, sys, time
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=30, isolation_level=None)
seen, last, end, i = set(), -1, time.time() + float(sys.argv[2]), 0
while time.time() < end:
    db.execute("BEGIN")
    total, moved = db.execute("SELECT sum(bal), max(CASE WHEN id = 2 THEN bal END) FROM acct").fetchone()
    counted = db.execute("SELECT sum(n) FROM log").fetchone()[0]
    if i % 10 == 0:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    db.execute("COMMIT")
    assert total == 1000 and moved == counted and moved >= last, (total, moved, counted, last)
    seen.add(moved)
    last, i = moved, i + 1
print(len(seen))
"#;

/// File locks hold across hosts: a holder's flock refuses another host's,
/// a waiter there gets it at the release (or gives up at its timeout's
/// signal), and the other way round; fcntl
/// record locks conflict by byte range and F_GETLK names the other host's
/// lock. sqlite writing on the holder and reading on a read-only mount on
/// another host: every read transaction sees a whole committed state (its
/// locks hold across hosts, and a lock granted on the reader drops the
/// pages the holder changed). A host that dies lets go of its locks when
/// its lease lapses.
#[test]
fn file_locks_hold_across_hosts_so_sqlite_reads_whole_transactions() {
    let mut v = ClusterVault::new();
    v.mount();
    let (mnt_b, _unmount_b) = v.mount_point("mnt-b");
    v.mount_reader("host-b", &mnt_b);
    let (on_a, on_b) = (v.path("1-working/lock"), mnt_b.join("1-working/lock"));
    std::fs::write(&on_a, b"a lock file\n").unwrap();
    assert!(wait_for(Duration::from_secs(3), || on_b.exists()));

    // flock: A holds it; B is refused, and B's wait ends when A lets go.
    let flock_holding = |how: &str, path: &Path| {
        holding("flock", &[how, path.to_str().unwrap(), "-c", "echo held; read line"].map(OsStr::new))
    };
    let held_on_a = flock_holding("-x", &on_a);
    assert!(!flock(&["-n", "-s"], &on_b, "true"), "B got A's lock\n{}", v.log());
    waits_until_released("-s", &on_b, held_on_a, "B's wait for A's lock");
    // And the other way round: B's shared lock refuses A's exclusive one, not A's shared one.
    let held_on_b = flock_holding("-s", &on_b);
    assert!(!flock(&["-n", "-x"], &on_a, "true"), "A got B's lock");
    assert!(flock(&["-n", "-s"], &on_a, "true"));
    waits_until_released("-x", &on_a, held_on_b, "A's wait for B's lock");

    // fcntl record locks: A's write lock on bytes 20..30.
    let script = "import fcntl, sys; f = open(sys.argv[1], 'r+'); fcntl.lockf(f, fcntl.LOCK_EX, 10, 20); print('held', flush=True); sys.stdin.readline()";
    let locker = holding("python3", &[OsStr::new("-c"), OsStr::new(script), on_a.as_os_str()]);
    let probe = python(FCNTL_PROBE, &[on_b.to_str().unwrap()]);
    assert_eq!(probe, "write 20 10 0\nbusy\n", "B's view of A's record lock");
    // The same probe beside it on A itself names the holder's pid.
    let probe = python(FCNTL_PROBE, &[on_a.to_str().unwrap()]);
    assert_eq!(probe, format!("write 20 10 {}\nbusy\n", locker.id()));
    release(locker);
    assert_eq!(python(FCNTL_PROBE, &[on_b.to_str().unwrap()]), "unlocked 0 100 0\ngranted\n");

    // sqlite: written on A, read on B at the same time.
    let (db_a, db_b) = (v.path("1-working/ledger.db"), mnt_b.join("1-working/ledger.db"));
    python(SQLITE_WRITER, &[db_a.to_str().unwrap(), "0"]);
    assert!(wait_for(Duration::from_secs(3), || db_b.exists()));
    let writer = {
        let db_a = db_a.to_str().unwrap().to_string();
        std::thread::spawn(move || python(SQLITE_WRITER, &[&db_a, "5"]))
    };
    let states: usize = python(SQLITE_READER, &[db_b.to_str().unwrap(), "5"]).trim().parse().unwrap();
    let transactions: usize = writer.join().unwrap().trim().parse().unwrap();
    assert!(transactions > 5 && states > 2, "{transactions} transactions on A, {states} states seen on B");

    // A host that dies: its locks go with its lease (5 s), and B's wait ends.
    let mut held_on_a = flock_holding("-x", &on_a);
    assert!(!flock(&["-n", "-s"], &on_b, "true"), "B got A's lock");
    // A wait its process's timer signal ends (no FUSE interrupt reaches the mount).
    let timed = std::time::Instant::now();
    assert!(!flock(&["-w", "1", "-s"], &on_b, "true"));
    assert!(timed.elapsed() < Duration::from_secs(5), "flock -w 1 waited {:?}", timed.elapsed());
    let waited = std::time::Instant::now();
    let waiter = {
        // Within a minute: the lease lapses 5 s after the kill, and etcd
        // then revokes it when it gets to it (seconds more on a busy machine).
        let on_b = on_b.clone();
        std::thread::spawn(move || {
            let status =
                Command::new("timeout").args(["60", "flock", "-s"]).arg(&on_b).args(["-c", "true"]).status();
            status.unwrap().success()
        })
    };
    v.kill_daemon();
    let ended = waiter.join().unwrap();
    assert!(ended, "B's wait outlived the dead holder ({:?})\n{}", waited.elapsed(), v.host_log("host-b"));
    let _ = held_on_a.kill();
    let _ = held_on_a.wait();
    v.ok_on("host-b", &["umount", mnt_b.to_str().unwrap()]);
    v.mount();
    v.unmount();
    v.fsck_clean();
}
