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

/// Reconciliations, errors and durations per controller, plus leadership.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconciliations: Family<ControllerLabel, Counter>,
    pub errors: Family<ControllerLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub leader: Gauge,
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
        Self {
            registry: Mutex::new(registry),
            reconciliations,
            errors,
            duration,
            leader,
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
