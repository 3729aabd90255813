//! The roller's I/O: read the broker pods, their claims and StatefulSets, ask the brokers for
//! partition state (Metadata + DescribeConfigs through `rivulet-admin-client`), let
//! [`super::decide`] choose, delete at most one pod, and report `status.operation` with one
//! Event per change of state.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::decide::{decide, BrokerPod, ClusterState, Decision, Partition, RestartReason, Wait};
use crate::builders::{broker_headless_name, broker_sts_name};
use crate::context::Ctx;
use crate::crd::{KafkaCluster, OperationState, OperationStatus};

/// Annotation on a KafkaCluster that holds the roller: `rivulet.dev/pause-roll: "true"`.
pub const PAUSE_ANNOTATION: &str = "rivulet.dev/pause-roll";
/// Label the StatefulSet controller puts on each pod: the revision of its template.
const REVISION_LABEL: &str = "controller-revision-hash";
/// Label carrying a StatefulSet pod's ordinal (the broker id).
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Requeue while a roll is under way.
pub const ROLL_POLL: Duration = Duration::from_secs(5);
/// Requeue while paused.
pub const PAUSED_POLL: Duration = Duration::from_secs(30);
/// Timeout of each admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The roller's result for the cluster controller.
#[derive(Debug, Default)]
pub struct RollOutcome {
    pub operation: OperationStatus,
    pub requeue: Option<Duration>,
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn resize_pending(pvc: &PersistentVolumeClaim) -> bool {
    pvc.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "FileSystemResizePending" && c.status == "True")
        })
}

/// The StatefulSet's update revision, once its controller has seen the current generation.
fn update_revision(s: &StatefulSet) -> Option<String> {
    let st = s.status.as_ref()?;
    if st.observed_generation.unwrap_or(0) < s.metadata.generation.unwrap_or(0) {
        return None;
    }
    st.update_revision.clone()
}

/// Broker id of a pod: its ordinal label, else the name's suffix.
fn broker_id(p: &Pod) -> Option<i32> {
    p.labels()
        .get(POD_INDEX_LABEL)
        .and_then(|v| v.parse().ok())
        .or_else(|| p.name_any().rsplit('-').next()?.parse().ok())
}

/// The broker pods with their restart reasons.
pub fn broker_pods(
    cluster: &str,
    zones: usize,
    pods: &[Pod],
    statefulsets: &[StatefulSet],
    claims: &[PersistentVolumeClaim],
) -> Vec<BrokerPod> {
    let mut out = Vec::new();
    for zi in 0..zones {
        let sts_name = broker_sts_name(cluster, zi);
        let revision = statefulsets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(sts_name.as_str()))
            .and_then(update_revision);
        let prefix = format!("{sts_name}-");
        for p in pods {
            let name = p.name_any();
            let Some(ordinal) = name.strip_prefix(&prefix) else {
                continue;
            };
            if ordinal.parse::<i32>().is_err() {
                continue;
            }
            let Some(id) = broker_id(p) else { continue };
            let mut reasons = Vec::new();
            if let (Some(want), Some(have)) = (&revision, p.labels().get(REVISION_LABEL)) {
                if want != have {
                    reasons.push(RestartReason::Revision {
                        pod: have.clone(),
                        want: want.clone(),
                    });
                }
            }
            let claim = format!("data-{name}");
            if claims
                .iter()
                .any(|c| c.name_any() == claim && resize_pending(c))
            {
                reasons.push(RestartReason::FileSystemResizePending { pvc: claim });
            }
            out.push(BrokerPod {
                id,
                name,
                ready: pod_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                reasons,
            });
        }
    }
    out.sort_by_key(|p| p.id);
    out
}

/// Asks the brokers for every partition's replicas and ISR and each topic's
/// min.insync.replicas.
async fn cluster_state(
    ctx: &Ctx,
    kc: &KafkaCluster,
    addrs: &[String],
) -> Result<ClusterState, rivulet_admin_client::Error> {
    let mut admin =
        crate::security::admin::connect(&ctx.client, kc, &addrs.join(","), ADMIN_TIMEOUT).await?;
    let view = admin.describe_partitions().await?;
    let mut topics: Vec<&str> = view.partitions.iter().map(|p| p.topic.as_str()).collect();
    topics.dedup();
    let mins = admin.min_insync_replicas(&topics).await?;
    Ok(ClusterState {
        controller: view.controller_id,
        brokers: view.brokers.clone(),
        partitions: view
            .partitions
            .iter()
            .map(|p| Partition {
                topic: p.topic.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                min_isr: mins.get(&p.topic).copied().unwrap_or(1),
            })
            .collect(),
    })
}

/// Status for a plan: progress counts the brokers of this roll (kept across reconciles in
/// `prev`), so a roll of one broker for a resize reads 0/1, not 5/6.
fn operation(
    prev: Option<&OperationStatus>,
    state: OperationState,
    pending: usize,
    current: Option<i32>,
    reason: Option<&str>,
    message: Option<String>,
) -> OperationStatus {
    let rolling = prev.is_some_and(|p| p.state != OperationState::Active);
    let total = match (state, rolling) {
        (OperationState::Active, _) => 0,
        (_, true) => prev
            .map(|p| p.total.max(0) as usize)
            .unwrap_or(0)
            .max(pending),
        (_, false) => pending,
    };
    let done = total.saturating_sub(pending);
    OperationStatus {
        state,
        done: done as i32,
        total: total as i32,
        progress: (state != OperationState::Active).then(|| format!("{done}/{total}")),
        current_broker: current,
        reason: reason.map(str::to_string),
        message,
    }
}

/// One step of the roller. `statefulsets` are the live broker StatefulSets as observed this
/// reconcile.
pub async fn roll(
    kc: &KafkaCluster,
    ctx: &Ctx,
    statefulsets: &[StatefulSet],
) -> Result<RollOutcome, Error> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    let prev = kc.status.as_ref().and_then(|s| s.operation.as_ref());
    let paused = kc
        .annotations()
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let sel = format!("rivulet.dev/cluster={name},app.kubernetes.io/component=broker");
    let pods = pods_api
        .list(&ListParams::default().labels(&sel))
        .await?
        .items;
    let claims: Vec<PersistentVolumeClaim> = if pods.is_empty() {
        Vec::new()
    } else {
        Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
    };
    let brokers = broker_pods(&name, kc.spec.zones.len(), &pods, statefulsets, &claims);
    let want = kc.spec.zones.len() * kc.spec.brokers_per_zone.max(0) as usize;

    let needs_cluster = !paused
        && brokers.iter().any(|b| !b.reasons.is_empty())
        && brokers.iter().all(|b| b.ready && !b.terminating);
    let cluster = if needs_cluster {
        let headless = broker_headless_name(&name);
        let port = crate::security::admin::admin_port(&kc.spec);
        let addrs: Vec<String> = brokers
            .iter()
            .map(|b| format!("{}.{headless}.{ns}.svc:{port}", b.name))
            .map(|a| ctx.log_dirs.hosts.get(&a).cloned().unwrap_or(a))
            .collect();
        cluster_state(ctx, kc, &addrs)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err("not asked".to_string())
    };
    let plan = decide(
        &brokers,
        want,
        cluster.as_ref().map_err(String::as_str),
        paused,
    );
    let pending = plan.pending.len();

    let (op, requeue) = match &plan.decision {
        Decision::Idle => {
            // The last restarted broker must be back (ready = caught up) before the roll ends.
            let was_rolling = prev.is_some_and(|p| p.state == OperationState::Updating);
            match brokers.iter().find(|b| !b.ready || b.terminating) {
                Some(b) if was_rolling => {
                    let w = Wait::BrokerNotReady {
                        id: b.id,
                        pod: b.name.clone(),
                    };
                    let op = operation(
                        prev,
                        OperationState::Updating,
                        0,
                        Some(b.id),
                        Some(w.reason()),
                        Some(w.to_string()),
                    );
                    (op, Some(ROLL_POLL))
                }
                _ => (
                    operation(prev, OperationState::Active, 0, None, None, None),
                    None,
                ),
            }
        }
        Decision::Wait(w) => {
            let state = if matches!(w, Wait::Paused) {
                OperationState::Maintenance
            } else {
                OperationState::Updating
            };
            let requeue = if state == OperationState::Maintenance {
                PAUSED_POLL
            } else {
                ROLL_POLL
            };
            let current = w.broker().or_else(|| prev.and_then(|p| p.current_broker));
            let op = operation(
                prev,
                state,
                pending,
                current,
                Some(w.reason()),
                Some(w.to_string()),
            );
            (op, Some(requeue))
        }
        Decision::Restart { id, pod, reasons } => {
            let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
            let live = pods.iter().find(|p| p.name_any() == *pod);
            let uid = live.and_then(|p| p.metadata.uid.clone());
            // The pod as the Event's related object: kube's recorder merges Events that share
            // regarding, related, reason and action into one series, so without it every
            // restart of a roll would show as one Event.
            let related = live.map(|p| p.object_ref(&()));
            let dp = DeleteParams {
                preconditions: uid.map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match pods_api.delete(pod, &dp).await {
                Ok(_) => {}
                // Already gone or replaced: the next reconcile sees the new pod.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            info!(cluster = %name, broker = id, pod = %pod, reasons = ?why, "restarting broker");
            ctx.event_about(
                kc,
                false,
                "RestartingBroker",
                "Roll",
                format!("restarting broker {id} (pod {pod}): {}", why.join("; ")),
                related,
            )
            .await;
            let op = operation(
                prev,
                OperationState::Updating,
                pending,
                Some(*id),
                Some("Restarting"),
                Some(format!("restarting broker {id}: {}", why.join("; "))),
            );
            (op, Some(ROLL_POLL))
        }
    };

    // One Event per change of state or reason, not one per reconcile.
    let changed = prev.is_none_or(|p| {
        p.state != op.state || p.reason != op.reason || p.current_broker != op.current_broker
    });
    if changed && op.reason.as_deref() != Some("Restarting") {
        let warning = matches!(
            op.reason.as_deref(),
            Some("ClusterUnreachable" | "WouldBreakMinInsyncReplicas" | "BrokerNotRegistered")
        );
        let (reason, note) = match (op.state, prev.map(|p| p.state)) {
            (OperationState::Active, Some(OperationState::Updating)) => (
                "RollFinished".to_string(),
                "every broker runs its current template and is in sync".to_string(),
            ),
            (OperationState::Active, _) => (String::new(), String::new()),
            (_, _) => (
                format!("Roll{}", op.reason.clone().unwrap_or_default()),
                format!(
                    "{:?} {}: {}",
                    op.state,
                    op.progress.clone().unwrap_or_default(),
                    op.message.clone().unwrap_or_default()
                ),
            ),
        };
        if !reason.is_empty() {
            if warning {
                warn!(cluster = %name, reason = %reason, "{note}");
            }
            ctx.event(kc, warning, &reason, "Roll", note).await;
        }
    }
    Ok(RollOutcome {
        operation: op,
        requeue,
    })
}
