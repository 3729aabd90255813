//! Prometheus metrics (prometheus-client), served on the admin port at /metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabel {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabel {
    pub topic: String,
    pub partition: String,
    pub replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Why a leader was elected, as `rivulet_controller_leader_elections_total{reason}` counts it.
pub const ELECTION_REASONS: [&str; 5] = [
    "clean",
    "unclean",
    "controlled_shutdown",
    "preferred",
    "reassignment",
];

/// The controller's figures (Kafka's ActiveControllerCount, OfflinePartitionsCount, leader
/// election rates). Clones share the values: the broker registers one and hands a clone to its
/// controller task; a default one (tests) is simply not exported.
#[derive(Clone, Debug, Default)]
pub struct ControllerMetrics {
    active: Gauge,
    epoch: Gauge,
    offline_partitions: Gauge,
    leader_elections: Family<ReasonLabel, Counter>,
}

impl ControllerMetrics {
    /// This broker won the election with `epoch`.
    pub fn elected(&self, epoch: i32) {
        self.epoch.set(epoch.into());
        self.active.set(1);
    }

    /// This broker stopped acting as controller (stop, deposed, session lost): its figures no
    /// longer describe the cluster.
    pub fn resigned(&self) {
        self.active.set(0);
        self.epoch.set(0);
        self.offline_partitions.set(0);
    }

    pub fn set_offline_partitions(&self, n: usize) {
        self.offline_partitions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A leader was elected for one partition; `reason` is one of [`ELECTION_REASONS`].
    pub fn leader_elected(&self, reason: &'static str) {
        self.leader_elections
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn is_active(&self) -> bool {
        self.active.get() == 1
    }

    pub fn epoch(&self) -> i64 {
        self.epoch.get()
    }

    pub fn offline_partitions(&self) -> i64 {
        self.offline_partitions.get()
    }

    pub fn elections(&self, reason: &'static str) -> u64 {
        self.leader_elections
            .get_or_create(&ReasonLabel { reason })
            .get()
    }
}

/// One hosted partition's replication figures, for [`Metrics::set_replication`].
pub struct ReplicationRow {
    pub topic: String,
    pub partition: i32,
    pub high_watermark: i64,
    /// Leader only: (follower id, leader log end minus the follower's fetch offset).
    pub follower_lags: Vec<(i32, i64)>,
}

type HistogramFamily = Family<ApiLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabel, Counter>,
    latency: HistogramFamily,
    bytes_in: Family<TopicLabel, Counter>,
    bytes_out: Family<TopicLabel, Counter>,
    messages_in: Family<TopicLabel, Counter>,
    connection_errors: Family<KindLabel, Counter>,
    auth_failed: Family<KindLabel, Counter>,
    auth_succeeded: Family<KindLabel, Counter>,
    corrupt_batches: Counter,
    connections: Gauge,
    partitions: Gauge,
    log_size: Family<PartitionLabel, Gauge>,
    log_end_offset: Family<PartitionLabel, Gauge>,
    log_dir_total: Gauge,
    log_dir_usable: Gauge,
    group_lag: Family<LagLabel, Gauge>,
    under_replicated: Gauge,
    isr_shrinks: Counter,
    isr_expands: Counter,
    high_watermark: Family<PartitionLabel, Gauge>,
    replica_lag: Family<ReplicaLabel, Gauge>,
    controller: ControllerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rivulet");
        let requests = Family::<ApiLabel, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let bytes_in = Family::<TopicLabel, Counter>::default();
        let bytes_out = Family::<TopicLabel, Counter>::default();
        let messages_in = Family::<TopicLabel, Counter>::default();
        let connection_errors = Family::<KindLabel, Counter>::default();
        let auth_failed = Family::<KindLabel, Counter>::default();
        let auth_succeeded = Family::<KindLabel, Counter>::default();
        let corrupt_batches = Counter::default();
        let connections = Gauge::default();
        let partitions = Gauge::default();
        let log_size = Family::<PartitionLabel, Gauge>::default();
        let log_end_offset = Family::<PartitionLabel, Gauge>::default();
        let log_dir_total = Gauge::default();
        let log_dir_usable = Gauge::default();
        let group_lag = Family::<LagLabel, Gauge>::default();
        let under_replicated = Gauge::default();
        let isr_shrinks = Counter::default();
        let isr_expands = Counter::default();
        let high_watermark = Family::<PartitionLabel, Gauge>::default();
        let replica_lag = Family::<ReplicaLabel, Gauge>::default();
        let controller = ControllerMetrics::default();
        for reason in ELECTION_REASONS {
            // Shown at 0 from the start, so that rates and alerts work before the first one.
            let _ = controller
                .leader_elections
                .get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "controller_active",
            "1 while this broker is the active controller (Kafka's ActiveControllerCount)",
            controller.active.clone(),
        );
        registry.register(
            "controller_epoch",
            "Controller epoch of this broker while it is the active controller, else 0",
            controller.epoch.clone(),
        );
        registry.register(
            "controller_offline_partitions",
            "Partitions without a live leader, counted by the active controller (0 elsewhere; Kafka's OfflinePartitionsCount)",
            controller.offline_partitions.clone(),
        );
        registry.register(
            "controller_leader_elections",
            "Leader elections made by this broker as controller, by reason: clean (from the ISR after a leader loss), unclean, controlled_shutdown, preferred",
            controller.leader_elections.clone(),
        );
        registry.register(
            "under_replicated_partitions",
            "Partitions led here whose ISR is smaller than their replica set (Kafka's UnderReplicatedPartitions)",
            under_replicated.clone(),
        );
        registry.register(
            "isr_shrinks",
            "ISR shrinks written by this broker as leader (Kafka's IsrShrinksPerSec)",
            isr_shrinks.clone(),
        );
        registry.register(
            "isr_expands",
            "ISR expansions written by this broker as leader (Kafka's IsrExpandsPerSec)",
            isr_expands.clone(),
        );
        registry.register(
            "high_watermark",
            "High watermark per hosted partition",
            high_watermark.clone(),
        );
        registry.register(
            "replica_lag_messages",
            "Leader's log end minus each follower's fetch offset, per partition led here",
            replica_lag.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "High watermark minus the group's committed offset, per partition",
            group_lag.clone(),
        );
        registry.register(
            "requests",
            "Kafka requests handled, by API",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to handle a request, by API",
            latency.clone(),
        );
        registry.register(
            "bytes_in",
            "Record bytes appended, by topic",
            bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Record bytes returned by Fetch, by topic",
            bytes_out.clone(),
        );
        registry.register(
            "messages_in",
            "Records appended, by topic",
            messages_in.clone(),
        );
        registry.register(
            "connection_errors",
            "Connections closed for bad input, by kind",
            connection_errors.clone(),
        );
        registry.register(
            "failed_authentication",
            "Failed SASL or TLS client authentications, by mechanism (Kafka's failed-authentication-total)",
            auth_failed.clone(),
        );
        registry.register(
            "successful_authentication",
            "Successful SASL authentications, by mechanism (Kafka's successful-authentication-total)",
            auth_succeeded.clone(),
        );
        registry.register(
            "corrupt_batches",
            "Produce batches rejected as corrupt",
            corrupt_batches.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "partitions",
            "Partitions hosted by this broker",
            partitions.clone(),
        );
        registry.register(
            "log_size_bytes",
            "Bytes on disk per partition",
            log_size.clone(),
        );
        registry.register(
            "log_end_offset",
            "Log end offset per partition",
            log_end_offset.clone(),
        );
        registry.register(
            "log_dir_total_bytes",
            "Size of the filesystem holding the data directory",
            log_dir_total.clone(),
        );
        registry.register(
            "log_dir_usable_bytes",
            "Free bytes on the filesystem holding the data directory",
            log_dir_usable.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            messages_in,
            connection_errors,
            auth_failed,
            auth_succeeded,
            corrupt_batches,
            connections,
            partitions,
            log_size,
            log_end_offset,
            log_dir_total,
            log_dir_usable,
            group_lag,
            under_replicated,
            isr_shrinks,
            isr_expands,
            high_watermark,
            replica_lag,
            controller,
        }
    }

    /// The controller's metrics, for the controller task of this broker.
    pub fn controller(&self) -> ControllerMetrics {
        self.controller.clone()
    }

    pub fn isr_shrink(&self) {
        self.isr_shrinks.inc();
    }

    pub fn isr_expand(&self) {
        self.isr_expands.inc();
    }

    /// Replication gauges: the under-replicated count, and per partition.
    pub fn set_replication(&self, under_replicated: i64, rows: &[ReplicationRow]) {
        self.under_replicated.set(under_replicated);
        self.high_watermark.clear();
        self.replica_lag.clear();
        for ReplicationRow {
            topic,
            partition: p,
            high_watermark: hw,
            follower_lags: lags,
        } in rows
        {
            let l = PartitionLabel {
                topic: topic.clone(),
                partition: p.to_string(),
            };
            self.high_watermark.get_or_create(&l).set(*hw);
            for (replica, lag) in lags {
                let l = ReplicaLabel {
                    topic: topic.clone(),
                    partition: p.to_string(),
                    replica: replica.to_string(),
                };
                self.replica_lag.get_or_create(&l).set(*lag);
            }
        }
    }

    pub fn request(&self, api: &'static str, seconds: f64) {
        let l = ApiLabel { api };
        self.requests.get_or_create(&l).inc();
        self.latency.get_or_create(&l).observe(seconds);
    }

    pub fn bytes_in(&self, topic: &str, n: u64) {
        self.bytes_in
            .get_or_create(&TopicLabel {
                topic: topic.to_string(),
            })
            .inc_by(n);
    }

    pub fn bytes_out(&self, topic: &str, n: u64) {
        if n > 0 {
            self.bytes_out
                .get_or_create(&TopicLabel {
                    topic: topic.to_string(),
                })
                .inc_by(n);
        }
    }

    pub fn messages_in(&self, topic: &str, n: u64) {
        self.messages_in
            .get_or_create(&TopicLabel {
                topic: topic.to_string(),
            })
            .inc_by(n);
    }

    pub fn connection_error(&self, kind: &str) {
        self.connection_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn authentication(&self, mechanism: &str, ok: bool) {
        let label = KindLabel {
            kind: mechanism.to_string(),
        };
        if ok {
            self.auth_succeeded.get_or_create(&label).inc();
        } else {
            self.auth_failed.get_or_create(&label).inc();
        }
    }

    pub fn corrupt_batch(&self) {
        self.corrupt_batches.inc();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn set_partitions(&self, n: i64) {
        self.partitions.set(n);
    }

    /// Refreshes the per-partition and disk gauges, then renders the text exposition format.
    /// `lags` holds (group, topic, partition, lag).
    pub fn render(
        &self,
        partitions: &[(String, i32, u64, i64)],
        disk: Option<(u64, u64)>,
        lags: &[(String, String, i32, i64)],
    ) -> String {
        self.group_lag.clear();
        for (group, topic, p, lag) in lags {
            let l = LagLabel {
                group: group.clone(),
                topic: topic.clone(),
                partition: p.to_string(),
            };
            self.group_lag.get_or_create(&l).set(*lag);
        }
        self.log_size.clear();
        self.log_end_offset.clear();
        for (topic, p, size, leo) in partitions {
            let l = PartitionLabel {
                topic: topic.clone(),
                partition: p.to_string(),
            };
            self.log_size.get_or_create(&l).set(*size as i64);
            self.log_end_offset.get_or_create(&l).set(*leo);
        }
        if let Some((total, usable)) = disk {
            self.log_dir_total.set(total as i64);
            self.log_dir_usable.set(usable as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_metrics_are_exported() {
        let m = Metrics::new();
        let out = m.render(&[], None, &[]);
        assert!(out.contains("rivulet_controller_active 0"), "{out}");
        for reason in ELECTION_REASONS {
            let line =
                format!("rivulet_controller_leader_elections_total{{reason=\"{reason}\"}} 0");
            assert!(out.contains(&line), "{line} missing: {out}");
        }
        let c = m.controller();
        c.elected(7);
        c.set_offline_partitions(2);
        c.leader_elected("unclean");
        let out = m.render(&[], None, &[]);
        assert!(out.contains("rivulet_controller_active 1"), "{out}");
        assert!(out.contains("rivulet_controller_epoch 7"), "{out}");
        assert!(
            out.contains("rivulet_controller_offline_partitions 2"),
            "{out}"
        );
        assert!(
            out.contains("rivulet_controller_leader_elections_total{reason=\"unclean\"} 1"),
            "{out}"
        );
        c.resigned();
        let out = m.render(&[], None, &[]);
        assert!(out.contains("rivulet_controller_active 0"), "{out}");
        assert!(
            out.contains("rivulet_controller_offline_partitions 0"),
            "{out}"
        );
        // Counters keep their totals.
        assert_eq!(c.elections("unclean"), 1);
    }
}
