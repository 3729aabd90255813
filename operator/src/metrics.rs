//! Prometheus metrics of the controllers.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

/// One broker of one cluster (`namespace/name`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabel {
    pub cluster: String,
    pub broker: String,
    pub zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Reconciliations, errors and durations per controller, plus leadership.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconciliations: Family<ControllerLabel, Counter>,
    pub errors: Family<ControllerLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub leader: Gauge,
    pub storage_requested: Family<BrokerLabel, Gauge>,
    pub storage_capacity: Family<BrokerLabel, Gauge>,
    pub storage_used: Family<BrokerLabel, Gauge>,
    pub storage_total: Family<BrokerLabel, Gauge>,
    /// Utilization in per-mille (integer gauges): 613 = 61.3 %.
    pub storage_utilization: Family<BrokerLabel, Gauge>,
    pub storage_scales: Family<ReasonLabel, Counter>,
    pub storage_refusals: Counter,
    pub storage_resize_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rivulet_operator");
        let reconciliations = Family::<ControllerLabel, Counter>::default();
        let errors = Family::<ControllerLabel, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0])
        });
        let leader = Gauge::default();
        registry.register(
            "reconciliations",
            "Reconciliations run",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let storage_requested = Family::<BrokerLabel, Gauge>::default();
        let storage_capacity = Family::<BrokerLabel, Gauge>::default();
        let storage_used = Family::<BrokerLabel, Gauge>::default();
        let storage_total = Family::<BrokerLabel, Gauge>::default();
        let storage_utilization = Family::<BrokerLabel, Gauge>::default();
        let storage_scales = Family::<ReasonLabel, Counter>::default();
        let storage_refusals = Counter::default();
        let storage_resize_seconds =
            Histogram::new([5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0]);
        for (name, help, fam) in [
            (
                "storage_requested_bytes",
                "Size requested on each broker's claim",
                &storage_requested,
            ),
            (
                "storage_capacity_bytes",
                "Capacity each broker's volume reports",
                &storage_capacity,
            ),
            (
                "storage_used_bytes",
                "Bytes used on each broker's log-dir filesystem",
                &storage_used,
            ),
            (
                "storage_total_bytes",
                "Size of each broker's log-dir filesystem",
                &storage_total,
            ),
            (
                "storage_utilization_permille",
                "Used over total bytes, per mille",
                &storage_utilization,
            ),
        ] {
            registry.register(name, help, fam.clone());
        }
        registry.register(
            "storage_scales",
            "Broker volume growths, by reason",
            storage_scales.clone(),
        );
        registry.register(
            "storage_autoscaling_refusals",
            "Times autoscaling became refused (missing class, no expansion, maxSize)",
            storage_refusals.clone(),
        );
        registry.register(
            "storage_resize_seconds",
            "Time from asking a resize to the volume reporting the capacity",
            storage_resize_seconds.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reconciliations,
            errors,
            duration,
            leader,
            storage_requested,
            storage_capacity,
            storage_used,
            storage_total,
            storage_utilization,
            storage_scales,
            storage_refusals,
            storage_resize_seconds,
        }
    }
}

impl Metrics {
    fn label(controller: &str) -> ControllerLabel {
        ControllerLabel {
            controller: controller.to_string(),
        }
    }

    /// Records one reconciliation.
    pub fn observe(&self, controller: &str, seconds: f64, failed: bool) {
        let l = Self::label(controller);
        self.reconciliations.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(seconds);
        if failed {
            self.errors.get_or_create(&l).inc();
        }
    }

    /// Records one broker's storage figures.
    pub fn storage_broker(
        &self,
        cluster: &str,
        id: i32,
        st: &crate::crd::BrokerStatus,
        requested: u64,
        capacity: Option<u64>,
    ) {
        let l = BrokerLabel {
            cluster: cluster.to_string(),
            broker: id.to_string(),
            zone: st.zone.clone(),
        };
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.storage_requested
            .get_or_create(&l)
            .set(clamp(requested));
        if let Some(c) = capacity {
            self.storage_capacity.get_or_create(&l).set(clamp(c));
        }
        if let Some(u) = st.storage_used_bytes {
            self.storage_used.get_or_create(&l).set(u);
        }
        if let Some(t) = st.storage_total_bytes {
            self.storage_total.get_or_create(&l).set(t);
        }
        if let Some(p) = st.utilization_percent {
            self.storage_utilization
                .get_or_create(&l)
                .set((p * 10.0).round() as i64);
        }
    }

    /// Counts one growth.
    pub fn storage_scale(&self, reason: &str) {
        self.storage_scales
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a change into the refused state.
    pub fn storage_refused(&self, refused: bool) {
        if refused {
            self.storage_refusals.inc();
        }
    }

    /// Text exposition for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}
