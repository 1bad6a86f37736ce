//! The etcd client: the only user of etcd-client and of tokio. The store is
//! synchronous (FUSE threads call it), so each call blocks on a small
//! runtime of its own; the runtime also keeps the holder's lease alive.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity, PutOptions, SortOrder,
    SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use zeroize::Zeroizing;

use crate::store::{Error, Result};

/// A request that gets no answer within this fails (EIO to the caller),
/// so that a lost etcd never hangs a FUSE thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response taken: a commit's changes in one watch message,
/// beyond the 32 MiB requests docs/CLUSTER.md has etcd allow; a page of a
/// scan (512 keys of audit records can pass gRPC's default 4 MiB). A page
/// larger still is asked for again in halves (`range`).
const MESSAGE_BYTES: usize = 64 << 20;

/// One key as etcd returned it.
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// One page of a range read.
pub struct Page {
    pub kvs: Vec<Kv>,
    /// More keys in the range past this page.
    pub more: bool,
    /// The store's revision the page was read at.
    pub revision: i64,
}

/// A condition of a transaction.
#[derive(Clone)]
pub enum Guard {
    /// The key was created at this revision (0: the key does not exist).
    Created(Vec<u8>, i64),
    /// The key was last changed at this revision (0: it does not exist).
    Modified(Vec<u8>, i64),
    /// No key in [from, to) was created before this revision.
    NoneCreatedBefore(Vec<u8>, Vec<u8>, i64),
}

/// A write of a transaction.
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    /// A put bound to a lease: the key goes when the lease does.
    PutLeased(Vec<u8>, Vec<u8>, i64),
    Delete(Vec<u8>),
    /// Every key that starts with these bytes.
    DeletePrefix(Vec<u8>),
    /// A new revision of an existing key, its value and lease unchanged.
    Touch(Vec<u8>),
}

/// What a watch of a key range tells its owner, in order.
pub enum News {
    /// Watching from just after this revision: what was kept from before
    /// it may be stale.
    From(i64),
    /// The changes of one or more revisions, the last of them this one:
    /// (key, new value (None: deleted), the change's revision).
    Changes(i64, Vec<(Vec<u8>, Option<Vec<u8>>, i64)>),
    /// The watch broke (etcd away, or compacted past it): nothing kept can
    /// be trusted until the next `From`.
    Lost,
}

/// Pause before a request that never left is sent again.
const RESEND_AFTER: Duration = Duration::from_millis(50);

/// Whether etcd could not take the request now: the member was
/// unreachable, has no leader, or its connection broke under the request
/// (a member killed mid-request: tonic reports that as code Unknown with
/// the socket's error in the source chain). Not a timeout: the request
/// may still be in flight.
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let code = format!("{:?}", status.code());
            code == "Unavailable"
                || connection_lost(status)
                || (code == "Unknown" && status.message() == "transport error")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Whether a socket error lies under `e`: the connection to the member
/// closed or was refused, not an answer of etcd's.
fn connection_lost(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                BrokenPipe | ConnectionReset | ConnectionAborted | ConnectionRefused | NotConnected | UnexpectedEof
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

fn io(what: &str, e: etcd_client::Error) -> Error {
    Error::Io(format!("etcd {what}: {e}"))
}

/// The environment variables that say how to reach etcd securely
/// (docs/CLUSTER.md, "etcd security"). Files, not values: a password or key
/// on a command line or in the environment is readable by too many.
pub const ENV_CA: &str = "VAULTFS_ETCD_CA";
pub const ENV_CERT: &str = "VAULTFS_ETCD_CERT";
pub const ENV_KEY: &str = "VAULTFS_ETCD_KEY";
pub const ENV_USER: &str = "VAULTFS_ETCD_USER";
pub const ENV_PASSWORD_FILE: &str = "VAULTFS_ETCD_PASSWORD_FILE";

/// How this process reaches etcd and proves who it is: TLS with a CA to
/// trust (and a client certificate, for etcd's `--client-cert-auth`), a
/// user and password (etcd's authentication), both, or neither.
struct Access {
    tls: Option<TlsOptions>,
    /// A client certificate is in `tls`.
    certificate: bool,
    user: Option<(String, Zeroizing<String>)>,
}

impl Access {
    fn from_env() -> Result<Access> {
        Access::from(|name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from))
    }

    fn from(var: impl Fn(&str) -> Option<PathBuf>) -> Result<Access> {
        let bad = |why: String| Err(Error::Unusable(format!("etcd access: {why} (docs/CLUSTER.md, \"etcd security\")")));
        let certificate = var(ENV_CERT).is_some();
        let tls = match (var(ENV_CA), var(ENV_CERT), var(ENV_KEY)) {
            (None, None, None) => None,
            (None, _, _) => return bad(format!("{ENV_CERT} and {ENV_KEY} need {ENV_CA}")),
            (Some(ca), cert, key) => {
                let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ENV_CA, &ca)?));
                Some(match (cert, key) {
                    (None, None) => tls,
                    (Some(cert), Some(key)) => {
                        tls.identity(Identity::from_pem(read(ENV_CERT, &cert)?, read(ENV_KEY, &key)?))
                    }
                    _ => return bad(format!("{ENV_CERT} and {ENV_KEY} go together")),
                })
            }
        };
        let user = match (var(ENV_USER), var(ENV_PASSWORD_FILE)) {
            (None, None) => None,
            (Some(user), Some(file)) => {
                let text = Zeroizing::new(read(ENV_PASSWORD_FILE, &file)?);
                let Ok(text) = std::str::from_utf8(&text) else {
                    return bad(format!("{ENV_PASSWORD_FILE}: not UTF-8"));
                };
                // The first line, as etcdctl's --password takes it.
                let password = Zeroizing::new(text.lines().next().unwrap_or_default().to_string());
                if password.is_empty() {
                    return bad(format!("{ENV_PASSWORD_FILE}: {} is empty", file.display()));
                }
                Some((user.to_string_lossy().into_owned(), password))
            }
            _ => return bad(format!("{ENV_USER} and {ENV_PASSWORD_FILE} go together")),
        };
        Ok(Access { tls, certificate, user })
    }

    /// What to check when a connection failed below gRPC (the server
    /// closed it during or right after the TLS handshake, or spoke
    /// another protocol).
    fn hint(&self) -> String {
        match (&self.tls, self.certificate) {
            (None, _) => format!("; if etcd serves TLS, set {ENV_CA}"),
            (Some(_), false) => format!("; if etcd requires client certificates, set {ENV_CERT} and {ENV_KEY}"),
            (Some(_), true) => format!("; check that {ENV_CA} signed etcd's certificate and etcd trusts {ENV_CERT}"),
        }
    }
}

/// The whole of a file named by environment variable `name`; the path must
/// be absolute (the mount's daemon does not run where it was started).
fn read(name: &str, path: &Path) -> Result<Vec<u8>> {
    if !path.is_absolute() {
        return Err(Error::Unusable(format!("{name}={}: not an absolute path", path.display())));
    }
    std::fs::read(path).map_err(|e| Error::Unusable(format!("{name}={}: {e}", path.display())))
}

/// A connection to an etcd cluster.
pub struct Etcd {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// Requests sent through `run` (not the lease's renewals or the watch).
    requests: AtomicU64,
}

impl Etcd {
    pub fn connect(endpoints: &[String]) -> Result<Etcd> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Io(format!("cannot start the etcd client's runtime: {e}")))?;
        let access = Access::from_env()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let scheme = if access.tls.is_some() { "https" } else { "http" };
        if let Some(tls) = access.tls.clone() {
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &access.user {
            options = options.with_user(user.as_str(), password.as_str());
        }
        let urls: Vec<String> = endpoints.iter().map(|e| format!("{scheme}://{e}")).collect();
        let hint = access.hint();
        let client = rt.block_on(Client::connect(&urls, Some(options))).map_err(|e| {
            let hint = if matches!(e, etcd_client::Error::TransportError(_)) || e.to_string().contains("transport error") {
                hint
            } else {
                String::new()
            };
            Error::Io(format!("cannot connect to etcd at {}: {e}{hint}", endpoints.join(",")))
        })?;
        Ok(Etcd { rt, client, requests: AtomicU64::new(0) })
    }

    /// Runs one request to its end, at most REQUEST_TIMEOUT (plus the
    /// client's own deadline, which covers the transport). A request etcd
    /// answered "unavailable" (the member it went to is down, or the
    /// cluster is electing a leader) is sent again, to whichever member the
    /// client picks, so that a cluster with a quorum keeps answering.
    ///
    /// That includes transactions whose first try may have been applied
    /// ("leader changed"): a transaction only puts and deletes given keys,
    /// and its caller still holds the vault's locks on every one of them
    /// (the inode's stripe, the namespace mutex, the audit log's state), so
    /// nothing can have changed them in between and a second application
    /// leaves the same state as one.
    fn run<T, F>(&self, what: &str, mut request: impl FnMut() -> F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let start = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        loop {
            // Resends share the one deadline: a member that hangs, then
            // breaks, must not start the clock again.
            let left = REQUEST_TIMEOUT.saturating_sub(start.elapsed());
            let r = match self.rt.block_on(async { tokio::time::timeout(left, request()).await }) {
                Ok(r) => r,
                Err(_) => {
                    return Err(Error::Io(format!("etcd {what}: no answer in {} s", REQUEST_TIMEOUT.as_secs())));
                }
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) if unavailable(&e) && start.elapsed() < REQUEST_TIMEOUT => {
                    tracing::debug!("etcd {what}: {e}; sending it again");
                    std::thread::sleep(RESEND_AFTER);
                }
                Err(e) => {
                    tracing::warn!("etcd {what}: {e}");
                    return Err(io(what, e));
                }
            }
        }
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Kv>> {
        Ok(self.get_at(key)?.0)
    }

    /// `key`, and the store's revision it was read at.
    pub fn get_at(&self, key: &[u8]) -> Result<(Option<Kv>, i64)> {
        let mut resp = self.run("get", || {
            let mut kv = kv(&self.client);
            async move { kv.get(key, None).await }
        })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.take_kvs().into_iter().next().map(into_kv), revision))
    }

    /// The store's revision now (a linearizable read of one key's count).
    pub fn revision(&self, key: &[u8]) -> Result<i64> {
        let resp = self.run("revision", || {
            let mut kv = kv(&self.client);
            async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
        })?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Up to `limit` keys of `[from, to)` in key order (descending: the
    /// greatest first), at `revision` (0: the newest).
    pub fn range(&self, from: &[u8], to: &[u8], mut limit: i64, revision: i64, descending: bool, keys_only: bool) -> Result<Page> {
        let mut options = GetOptions::new().with_range(to).with_revision(revision);
        if descending {
            options = options.with_sort(SortTarget::Key, SortOrder::Descend);
        }
        if keys_only {
            options = options.with_keys_only();
        }
        let mut resp = loop {
            let options = options.clone().with_limit(limit);
            let answer = self.run("range", || {
                let (mut kv, options) = (kv(&self.client), options.clone());
                async move { kv.get(from, Some(options)).await }
            });
            match answer {
                // Callers that page (a limit) go on from the page's end.
                Err(Error::Io(m)) if limit > 1 && m.contains("message length too large") => limit /= 2,
                answer => break answer?,
            }
        };
        let revision = resp.header().map_or(0, |h| h.revision());
        let more = resp.more();
        Ok(Page { kvs: resp.take_kvs().into_iter().map(into_kv).collect(), more, revision })
    }

    /// Applies `ops` atomically if every guard holds; whether they did.
    pub fn txn(&self, guards: Vec<Guard>, ops: Vec<Op>) -> Result<bool> {
        Ok(self.txn_at(guards, ops)?.is_some())
    }

    /// As `txn`; the store's revision after it (None: a guard failed).
    pub fn txn_at(&self, guards: Vec<Guard>, ops: Vec<Op>) -> Result<Option<i64>> {
        let txn = Txn::new().when(compares(guards)).and_then(txn_ops(ops));
        let resp = self.run("transaction", || {
            let (mut kv, txn) = (kv(&self.client), txn.clone());
            async move { kv.txn(txn).await }
        })?;
        Ok(resp.succeeded().then(|| resp.header().map_or(0, |h| h.revision())))
    }

    /// As `txn_at`, and when a guard fails the keys of `[from, to)` as they
    /// are then, read in the same transaction: one round trip either way.
    pub fn txn_else_range(&self, guards: Vec<Guard>, ops: Vec<Op>, from: &[u8], to: &[u8]) -> Result<std::result::Result<i64, Page>> {
        let read = TxnOp::get(from, Some(GetOptions::new().with_range(to)));
        let txn = Txn::new().when(compares(guards)).and_then(txn_ops(ops)).or_else(vec![read]);
        let resp = self.run("transaction", || {
            let (mut kv, txn) = (kv(&self.client), txn.clone());
            async move { kv.txn(txn).await }
        })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            return Ok(Ok(revision));
        }
        match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(mut got)) => {
                let more = got.more();
                Ok(Err(Page { kvs: got.take_kvs().into_iter().map(into_kv).collect(), more, revision }))
            }
            _ => Err(Error::Corrupt("etcd answered a failed transaction without the range it asked for".into())),
        }
    }

    /// A new lease of `ttl` seconds.
    pub fn grant(&self, ttl: i64) -> Result<i64> {
        let resp = self.run("lease grant", || {
            let mut lease = self.client.lease_client();
            async move { lease.grant(ttl, None).await }
        })?;
        Ok(resp.id())
    }

    /// Ends a lease now (its keys go with it); best effort.
    pub fn revoke(&self, id: i64) {
        let revoked = self.run("lease revoke", || {
            let mut lease = self.client.lease_client();
            async move { lease.revoke(id).await }
        });
        if let Err(e) = revoked {
            tracing::warn!("{e} (the lease lapses by itself)");
        }
    }

    /// Keeps lease `id` (of `ttl` seconds) alive in the background. Once a
    /// renewal fails for longer than the lease lasts, or etcd says the lease
    /// is gone, `state.lost` is set for good: from then on another host may
    /// hold what the lease held.
    pub fn keep_alive(&self, id: i64, ttl: Duration, state: Arc<LeaseState>) -> Background {
        let client = self.client.clone();
        let task = self.rt.spawn(async move {
            let every = ttl / 4;
            let mut session = None;
            let mut pause = every;
            loop {
                tokio::time::sleep(pause).await;
                if session.is_none() {
                    session = client.lease_client().keep_alive(id).await.ok();
                }
                // Before the request: etcd restarts the lease's time when it
                // gets the request, so the lease lasts at least `ttl` from here.
                let sent = Instant::now();
                let ok = match session.as_mut() {
                    Some((keeper, stream)) => match keeper.keep_alive().await {
                        Ok(()) => match tokio::time::timeout(every, stream.message()).await {
                            Ok(Ok(Some(resp))) if resp.ttl() > 0 => true,
                            Ok(Ok(Some(_))) => {
                                tracing::error!("etcd: this host's lease {id:x} has expired");
                                state.lost.store(true, Ordering::SeqCst);
                                return;
                            }
                            _ => false,
                        },
                        Err(_) => false,
                    },
                    None => false,
                };
                // The lease alone does not prove the hold: an etcd writer
                // may have deleted the holder key, and another process
                // taken the vault under a lease of its own. Read after the
                // renewal, a key still created at our revision was ours
                // all along (a key made again gets a new creation revision).
                let ok = ok
                    && match state.hold.get() {
                        None => true,
                        Some((key, created)) => {
                            match tokio::time::timeout(every, kv(&client).get(key.clone(), None)).await {
                                Ok(Ok(resp)) => match resp.kvs().first() {
                                    Some(kv) if kv.create_revision() == *created => true,
                                    _ => {
                                        tracing::error!(
                                            "etcd: the vault's holder key was deleted or replaced \
                                             (not by this process): it no longer holds the vault"
                                        );
                                        state.lost.store(true, Ordering::SeqCst);
                                        return;
                                    }
                                },
                                _ => false,
                            }
                        }
                    };
                if ok {
                    state.renewed_at(sent);
                    pause = every;
                } else {
                    // The member this session went to may be down: a new
                    // session soon, through whichever member answers.
                    session = None;
                    pause = RESEND_AFTER * 4;
                    if !state.renewed_within(ttl) {
                        tracing::error!("etcd: could not renew this host's lease {id:x} for {} s", ttl.as_secs());
                        state.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        Background(task)
    }

    /// Watches every key under `prefix`, handing `news` each change, for as
    /// long as the returned task lives. A watch that breaks starts again
    /// from the revision of that moment (after a `Lost`, then a `From`).
    pub fn watch(&self, prefix: Vec<u8>, news: impl Fn(News) + Send + Sync + 'static) -> Background {
        let client = self.client.clone();
        let task = self.rt.spawn(async move {
            loop {
                let opened = async {
                    // The key `prefix` itself: a count of one key, whatever the vault holds.
                    let now = kv(&client).get(prefix.clone(), Some(GetOptions::new().with_count_only())).await?;
                    let from = now.header().map_or(0, |h| h.revision());
                    let options = WatchOptions::new().with_prefix().with_start_revision(from + 1);
                    // One response carries a whole commit's changes: up to
                    // the transaction size etcd is asked to allow (CLUSTER.md).
                    let mut watcher = client.watch_client().max_decoding_message_size(MESSAGE_BYTES);
                    let stream = watcher.watch(prefix.clone(), Some(options)).await?;
                    Ok::<_, etcd_client::Error>((from, stream))
                };
                match tokio::time::timeout(REQUEST_TIMEOUT, opened).await {
                    Ok(Ok((from, mut stream))) => {
                        news(News::From(from));
                        loop {
                            match stream.message().await {
                                Ok(Some(resp)) if resp.canceled() => {
                                    tracing::warn!("etcd: the watch of the vault was cancelled ({})", resp.cancel_reason());
                                    break;
                                }
                                Ok(Some(resp)) => {
                                    let events = resp.events();
                                    let Some(last) = events.iter().filter_map(|e| Some(e.kv()?.mod_revision())).max() else {
                                        continue;
                                    };
                                    let changes = events
                                        .iter()
                                        .filter_map(|e| {
                                            let kv = e.kv()?;
                                            let value = (e.event_type() == EventType::Put).then(|| kv.value().to_vec());
                                            Some((kv.key().to_vec(), value, kv.mod_revision()))
                                        })
                                        .collect();
                                    news(News::Changes(last, changes));
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!("etcd: the watch of the vault broke: {e}");
                                    break;
                                }
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("etcd: cannot watch the vault: {e}"),
                    Err(_) => tracing::warn!("etcd: cannot watch the vault: no answer in {} s", REQUEST_TIMEOUT.as_secs()),
                }
                news(News::Lost);
                tokio::time::sleep(RESEND_AFTER * 4).await;
            }
        });
        Background(task)
    }
}

/// Tests in this process only: as `VAULTFS_TEST_HOLD_WATCH` (set once).
#[cfg(feature = "internals")]
pub static HOLD_WATCH_WHILE: OnceLock<std::path::PathBuf> = OnceLock::new();

/// Tests only: while the file `VAULTFS_TEST_HOLD_WATCH` names exists, a
/// reader's watch hands on nothing (its memory goes stale, as behind an
/// etcd slow to deliver), so that a test can make the races the mount must
/// survive. Called from the watch's task: the wait moves the runtime's
/// other work to another thread.
#[cfg(feature = "internals")]
pub fn hold_back_for_tests() {
    let named = std::env::var_os("VAULTFS_TEST_HOLD_WATCH").map(std::path::PathBuf::from);
    let Some(path) = named.or_else(|| HOLD_WATCH_WHILE.get().cloned()) else { return };
    if path.exists() {
        tokio::task::block_in_place(|| {
            while path.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
}

/// A client of etcd's key-value service that takes responses up to
/// MESSAGE_BYTES.
fn kv(client: &Client) -> etcd_client::KvClient {
    client.kv_client().max_decoding_message_size(MESSAGE_BYTES)
}

/// What this process knows of its lease, shared by the store and the task
/// that renews it.
pub struct LeaseState {
    base: Instant,
    /// When the last answered renewal (or the grant) was sent, in ms after `base`.
    renewed_ms: AtomicU64,
    /// Set for good once the lease may have lapsed.
    pub lost: AtomicBool,
    /// The key held under the lease and its creation revision: each
    /// renewal counts only once this key is read back unchanged.
    hold: OnceLock<(Vec<u8>, i64)>,
}

impl LeaseState {
    /// For a lease about to be granted: its time counts from now.
    pub fn new() -> Arc<LeaseState> {
        Arc::new(LeaseState {
            base: Instant::now(),
            renewed_ms: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            hold: OnceLock::new(),
        })
    }

    /// From now on, renewals also check that `key` is still the one created
    /// at revision `created` (the holder key this lease took).
    pub fn holding(&self, key: Vec<u8>, created: i64) {
        let _ = self.hold.set((key, created));
    }

    fn renewed_at(&self, sent: Instant) {
        let ms = sent.saturating_duration_since(self.base).as_millis() as u64;
        self.renewed_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// The lease is not lost, and was renewed less than `within` ago: etcd
    /// cannot have let it lapse in between, so no other process can have
    /// taken what it holds.
    pub fn renewed_within(&self, within: Duration) -> bool {
        let since = (self.base.elapsed().as_millis() as u64).saturating_sub(self.renewed_ms.load(Ordering::SeqCst));
        !self.lost.load(Ordering::SeqCst) && since < within.as_millis() as u64
    }
}

/// A task on the client's runtime (a lease renewal, a watch); stops when dropped.
pub struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn compares(guards: Vec<Guard>) -> Vec<Compare> {
    guards
        .into_iter()
        .map(|g| match g {
            Guard::Created(k, rev) => Compare::create_revision(k, CompareOp::Equal, rev),
            Guard::Modified(k, rev) => Compare::mod_revision(k, CompareOp::Equal, rev),
            Guard::NoneCreatedBefore(from, to, rev) => {
                Compare::create_revision(from, CompareOp::Greater, rev - 1).with_range(to)
            }
        })
        .collect()
}

fn txn_ops(ops: Vec<Op>) -> Vec<TxnOp> {
    ops.into_iter()
        .map(|o| match o {
            Op::Put(k, v) => TxnOp::put(k, v, None),
            Op::PutLeased(k, v, lease) => TxnOp::put(k, v, Some(PutOptions::new().with_lease(lease))),
            Op::Delete(k) => TxnOp::delete(k, None),
            Op::DeletePrefix(k) => TxnOp::delete(k, Some(DeleteOptions::new().with_prefix())),
            Op::Touch(k) => TxnOp::put(k, Vec::new(), Some(PutOptions::new().with_ignore_value().with_ignore_lease())),
        })
        .collect()
}

fn into_kv(kv: etcd_client::KeyValue) -> Kv {
    let (create_revision, mod_revision, lease) = (kv.create_revision(), kv.mod_revision(), kv.lease());
    let (key, value) = kv.into_key_value();
    Kv { key, value, create_revision, mod_revision, lease }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn access(vars: &[(&str, &Path)]) -> Result<Access> {
        let vars: HashMap<String, PathBuf> = vars.iter().map(|(k, v)| (k.to_string(), v.to_path_buf())).collect();
        Access::from(|name| vars.get(name).cloned())
    }

    fn message(r: Result<Access>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn nothing_set_is_plain_and_anonymous() {
        let a = access(&[]).unwrap();
        assert!(a.tls.is_none() && a.user.is_none());
    }

    #[test]
    fn halves_of_a_setting_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x\n").unwrap();
        assert!(message(access(&[(ENV_CERT, &f), (ENV_KEY, &f)])).contains(ENV_CA));
        assert!(message(access(&[(ENV_CA, &f), (ENV_CERT, &f)])).contains("go together"));
        assert!(message(access(&[(ENV_USER, Path::new("agent"))])).contains(ENV_PASSWORD_FILE));
        assert!(message(access(&[(ENV_PASSWORD_FILE, &f)])).contains(ENV_USER));
    }

    #[test]
    fn files_must_be_absolute_readable_and_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let user = Path::new("agent");
        assert!(message(access(&[(ENV_CA, Path::new("ca.pem"))])).contains("not an absolute path"));
        assert!(message(access(&[(ENV_CA, &dir.path().join("none"))])).contains("none"));
        assert!(message(access(&[(ENV_USER, user), (ENV_PASSWORD_FILE, &empty)])).contains("is empty"));
    }

    #[test]
    fn the_password_is_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret pass\nignored\n").unwrap();
        let a = access(&[(ENV_USER, Path::new("agent")), (ENV_PASSWORD_FILE, &f)]).unwrap();
        let (user, password) = a.user.unwrap();
        assert_eq!((user.as_str(), password.as_str()), ("agent", "s3cret pass"));
    }

    /// An error wrapping another, as tonic's status wraps the transport's.
    #[derive(Debug)]
    struct Wrapped(Box<dyn std::error::Error + 'static>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_broken_connection_anywhere_in_the_chain_is_resent() {
        let socket = |kind| std::io::Error::new(kind, "stream closed");
        let deep = Wrapped(Box::new(Wrapped(Box::new(socket(std::io::ErrorKind::BrokenPipe)))));
        assert!(connection_lost(&deep));
        assert!(connection_lost(&Wrapped(Box::new(socket(std::io::ErrorKind::ConnectionReset)))));
        // An answer of etcd's, or a socket error that is not a lost connection.
        assert!(!connection_lost(&Wrapped(Box::new(socket(std::io::ErrorKind::PermissionDenied)))));
        assert!(!connection_lost(&socket(std::io::ErrorKind::BrokenPipe)), "only what lies under the error");
    }
}
