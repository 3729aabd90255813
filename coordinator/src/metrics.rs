//! Prometheus metrics served on the admin port.

use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Vec<(String, String)>, Counter>,
    pub request_errors: Counter,
    pub bad_frames: Counter,
    pub latency: Histogram,
    pub fsync_latency: Histogram,
    pub fsync_batch: Histogram,
    pub connections: Gauge,
    pub sessions: Gauge,
    pub znodes: Gauge,
    pub watches: Gauge,
    pub ephemerals: Gauge,
    pub last_zxid: Gauge<i64, AtomicI64>,
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("rivulet_coordinator");
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        registry.register("requests", "Client requests by op", requests.clone());
        let request_errors = Counter::default();
        registry.register(
            "request_errors",
            "Requests answered with a ZooKeeper error code",
            request_errors.clone(),
        );
        let bad_frames = Counter::default();
        registry.register(
            "bad_frames",
            "Connections closed for malformed, truncated or oversized frames",
            bad_frames.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "request_latency_seconds",
            "Time from request decode to reply (including fsync for writes)",
            latency.clone(),
        );
        let fsync_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "fsync_latency_seconds",
            "Transaction log write+fsync time per batch",
            fsync_latency.clone(),
        );
        let fsync_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "fsync_batch_txns",
            "Transactions made durable per fsync (group commit)",
            fsync_batch.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions", "Live sessions", sessions.clone());
        let znodes = Gauge::default();
        registry.register("znodes", "Nodes in the tree", znodes.clone());
        let watches = Gauge::default();
        registry.register("watches", "Registered watches", watches.clone());
        let ephemerals = Gauge::default();
        registry.register("ephemerals", "Ephemeral nodes", ephemerals.clone());
        let last_zxid = Gauge::<i64, AtomicI64>::default();
        registry.register("last_zxid", "Last applied zxid", last_zxid.clone());
        Arc::new(Metrics {
            registry,
            requests,
            request_errors,
            bad_frames,
            latency,
            fsync_latency,
            fsync_batch,
            connections,
            sessions,
            znodes,
            watches,
            ephemerals,
            last_zxid,
            ready: AtomicBool::new(false),
        })
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}
