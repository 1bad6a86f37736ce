//! What a mounted vault counts, for monitoring (docs/ADMIN.md, "Metrics and
//! health"): operations by kind and result, request latencies, bytes in and
//! out, garbage collection; and, asked for when a scrape comes, the figures
//! of the vault itself (`Figures`). Rendered in the OpenMetrics text format,
//! which Prometheus reads. This module owns prometheus-client; it knows no
//! vault type, so every layer above may count into it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Requests whose latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timed {
    Read,
    Write,
    Open,
    Create,
}

impl Timed {
    fn name(self) -> &'static str {
        match self {
            Timed::Read => "read",
            Timed::Write => "write",
            Timed::Open => "open",
            Timed::Create => "create",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    level: String,
}

/// The vault's own figures at one instant (filled by the vault when a
/// scrape or a read of `.stats` asks).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Leaves in the audit log.
    pub audit_leaves: u64,
    /// Seconds since the last signed checkpoint (none yet: None).
    pub checkpoint_age: Option<f64>,
    /// Opens waiting for a human's approval.
    pub pending_approvals: u64,
    /// Per level 0..=5: open (true) or locked.
    pub levels_open: [bool; 6],
    pub lockdown: bool,
    /// Bytes of the store directory on disk (sled and segment files).
    pub store_bytes: u64,
    /// Segment files, their bytes, and the dead bytes known in them.
    pub segments: u64,
    pub segment_bytes: u64,
    pub segment_dead_bytes: u64,
    /// The daemon's resident memory, and the store's page cache capacity
    /// as the memory governor has it now (0: a cluster store).
    pub resident_bytes: u64,
    pub page_cache_bytes: u64,
}

/// The counters of one mounted vault. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    ops: Family<OpLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    bytes_read: Counter,
    bytes_written: Counter,
    gc_segments: Counter,
    gc_moved: Counter,
    gc_freed: Counter,
    audit_leaves: Gauge,
    checkpoint_age: Gauge<f64, AtomicU64>,
    pending: Gauge,
    level_open: Family<LevelLabels, Gauge>,
    lockdown: Gauge,
    store_bytes: Gauge,
    segments: Gauge,
    segment_bytes: Gauge,
    segment_dead: Gauge,
    resident: Gauge,
    page_cache: Gauge,
    started: Instant,
    uptime: Gauge<f64, AtomicU64>,
}

/// Latency buckets: 10 µs to about 5 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vaultfs");
        let m = Metrics {
            ops: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            bytes_read: Counter::default(),
            bytes_written: Counter::default(),
            gc_segments: Counter::default(),
            gc_moved: Counter::default(),
            gc_freed: Counter::default(),
            audit_leaves: Gauge::default(),
            checkpoint_age: Gauge::default(),
            pending: Gauge::default(),
            level_open: Family::default(),
            lockdown: Gauge::default(),
            store_bytes: Gauge::default(),
            segments: Gauge::default(),
            segment_bytes: Gauge::default(),
            segment_dead: Gauge::default(),
            resident: Gauge::default(),
            page_cache: Gauge::default(),
            started: Instant::now(),
            uptime: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "operations",
            "Accesses recorded in the audit log, by operation and result",
            m.ops.clone(),
        );
        r.register("request_duration_seconds", "Time to answer a FUSE request", m.latency.clone());
        r.register("read_bytes", "Bytes read through the mount", m.bytes_read.clone());
        r.register("written_bytes", "Bytes written through the mount", m.bytes_written.clone());
        r.register("gc_segments", "Segment files collected", m.gc_segments.clone());
        r.register("gc_moved_records", "Live block records moved by collection", m.gc_moved.clone());
        r.register("gc_freed_bytes", "Bytes freed by collection", m.gc_freed.clone());
        r.register("audit_leaves", "Leaves in the audit log", m.audit_leaves.clone());
        r.register(
            "audit_checkpoint_age_seconds",
            "Seconds since the newest signed checkpoint",
            m.checkpoint_age.clone(),
        );
        r.register("pending_approvals", "Opens waiting for a human's approval", m.pending.clone());
        r.register("level_open", "1 while a classification level is open", m.level_open.clone());
        r.register("lockdown", "1 while lockdown is on", m.lockdown.clone());
        r.register("store_bytes", "Bytes of the store directory on disk", m.store_bytes.clone());
        r.register("segments", "Segment files holding content blocks", m.segments.clone());
        r.register("segment_bytes", "Bytes of the segment files", m.segment_bytes.clone());
        r.register(
            "segment_dead_bytes",
            "Bytes of dead records known in segment files",
            m.segment_dead.clone(),
        );
        r.register("resident_bytes", "Resident memory of the mount's daemon", m.resident.clone());
        r.register(
            "page_cache_bytes",
            "Capacity of the store's page cache now (lowered near the memory ceiling)",
            m.page_cache.clone(),
        );
        r.register("uptime_seconds", "Seconds since the vault was mounted", m.uptime.clone());
        Metrics { registry, ..m }
    }

    /// One access recorded in the audit log (`op` as in `.audit`, `errno` 0 for success).
    pub fn count_op(&self, op: &'static str, errno: i32) {
        self.ops.get_or_create(&OpLabels { op, result: errno_name(errno) }).inc();
    }

    /// Measures a request until the returned guard is dropped.
    pub fn time(self: &Arc<Self>, request: Timed) -> Timing {
        Timing { metrics: Arc::clone(self), request, start: Instant::now() }
    }

    pub fn observe(&self, request: Timed, took: Duration) {
        self.latency.get_or_create(&RequestLabels { request: request.name() }).observe(took.as_secs_f64());
    }

    pub fn add_read(&self, bytes: u64) {
        self.bytes_read.inc_by(bytes);
    }

    pub fn add_written(&self, bytes: u64) {
        self.bytes_written.inc_by(bytes);
    }

    /// One segment collected: records moved, bytes freed.
    pub fn collected(&self, moved: u64, freed: u64) {
        self.gc_segments.inc();
        self.gc_moved.inc_by(moved);
        self.gc_freed.inc_by(freed);
    }

    /// Everything, with the vault's `figures` of now, as OpenMetrics text.
    pub fn render(&self, f: &Figures) -> String {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.audit_leaves.set(clamp(f.audit_leaves));
        self.checkpoint_age.set(f.checkpoint_age.unwrap_or(f64::NAN));
        self.pending.set(clamp(f.pending_approvals));
        for (level, open) in f.levels_open.iter().enumerate() {
            self.level_open.get_or_create(&LevelLabels { level: level.to_string() }).set(i64::from(*open));
        }
        self.lockdown.set(i64::from(f.lockdown));
        self.store_bytes.set(clamp(f.store_bytes));
        self.segments.set(clamp(f.segments));
        self.segment_bytes.set(clamp(f.segment_bytes));
        self.segment_dead.set(clamp(f.segment_dead_bytes));
        self.resident.set(clamp(f.resident_bytes));
        self.page_cache.set(clamp(f.page_cache_bytes));
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A request being measured; its time is observed when dropped.
pub struct Timing {
    metrics: Arc<Metrics>,
    request: Timed,
    start: Instant,
}

impl Drop for Timing {
    fn drop(&mut self) {
        self.metrics.observe(self.request, self.start.elapsed());
    }
}

/// "ok", or the errno's symbolic name (a bounded set of label values).
fn errno_name(errno: i32) -> String {
    let name = match errno {
        0 => "ok",
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        7 => "E2BIG",
        9 => "EBADF",
        11 => "EAGAIN",
        13 => "EACCES",
        17 => "EEXIST",
        18 => "EXDEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        36 => "ENAMETOOLONG",
        39 => "ENOTEMPTY",
        61 => "ENODATA",
        95 => "EOPNOTSUPP",
        _ => "other",
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_figures() {
        let m = Arc::new(Metrics::new());
        m.count_op("write", 0);
        m.count_op("write", 0);
        m.count_op("open", 13);
        m.count_op("open", 4242);
        drop(m.time(Timed::Read));
        m.observe(Timed::Write, Duration::from_millis(3));
        m.add_read(4096);
        m.collected(10, 1 << 20);
        let mut f = Figures { audit_leaves: 42, checkpoint_age: Some(0.5), ..Figures::default() };
        f.levels_open[1] = true;
        let text = m.render(&f);
        for want in [
            "vaultfs_operations_total{op=\"write\",result=\"ok\"} 2",
            "vaultfs_operations_total{op=\"open\",result=\"EACCES\"} 1",
            "vaultfs_operations_total{op=\"open\",result=\"other\"} 1",
            "vaultfs_request_duration_seconds_count{request=\"read\"} 1",
            "vaultfs_request_duration_seconds_bucket{le=\"0.00512\",request=\"write\"} 1",
            "vaultfs_read_bytes_total 4096",
            "vaultfs_gc_freed_bytes_total 1048576",
            "vaultfs_audit_leaves 42",
            "vaultfs_audit_checkpoint_age_seconds 0.5",
            "vaultfs_level_open{level=\"1\"} 1",
            "vaultfs_level_open{level=\"4\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
