//! The storage step of a KafkaCluster reconcile: measure each broker's log dir, decide
//! ([`super::decide`]), grow claims by patching `spec.resources.requests.storage`, and report
//! per-broker status, a `StorageAutoscaling` condition, Events and metrics.
//!
//! Growth never goes through the StatefulSet: its `volumeClaimTemplates` are immutable, so the
//! cluster controller recreates a StatefulSet whose template changed with orphan propagation
//! (pods keep running) — see `cluster_controller::recreate_for_claim_template`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use rivulet_admin_client::{AdminClient, ClientSecurity};
use serde_json::json;
use tracing::{info, warn};

use super::decide::{
    decide, default_horizon, fill_rate, to_quantity, utilization, BrokerInput, Decision,
    GrowReason, Hold, Policy, RefuseReason,
};
use crate::builders::{broker_headless_name, broker_sts_name, zone_first_id};
use crate::conditions::{get, set_condition};
use crate::context::Ctx;
use crate::crd::{AutoscalingMode, BrokerStatus, KafkaCluster, StorageAutoscaling};
use crate::quantity::{parse_bytes, parse_duration_secs};

/// Name of the condition that reports autoscaling's state.
pub const CONDITION: &str = "StorageAutoscaling";
/// Measurements kept per broker for the fill rate.
const SAMPLES: usize = 10;
/// Samples older than this are dropped: the rate follows the recent trend.
const SAMPLE_WINDOW_SECS: f64 = 3600.0;
const DEFAULT_IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// Reads a broker's log-dir capacity with DescribeLogDirs v4, asking the broker itself.
/// `hosts` maps a broker address to another one, like an /etc/hosts entry: empty in a cluster
/// (pod DNS resolves), filled by tests whose brokers run on loopback.
#[derive(Clone, Debug)]
pub struct LogDirReader {
    pub timeout: Duration,
    pub hosts: HashMap<String, String>,
}

impl Default for LogDirReader {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            hosts: HashMap::new(),
        }
    }
}

impl LogDirReader {
    /// (total, usable) bytes summed over the broker's log dirs.
    pub async fn read(
        &self,
        addr: &str,
        security: ClientSecurity,
    ) -> Result<(u64, u64), rivulet_admin_client::Error> {
        let addr = self.hosts.get(addr).map(String::as_str).unwrap_or(addr);
        let mut admin = AdminClient::connect_with(addr, self.timeout, security).await?;
        let dirs = admin.describe_own_log_dirs().await?;
        let total = dirs.iter().map(|d| d.total_bytes.max(0) as u64).sum();
        let usable = dirs.iter().map(|d| d.usable_bytes.max(0) as u64).sum();
        Ok((total, usable))
    }
}

/// What the autoscaler remembers between reconciles (lost on restart, rebuilt in minutes):
/// recent measurements for fill rates, when each resize was asked, the longest resize seen.
#[derive(Default)]
pub struct StorageMemory {
    samples: HashMap<String, VecDeque<(f64, u64)>>,
    resize_started: HashMap<String, f64>,
    longest_resize: Option<Duration>,
    last_check: HashMap<String, f64>,
}

impl StorageMemory {
    /// The longest resize observed (ask → capacity reached), the predictive horizon's base.
    pub fn longest_resize(&self) -> Option<Duration> {
        self.longest_resize
    }
}

/// Why autoscaling can't act, as the condition's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    StorageClassMissing(String),
    ExpansionNotAllowed(String),
    MaxSizeReached(Vec<i32>),
    ResizeRejected(String),
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::StorageClassMissing(_) => "StorageClassMissing",
            Refusal::ExpansionNotAllowed(_) => "ExpansionNotAllowed",
            Refusal::MaxSizeReached(_) => "MaxSizeReached",
            Refusal::ResizeRejected(_) => "ResizeRejected",
        }
    }
    fn message(&self) -> String {
        match self {
            Refusal::StorageClassMissing(c) => {
                format!("StorageClass {c:?} does not exist; broker volumes can't grow")
            }
            Refusal::ExpansionNotAllowed(c) => format!(
                "StorageClass {c:?} does not set allowVolumeExpansion: true; broker volumes can't grow"
            ),
            Refusal::MaxSizeReached(ids) => format!(
                "broker(s) {ids:?} are above the target utilization at maxSize; raise maxSize or add brokers"
            ),
            Refusal::ResizeRejected(m) => format!("the API server refused a resize: {m}"),
        }
    }
}

/// The parsed policy of a cluster; `None` when autoscaling is off or invalid (validation
/// reports the latter).
pub fn policy(auto: Option<&StorageAutoscaling>, mem: &StorageMemory) -> Option<Policy> {
    let a = auto.filter(|a| a.enabled)?;
    let horizon = match &a.prediction_horizon {
        Some(h) => Duration::from_secs(parse_duration_secs(h)?),
        None => default_horizon(mem.longest_resize),
    };
    Some(Policy {
        target_percent: a.target_utilization_percent as f64,
        critical_percent: a.critical_utilization_percent as f64,
        margin_percent: a.margin_percent as f64,
        min_increment: u64::try_from(parse_bytes(&a.min_increment)?).ok()?,
        increment_percent: a.increment_percent as f64,
        max_size: u64::try_from(parse_bytes(&a.max_size)?).ok()?,
        cooldown: Duration::from_secs(parse_duration_secs(&a.cooldown)?),
        horizon,
        recommend_only: a.mode == AutoscalingMode::RecommendOnly,
    })
}

/// Name of broker `id`'s claim: the StatefulSet controller's `<template>-<sts>-<ordinal>`.
pub fn pvc_name(cluster: &str, zone_index: usize, id: i32) -> String {
    format!("data-{}-{id}", broker_sts_name(cluster, zone_index))
}

/// The step's outcome for the cluster controller.
#[derive(Debug, Default)]
pub struct StorageOutcome {
    pub brokers: Vec<crate::crd::BrokerStatus>,
    /// Claims patched this time.
    pub grown: usize,
    /// When the next measurement is due (autoscaling on).
    pub requeue: Option<Duration>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn rfc3339(secs: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_second()).ok())
}

fn quantity_bytes(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<u64> {
    q.and_then(|q| parse_bytes(&q.0))
        .and_then(|b| u64::try_from(b).ok())
}

fn has_condition(pvc: &PersistentVolumeClaim, t: &str) -> bool {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == t && c.status == "True"))
}

/// Whether the class can expand volumes: `Err(refusal)` when not.
async fn check_class(
    classes: &Api<StorageClass>,
    name: Option<&str>,
) -> Result<Result<(), Refusal>, kube::Error> {
    let class = match name {
        Some(n) => classes.get_opt(n).await?,
        None => classes
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|c| {
                c.annotations()
                    .get(DEFAULT_IS_DEFAULT_CLASS)
                    .map(String::as_str)
                    == Some("true")
            }),
    };
    let label = name.unwrap_or("(cluster default)").to_string();
    Ok(match class {
        None => Err(Refusal::StorageClassMissing(label)),
        Some(c) if c.allow_volume_expansion != Some(true) => {
            Err(Refusal::ExpansionNotAllowed(c.name_any()))
        }
        Some(_) => Ok(()),
    })
}

/// Runs the storage step; updates `conditions` and returns per-broker status.
pub async fn reconcile_storage(
    kc: &KafkaCluster,
    ctx: &Ctx,
    conditions: &mut Vec<Condition>,
) -> Result<StorageOutcome, kube::Error> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    let key = format!("{ns}/{name}");
    let generation = kc.metadata.generation;
    let spec_size = parse_bytes(&kc.spec.storage.size)
        .and_then(|b| u64::try_from(b).ok())
        .unwrap_or(0);
    let auto = kc.spec.storage.autoscaling.as_ref();
    let now = now_secs();
    let (pol, measure) = {
        let mut mem = ctx.storage.lock().unwrap_or_else(|e| e.into_inner());
        let pol = policy(auto, &mem);
        let interval = auto
            .and_then(|a| parse_duration_secs(&a.check_interval))
            .unwrap_or(60) as f64;
        let due = mem.last_check.get(&key).is_none_or(|t| now - t >= interval);
        if pol.is_some() && due {
            mem.last_check.insert(key.clone(), now);
        }
        let measure = pol.is_some() && due;
        (pol, measure)
    };
    let previous: HashMap<i32, BrokerStatus> = kc
        .status
        .as_ref()
        .map(|s| s.brokers.iter().map(|b| (b.id, b.clone())).collect())
        .unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    // One list per reconcile: the StatefulSet controller labels each claim with the selector.
    let selector = format!("rivulet.dev/cluster={name},app.kubernetes.io/component=broker");
    let live: HashMap<String, PersistentVolumeClaim> = pvcs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let mut class_check: Option<Result<(), Refusal>> = None;
    let mut refusal: Option<Refusal> = None;
    let mut at_max = Vec::new();
    let mut out = StorageOutcome {
        requeue: pol.as_ref().map(|_| {
            Duration::from_secs(
                auto.and_then(|a| parse_duration_secs(&a.check_interval))
                    .unwrap_or(60)
                    .max(1),
            )
        }),
        ..Default::default()
    };
    let headless = broker_headless_name(&name);

    for (zi, zone) in kc.spec.zones.iter().enumerate() {
        for ord in 0..kc.spec.brokers_per_zone.max(0) {
            let id = zone_first_id(zi) + ord;
            let claim = pvc_name(&name, zi, id);
            let prev = previous.get(&id);
            let mut st = BrokerStatus {
                id,
                zone: zone.clone(),
                pvc: claim.clone(),
                last_scale_time: prev.and_then(|p| p.last_scale_time.clone()),
                phase: "Pending".into(),
                ..Default::default()
            };
            let Some(pvc) = live.get(&claim) else {
                st.message = Some("claim not created yet".into());
                out.brokers.push(st);
                continue;
            };
            let requests = pvc
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref());
            let requested = quantity_bytes(requests.and_then(|r| r.get("storage"))).unwrap_or(0);
            let capacity = quantity_bytes(
                pvc.status
                    .as_ref()
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|c| c.get("storage")),
            );
            st.requested = requests.and_then(|r| r.get("storage")).map(|q| q.0.clone());
            st.capacity = pvc
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .map(|q| q.0.clone());
            let pvc_key = format!("{key}/{claim}");

            // A resize that reached the volume: remember how long it took.
            if capacity.is_some_and(|c| c >= requested) {
                let mut mem = ctx.storage.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t0) = mem.resize_started.remove(&pvc_key) {
                    let took = Duration::from_secs_f64((now - t0).max(0.0));
                    mem.longest_resize = Some(mem.longest_resize.map_or(took, |l| l.max(took)));
                    ctx.metrics
                        .storage_resize_seconds
                        .observe(took.as_secs_f64());
                    info!(cluster = %key, broker = id, seconds = took.as_secs_f64(), "resize reached the volume");
                }
            }

            // Measure (autoscaling on, check due), else keep the last measurement for status.
            let (mut used, mut total) = (
                prev.and_then(|p| p.storage_used_bytes)
                    .map(|b| b.max(0) as u64),
                prev.and_then(|p| p.storage_total_bytes)
                    .map(|b| b.max(0) as u64),
            );
            let mut rate = None;
            if pol.is_some() {
                if measure {
                    let addr = format!(
                        "{}-{id}.{headless}.{ns}.svc:{}",
                        broker_sts_name(&name, zi),
                        crate::security::admin::admin_port(&kc.spec)
                    );
                    let read = match crate::security::admin::security_for(&ctx.client, kc).await {
                        Ok(sec) => ctx.log_dirs.read(&addr, sec).await,
                        Err(e) => Err(e),
                    };
                    match read {
                        Ok((t, usable)) if t > 0 => {
                            used = Some(t.saturating_sub(usable));
                            total = Some(t);
                        }
                        Ok(_) => {
                            used = None;
                            total = None;
                        }
                        Err(e) => {
                            warn!(cluster = %key, broker = id, error = %e, "log-dir measurement failed");
                            used = None;
                            total = None;
                            st.message = Some(format!("measurement failed: {e}"));
                        }
                    }
                    let mut mem = ctx.storage.lock().unwrap_or_else(|e| e.into_inner());
                    let s = mem.samples.entry(pvc_key.clone()).or_default();
                    // A grown filesystem starts a new trend: old samples compare other totals.
                    if let (Some(u), Some(t)) = (used, total) {
                        if s.back().is_some_and(|_| {
                            prev.and_then(|p| p.storage_total_bytes) != Some(t as i64)
                        }) {
                            s.clear();
                        }
                        s.push_back((now, u));
                        while s.len() > SAMPLES
                            || s.front().is_some_and(|f| now - f.0 > SAMPLE_WINDOW_SECS)
                        {
                            s.pop_front();
                        }
                    }
                }
                let mem = ctx.storage.lock().unwrap_or_else(|e| e.into_inner());
                rate = mem
                    .samples
                    .get(&pvc_key)
                    .and_then(|s| fill_rate(&s.iter().copied().collect::<Vec<_>>()));
            }
            st.storage_used_bytes = used.map(|b| b as i64);
            st.storage_total_bytes = total.map(|b| b as i64);
            st.utilization_percent = utilization(used, total).map(|u| (u * 10.0).round() / 10.0);

            let input = BrokerInput {
                spec_size,
                requested,
                capacity,
                used,
                total,
                fill_rate: rate,
                last_scale: st.last_scale_time.as_deref().and_then(parse_rfc3339),
                now: now as u64,
            };
            let decision = decide(pol.as_ref(), &input);
            let resize_pending = has_condition(pvc, "FileSystemResizePending");
            st.phase = if resize_pending {
                "FileSystemResizePending".into()
            } else if capacity.is_none_or(|c| c < requested) {
                "Growing".into()
            } else if pol.is_some() && used.is_none() {
                "Unknown".into()
            } else {
                "Ok".into()
            };
            match decision {
                Decision::Grow { new_size, reason } => {
                    let recommend = pol.as_ref().is_some_and(|p| p.recommend_only)
                        && reason != GrowReason::SpecIncrease;
                    let why = describe(reason, st.utilization_percent, pol.as_ref());
                    if recommend {
                        let q = to_quantity(new_size);
                        if prev.and_then(|p| p.recommended_size.as_deref()) != Some(q.as_str()) {
                            ctx.event_about(
                                kc,
                                false,
                                "StorageGrowthRecommended",
                                reason.as_str(),
                                format!(
                                    "broker {id} ({claim}): would grow {} → {q} ({}: {why}); RecommendOnly, nothing patched",
                                    to_quantity(requested),
                                    reason.as_str()
                                ),
                                Some(claim_ref(&ns, &claim)),
                            )
                            .await;
                        }
                        st.recommended_size = Some(q);
                        st.phase = "Recommended".into();
                        st.message = Some(format!("{}: {why}", reason.as_str()));
                    } else {
                        if class_check.is_none() {
                            let class = pvc
                                .spec
                                .as_ref()
                                .and_then(|s| s.storage_class_name.clone())
                                .or_else(|| kc.spec.storage.storage_class_name.clone());
                            class_check = Some(check_class(&classes, class.as_deref()).await?);
                        }
                        match class_check.clone() {
                            Some(Err(r)) => {
                                st.phase = "Refused".into();
                                st.message = Some(r.message());
                                refusal.get_or_insert(r);
                            }
                            _ => {
                                let q = to_quantity(new_size);
                                let patch =
                                    json!({"spec": {"resources": {"requests": {"storage": q}}}});
                                match pvcs
                                    .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                                    .await
                                {
                                    Ok(_) => {
                                        let old = to_quantity(requested);
                                        info!(cluster = %key, broker = id, pvc = %claim, old = %old, new = %q, reason = reason.as_str(), "volume grown");
                                        // One Event per scale: the claim is the related
                                        // object and the reason the action, so Events of
                                        // different brokers and reasons don't merge.
                                        ctx.event_about(
                                            kc,
                                            false,
                                            "StorageGrown",
                                            reason.as_str(),
                                            format!(
                                                "broker {id} ({claim}): {old} → {q} ({}: {why})",
                                                reason.as_str()
                                            ),
                                            Some(claim_ref(&ns, &claim)),
                                        )
                                        .await;
                                        ctx.metrics.storage_scale(reason.as_str());
                                        st.requested = Some(q);
                                        st.last_scale_time = Some(rfc3339(now as u64));
                                        st.phase = "Growing".into();
                                        st.message = Some(format!("{}: {why}", reason.as_str()));
                                        out.grown += 1;
                                        ctx.storage
                                            .lock()
                                            .unwrap_or_else(|e| e.into_inner())
                                            .resize_started
                                            .entry(pvc_key.clone())
                                            .or_insert(now);
                                    }
                                    // Admission refusing the resize is a state, not an error to retry hot.
                                    Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                                        st.phase = "Refused".into();
                                        st.message = Some(e.message.clone());
                                        refusal.get_or_insert(Refusal::ResizeRejected(e.message));
                                    }
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                    }
                }
                Decision::Refuse(RefuseReason::MaxSizeReached) => {
                    st.phase = "Refused".into();
                    st.message = Some("above the target at maxSize".into());
                    at_max.push(id);
                }
                Decision::NoChange(hold) => {
                    if st.message.is_none() {
                        st.message = match hold {
                            Hold::Cooldown { remaining } => Some(format!(
                                "growth due, cooldown for {}s more",
                                remaining.as_secs()
                            )),
                            Hold::ResizeInProgress => Some("waiting for the last resize".into()),
                            Hold::BelowTarget | Hold::NotMeasured => None,
                        };
                    }
                }
            }
            if resize_pending && prev.map(|p| p.phase.as_str()) != Some("FileSystemResizePending") {
                // Offline expansion: the broker must restart to see the space. Restarting needs
                // the ISR-safe gate of the rolling restarter (docs/storage-autoscaling.md).
                ctx.event_about(
                    kc,
                    true,
                    "FileSystemResizePending",
                    "Autoscale",
                    format!("broker {id} ({claim}): the volume grew but its filesystem needs the pod restarted (offline expansion); not restarted automatically"),
                    Some(claim_ref(&ns, &claim)),
                )
                .await;
            }
            ctx.metrics
                .storage_broker(&key, id, &st, requested, capacity);
            out.brokers.push(st);
        }
    }
    if refusal.is_none() && !at_max.is_empty() {
        refusal = Some(Refusal::MaxSizeReached(at_max));
    }
    set_storage_condition(kc, ctx, conditions, pol.as_ref(), refusal, generation).await;
    Ok(out)
}

fn claim_ref(ns: &str, claim: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: Some(claim.to_string()),
        namespace: Some(ns.to_string()),
        ..Default::default()
    }
}

fn describe(reason: GrowReason, util: Option<f64>, p: Option<&Policy>) -> String {
    let u = util
        .map(|u| format!("{u:.1} %"))
        .unwrap_or_else(|| "unmeasured".into());
    match (reason, p) {
        (GrowReason::SpecIncrease, _) => "spec.storage.size raised".into(),
        (GrowReason::Threshold, Some(p)) => {
            format!("utilization {u} above target {} %", p.target_percent)
        }
        (GrowReason::Emergency, Some(p)) => format!(
            "utilization {u} at or above critical {} %",
            p.critical_percent
        ),
        (GrowReason::Prediction, Some(p)) => format!(
            "utilization {u} predicted to reach {} % within {}s",
            p.critical_percent,
            p.horizon.as_secs()
        ),
        (_, None) => format!("utilization {u}"),
    }
}

/// Sets the `StorageAutoscaling` condition and publishes one Event when its state changes.
async fn set_storage_condition(
    kc: &KafkaCluster,
    ctx: &Ctx,
    conditions: &mut Vec<Condition>,
    pol: Option<&Policy>,
    refusal: Option<Refusal>,
    generation: Option<i64>,
) {
    let before = get(conditions, CONDITION).map(|c| (c.status.clone(), c.reason.clone()));
    let (status, reason, msg) = match (&refusal, pol) {
        (Some(r), _) => (false, r.reason().to_string(), r.message()),
        (None, Some(p)) if p.recommend_only => (
            true,
            "RecommendOnly".to_string(),
            "decisions are reported in status.brokers, nothing is patched".to_string(),
        ),
        (None, Some(_)) => (
            true,
            "Active".to_string(),
            "volumes grow by policy".to_string(),
        ),
        (None, None) => {
            // Autoscaling off and nothing refused: no condition to show.
            conditions.retain(|c| c.type_ != CONDITION);
            return;
        }
    };
    set_condition(conditions, CONDITION, status, &reason, &msg, generation);
    let after = (
        if status { "True" } else { "False" }.to_string(),
        reason.clone(),
    );
    if before.as_ref() != Some(&after) {
        ctx.metrics.storage_refused(refusal.is_some());
        if !status {
            ctx.event(kc, true, &reason, "Autoscale", msg).await;
        } else if before.is_some_and(|b| b.0 == "False") {
            ctx.event(kc, false, "StorageAutoscalingResumed", "Autoscale", msg)
                .await;
        }
    }
}
