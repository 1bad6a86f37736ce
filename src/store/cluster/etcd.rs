//! The etcd client: the only user of etcd-client and of tokio. The store is
//! synchronous (FUSE threads call it), so each call blocks on a small
//! runtime of its own; the runtime also keeps the holder's lease alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};

use crate::store::{Error, Result};

/// A request that gets no answer within this fails (EIO to the caller),
/// so that a lost etcd never hangs a FUSE thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
pub enum Guard {
    /// The key was created at this revision (0: the key does not exist).
    Created(Vec<u8>, i64),
    /// The key was last changed at this revision (0: it does not exist).
    Modified(Vec<u8>, i64),
}

/// A write of a transaction.
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    /// A put bound to a lease: the key goes when the lease does.
    PutLeased(Vec<u8>, Vec<u8>, i64),
    Delete(Vec<u8>),
}

/// Pause before a request that never left is sent again.
const RESEND_AFTER: Duration = Duration::from_millis(50);

/// Whether etcd could not take the request now: the member was
/// unreachable, or has no leader. (Not a timeout: the request may still be
/// in flight.)
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => format!("{:?}", status.code()) == "Unavailable",
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

fn io(what: &str, e: etcd_client::Error) -> Error {
    Error::Io(format!("etcd {what}: {e}"))
}

/// A connection to an etcd cluster.
pub struct Etcd {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Etcd {
    pub fn connect(endpoints: &[String]) -> Result<Etcd> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Io(format!("cannot start the etcd client's runtime: {e}")))?;
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
        let client = rt
            .block_on(Client::connect(&urls, Some(options)))
            .map_err(|e| Error::Io(format!("cannot reach etcd at {}: {e}", endpoints.join(","))))?;
        Ok(Etcd { rt, client })
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
        loop {
            let r = match self.rt.block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, request()).await }) {
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

    pub fn get(&self, key: &[u8]) -> Result<Option<Kv>> {
        let mut resp = self.run("get", || {
            let mut kv = self.client.kv_client();
            async move { kv.get(key, None).await }
        })?;
        Ok(resp.take_kvs().into_iter().next().map(into_kv))
    }

    /// Up to `limit` keys of `[from, to)` in key order (descending: the
    /// greatest first), at `revision` (0: the newest).
    pub fn range(&self, from: &[u8], to: &[u8], limit: i64, revision: i64, descending: bool, keys_only: bool) -> Result<Page> {
        let mut options = GetOptions::new().with_range(to).with_limit(limit).with_revision(revision);
        if descending {
            options = options.with_sort(SortTarget::Key, SortOrder::Descend);
        }
        if keys_only {
            options = options.with_keys_only();
        }
        let mut resp = self.run("range", || {
            let (mut kv, options) = (self.client.kv_client(), options.clone());
            async move { kv.get(from, Some(options)).await }
        })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let more = resp.more();
        Ok(Page { kvs: resp.take_kvs().into_iter().map(into_kv).collect(), more, revision })
    }

    /// Applies `ops` atomically if every guard holds; whether they did.
    pub fn txn(&self, guards: Vec<Guard>, ops: Vec<Op>) -> Result<bool> {
        let compares: Vec<Compare> = guards
            .into_iter()
            .map(|g| match g {
                Guard::Created(k, rev) => Compare::create_revision(k, CompareOp::Equal, rev),
                Guard::Modified(k, rev) => Compare::mod_revision(k, CompareOp::Equal, rev),
            })
            .collect();
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|o| match o {
                Op::Put(k, v) => TxnOp::put(k, v, None),
                Op::PutLeased(k, v, lease) => TxnOp::put(k, v, Some(PutOptions::new().with_lease(lease))),
                Op::Delete(k) => TxnOp::delete(k, None),
            })
            .collect();
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = self.run("transaction", || {
            let (mut kv, txn) = (self.client.kv_client(), txn.clone());
            async move { kv.txn(txn).await }
        })?;
        Ok(resp.succeeded())
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
    /// is gone, `lost` is set for good: from then on another host may hold
    /// what the lease held.
    pub fn keep_alive(&self, id: i64, ttl: Duration, lost: Arc<AtomicBool>) -> KeepAlive {
        let client = self.client.clone();
        let task = self.rt.spawn(async move {
            let every = ttl / 4;
            let mut renewed = Instant::now();
            let mut session = None;
            let mut pause = every;
            loop {
                tokio::time::sleep(pause).await;
                if session.is_none() {
                    session = client.lease_client().keep_alive(id).await.ok();
                }
                let ok = match session.as_mut() {
                    Some((keeper, stream)) => match keeper.keep_alive().await {
                        Ok(()) => match tokio::time::timeout(every, stream.message()).await {
                            Ok(Ok(Some(resp))) if resp.ttl() > 0 => true,
                            Ok(Ok(Some(_))) => {
                                tracing::error!("etcd: this host's lease {id:x} has expired");
                                lost.store(true, Ordering::SeqCst);
                                return;
                            }
                            _ => false,
                        },
                        Err(_) => false,
                    },
                    None => false,
                };
                if ok {
                    renewed = Instant::now();
                    pause = every;
                } else {
                    // The member this session went to may be down: a new
                    // session soon, through whichever member answers.
                    session = None;
                    pause = RESEND_AFTER * 4;
                    if renewed.elapsed() >= ttl {
                        tracing::error!("etcd: could not renew this host's lease {id:x} for {} s", ttl.as_secs());
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        KeepAlive(task)
    }
}

/// The background renewal of a lease; stops when dropped.
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn into_kv(kv: etcd_client::KeyValue) -> Kv {
    let (create_revision, mod_revision, lease) = (kv.create_revision(), kv.mod_revision(), kv.lease());
    let (key, value) = kv.into_key_value();
    Kv { key, value, create_revision, mod_revision, lease }
}
