//! What every reconcile needs: a client, an Event recorder, metrics, and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::warn;

use crate::metrics::Metrics;

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "rivulet-operator";

pub struct Ctx {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Image of broker and coordinator pods unless a cluster names one.
    pub broker_image: String,
    /// Reads brokers' log-dir capacity for the storage autoscaler.
    pub log_dirs: crate::storage::reconcile::LogDirReader,
    /// The storage autoscaler's memory between reconciles.
    pub storage: Mutex<crate::storage::reconcile::StorageMemory>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Ctx {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self::build(client, metrics))
    }

    /// A context not yet shared, for callers that set more fields.
    pub fn build(client: Client, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            broker_image: crate::builders::DEFAULT_BROKER_IMAGE.to_string(),
            log_dirs: Default::default(),
            storage: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.event_about(obj, warning, reason, action, note, None)
            .await
    }

    /// Like [`Ctx::event`], naming a secondary object (the one created, updated or deleted).
    pub async fn event_about<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
        secondary: Option<ObjectReference>,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "publishing event failed");
        }
    }

    /// Exponential backoff per object: 5s, 10s, 20s ... capped at 5 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        Duration::from_secs((5u64 << (*n - 1).min(6)).min(300))
    }

    /// Clears an object's backoff after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}
