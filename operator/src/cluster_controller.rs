//! The KafkaCluster controller: dereference (read) → validate (pure) → build (pure) →
//! apply (server-side apply, only what changed) → status (conditions, zones) + Events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::builders::{
    broker_sts_name, build_cluster, build_cluster_with_image, coordinator_name, DesiredObject,
    ObjKind, APPLIED_HASH,
};
use crate::conditions::set_condition;
use crate::context::{Ctx, FIELD_MANAGER};
use crate::crd::{KafkaCluster, KafkaClusterStatus, ZoneStatus};
use crate::quantity::parse_bytes;
use crate::storage::reconcile::reconcile_storage;
use crate::validate::validate_cluster;

pub const CONTROLLER: &str = "kafkacluster";
/// Finalizer: deletion removes brokers before the coordinator, with Events.
pub const FINALIZER: &str = "rivulet.dev/cluster-cleanup";
/// Resync period of a settled cluster.
pub const RESYNC: Duration = Duration::from_secs(300);
/// (API group, resource) the KafkaCluster controller lists and watches: the clusters and the
/// kinds it owns (main.rs's `Controller::owns`). The RBAC test derives verbs from this.
pub const WATCHED: &[(&str, &str)] = &[
    ("rivulet.dev", "kafkaclusters"),
    ("apps", "statefulsets"),
    ("", "services"),
    ("", "configmaps"),
    ("policy", "poddisruptionbudgets"),
];
/// Requeue period while something is rolling out.
pub const PROGRESS_POLL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no namespace")]
    NoNamespace,
    #[error("{0}")]
    Certs(#[from] crate::security::cluster_certs::Error),
}

/// What the live objects look like (the dereference step's output).
#[derive(Default, Debug)]
pub struct Observed {
    /// Applied-hash annotation of each live object, by (kind, name).
    pub hashes: Vec<((ObjKind, String), Option<String>)>,
    /// Live StatefulSets, by name.
    pub statefulsets: Vec<StatefulSet>,
}

impl Observed {
    fn hash_of(&self, kind: ObjKind, name: &str) -> Option<Option<&str>> {
        self.hashes
            .iter()
            .find(|((k, n), _)| *k == kind && n == name)
            .map(|(_, h)| h.as_deref())
    }
    fn sts(&self, name: &str) -> Option<&StatefulSet> {
        self.statefulsets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
    }
}

/// A StatefulSet has finished its rollout: every pod updated and ready.
pub fn settled(s: &StatefulSet) -> bool {
    let want = s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(1);
    let Some(st) = &s.status else { return false };
    let gen_seen = st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0);
    let revs = st.update_revision.is_none() || st.current_revision == st.update_revision;
    gen_seen
        && revs
        && st.ready_replicas.unwrap_or(0) == want
        && st.updated_replicas.unwrap_or(0) == want
}

fn api(ctx: &Ctx, ns: &str, kind: ObjKind) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), ns, &kind.api_resource())
}

async fn observe(ctx: &Ctx, ns: &str, desired: &[DesiredObject]) -> Result<Observed, Error> {
    let mut obs = Observed::default();
    for d in desired {
        let live = api(ctx, ns, d.kind).get_opt(&d.name).await?;
        let hash = live
            .as_ref()
            .map(|o| o.annotations().get(APPLIED_HASH).cloned());
        if let (Some(l), ObjKind::StatefulSet) = (&live, d.kind) {
            if let Ok(s) = serde_json::to_value(l).and_then(serde_json::from_value::<StatefulSet>) {
                obs.statefulsets.push(s);
            }
        }
        if let Some(h) = hash {
            obs.hashes.push(((d.kind, d.name.clone()), h));
        }
    }
    Ok(obs)
}

/// The objects to write now: those whose applied hash differs, except that a broker
/// StatefulSet already running waits while an earlier zone is still rolling, so changes
/// roll one zone (and within it one broker) at a time.
pub fn plan(
    desired: &[DesiredObject],
    obs: &Observed,
    cluster: &str,
    zones: usize,
) -> (Vec<DesiredObject>, Vec<String>) {
    let mut writes = Vec::new();
    let mut held = Vec::new();
    let mut earlier_rolling: Option<String> = None;
    let zone_sts: Vec<String> = (0..zones).map(|i| broker_sts_name(cluster, i)).collect();
    for d in desired {
        let live = obs.hash_of(d.kind, &d.name);
        let changed = live != Some(Some(d.applied_hash()));
        let is_zone = d.kind == ObjKind::StatefulSet && zone_sts.contains(&d.name);
        if changed {
            if let (true, Some(Some(_)), Some(r)) = (is_zone, live, &earlier_rolling) {
                held.push(format!("{} waits for {r} to finish rolling", d.name));
                continue;
            }
            writes.push(d.clone());
        }
        if is_zone && earlier_rolling.is_none() {
            let rolling = changed || obs.sts(&d.name).is_none_or(|s| !settled(s));
            if rolling {
                earlier_rolling = Some(d.name.clone());
            }
        }
    }
    (writes, held)
}

/// The claim templates as the API server compares them: (name, requested bytes, class,
/// access modes). Server defaults (volumeMode, status) don't count.
fn claim_templates(
    spec: &serde_json::Value,
) -> Vec<(String, Option<u128>, Option<String>, String)> {
    spec["volumeClaimTemplates"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        t["spec"]["resources"]["requests"]["storage"]
                            .as_str()
                            .and_then(parse_bytes),
                        t["spec"]["storageClassName"].as_str().map(str::to_string),
                        t["spec"]["accessModes"].to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether applying `desired` would change the live StatefulSet's `volumeClaimTemplates`,
/// which the API server refuses: such a set is deleted with orphan propagation (its pods keep
/// running) and created again with the new templates, which adopt the pods.
pub fn claim_templates_differ(live: &StatefulSet, desired: &serde_json::Value) -> bool {
    let live = serde_json::to_value(live).unwrap_or_default();
    claim_templates(&live["spec"]) != claim_templates(&desired["spec"])
}

/// Deletes StatefulSet `name` with orphan propagation and waits (briefly) until it is gone.
/// Returns false when it is still terminating: the caller creates it on a later reconcile.
async fn orphan_delete(ctx: &Ctx, ns: &str, name: &str) -> Result<bool, Error> {
    let a = api(ctx, ns, ObjKind::StatefulSet);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    match a.delete(name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(true),
        Err(e) => return Err(e.into()),
    }
    for _ in 0..25 {
        if a.get_opt(name).await?.is_none() {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(false)
}

/// One reconcile of a KafkaCluster. Errors come back after being turned into a Degraded
/// condition and an Event; the caller requeues with backoff.
pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let key = format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any());
    let res = reconcile_inner(&kc, &ctx).await;
    ctx.metrics
        .observe(CONTROLLER, start.elapsed().as_secs_f64(), res.is_err());
    match &res {
        Ok(_) => ctx.succeeded(&key),
        Err(e) => {
            warn!(cluster = %key, error = %e, "reconcile failed");
            ctx.event(&*kc, true, "ReconcileError", "Reconcile", e.to_string())
                .await;
            let mut status = kc.status.clone().unwrap_or_default();
            let generation = kc.metadata.generation;
            set_condition(
                &mut status.conditions,
                "Degraded",
                true,
                "ApiError",
                &e.to_string(),
                generation,
            );
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                "ApiError",
                &e.to_string(),
                generation,
            );
            // Best effort: the API may be what failed.
            let _ = write_status(&ctx, &kc, status).await;
        }
    }
    res
}

/// Requeue policy after an error: exponential backoff per cluster, never a hot loop.
pub fn error_policy(kc: Arc<KafkaCluster>, _err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any());
    Action::requeue(ctx.backoff(&key))
}

async fn write_status(
    ctx: &Ctx,
    kc: &KafkaCluster,
    status: KafkaClusterStatus,
) -> Result<bool, Error> {
    if kc.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let ns = kc.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &kc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(true)
}

async fn reconcile_inner(kc: &KafkaCluster, ctx: &Ctx) -> Result<Action, Error> {
    let ns = kc.namespace().ok_or(Error::NoNamespace)?;
    let name = kc.name_any();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);

    if kc.meta().deletion_timestamp.is_some() {
        return cleanup(kc, ctx, &clusters).await;
    }
    if !kc.finalizers().iter().any(|f| f == FINALIZER) {
        let mut fins = kc.finalizers().to_vec();
        fins.push(FINALIZER.to_string());
        clusters
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": fins}})),
            )
            .await?;
    }

    let generation = kc.metadata.generation;
    let mut status = kc.status.clone().unwrap_or_default();

    // Validate (pure). An invalid spec writes nothing but the status and an Event.
    let problems = validate_cluster(&name, &kc.spec, kc.status.as_ref());
    if !problems.is_empty() {
        let msg = problems.join("; ");
        set_condition(
            &mut status.conditions,
            "Degraded",
            true,
            "InvalidSpec",
            &msg,
            generation,
        );
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "InvalidSpec",
            "the spec is invalid",
            generation,
        );
        set_condition(
            &mut status.conditions,
            "Progressing",
            false,
            "InvalidSpec",
            "waiting for a valid spec",
            generation,
        );
        status.observed_generation = generation;
        if write_status(ctx, kc, status).await? {
            ctx.event(kc, true, "InvalidSpec", "Validate", msg).await;
        }
        return Ok(Action::requeue(RESYNC));
    }

    // Certificates of TLS listeners first: the brokers mount them.
    for c in crate::security::cluster_certs::reconcile(kc, ctx).await? {
        ctx.event(kc, false, "Certificates", "Apply", c).await;
    }

    // Build (pure), dereference, plan, apply.
    let built = build_cluster_with_image(kc, &ctx.broker_image);
    let obs = observe(ctx, &ns, &built.objects).await?;
    let (writes, mut held) = plan(&built.objects, &obs, &name, kc.spec.zones.len());
    // Storage first: claims grow in place (manual size increase and autoscaling alike) before
    // a StatefulSet is recreated with the new claim template.
    let storage = reconcile_storage(kc, ctx, &mut status.conditions).await?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut written = Vec::new();
    for d in &writes {
        let existed = obs.hash_of(d.kind, &d.name).is_some();
        if let (ObjKind::StatefulSet, Some(live)) = (d.kind, obs.sts(&d.name)) {
            // Never ask the API server to change volumeClaimTemplates in place (refused: the
            // cluster would sit Degraded). Terminating sets are created again once gone.
            let terminating = live.metadata.deletion_timestamp.is_some();
            if terminating || claim_templates_differ(live, &d.value) {
                if !terminating {
                    info!(cluster = %name, object = %d.name, "claim template changed: recreating the StatefulSet, pods kept");
                }
                if !orphan_delete(ctx, &ns, &d.name).await? {
                    held.push(format!("{} waits for its orphaning delete", d.name));
                    continue;
                }
                ctx.event_about(
                    kc,
                    false,
                    "Recreated",
                    "Apply",
                    format!(
                        "StatefulSet {} deleted with orphan propagation (pods keep running) to take the new volume claim template",
                        d.name
                    ),
                    Some(d.object_ref()),
                )
                .await;
            }
        }
        api(ctx, &ns, d.kind)
            .patch(&d.name, &pp, &Patch::Apply(&d.value))
            .await?;
        let verb = if existed { "Updated" } else { "Created" };
        info!(cluster = %name, kind = ?d.kind, object = %d.name, "{verb}");
        ctx.event_about(
            kc,
            false,
            verb,
            "Apply",
            format!("{verb} {:?} {}", d.kind, d.name),
            Some(d.object_ref()),
        )
        .await;
        written.push(d.clone());
    }
    let writes = written;

    // Status from what runs now.
    let mut ready_total = true;
    let mut zones = Vec::new();
    for (i, zone) in kc.spec.zones.iter().enumerate() {
        let sts = obs.sts(&broker_sts_name(&name, i));
        let ready = sts
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let settled_now =
            sts.is_some_and(settled) && !writes.iter().any(|w| w.name == broker_sts_name(&name, i));
        ready_total &= settled_now && ready == kc.spec.brokers_per_zone;
        zones.push(ZoneStatus {
            zone: zone.clone(),
            ready_brokers: ready,
            desired_brokers: kc.spec.brokers_per_zone,
        });
    }
    let coord_ready = obs.sts(&coordinator_name(&name)).is_some_and(settled)
        && !writes.iter().any(|w| w.name == coordinator_name(&name));
    ready_total &= coord_ready;
    let progressing = !writes.is_empty() || !held.is_empty() || !ready_total;
    let (reason, msg) = if !writes.is_empty() {
        ("Applying", format!("applied {} object(s)", writes.len()))
    } else if !held.is_empty() {
        ("RollingZones", held.join("; "))
    } else if !ready_total {
        (
            "WaitingForPods",
            "waiting for brokers and coordinator to be ready".to_string(),
        )
    } else {
        (
            "Ready",
            "all brokers and the coordinator are ready".to_string(),
        )
    };
    set_condition(
        &mut status.conditions,
        "Progressing",
        progressing,
        reason,
        &msg,
        generation,
    );
    set_condition(
        &mut status.conditions,
        "Ready",
        ready_total,
        reason,
        &msg,
        generation,
    );
    set_condition(
        &mut status.conditions,
        "Degraded",
        false,
        "AsExpected",
        "",
        generation,
    );
    status.observed_generation = generation;
    status.bootstrap_address = Some(built.bootstrap_address.clone());
    status.listeners = crate::security::listeners::listener_status(kc);
    status.admin_address = crate::security::listeners::admin_address(kc);
    status.zones = zones;
    status.applied_zones = kc.spec.zones.clone();
    status.applied_storage_size = Some(kc.spec.storage.size.clone());
    status.brokers = storage.brokers;
    let was_ready = kc
        .status
        .as_ref()
        .and_then(|s| crate::conditions::get(&s.conditions, "Ready"))
        .is_some_and(|c| c.status == "True");
    write_status(ctx, kc, status).await?;
    if ready_total && !was_ready {
        ctx.event(
            kc,
            false,
            "Ready",
            "Reconcile",
            format!("cluster ready at {}", built.bootstrap_address),
        )
        .await;
    }
    let mut next = if progressing || storage.grown > 0 {
        PROGRESS_POLL
    } else {
        RESYNC
    };
    if let Some(check) = storage.requeue {
        next = next.min(check);
    }
    Ok(Action::requeue(next))
}

/// Deletes the cluster's objects, brokers first so they leave while the coordinator still
/// runs, then drops the finalizer. Volumes are kept (StatefulSet claim retention: Retain).
async fn cleanup(
    kc: &KafkaCluster,
    ctx: &Ctx,
    clusters: &Api<KafkaCluster>,
) -> Result<Action, Error> {
    let ns = kc.namespace().ok_or(Error::NoNamespace)?;
    let name = kc.name_any();
    if !kc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let mut objects = build_cluster(kc).objects;
    // Broker StatefulSets first, coordinator last.
    objects.sort_by_key(|o| {
        (
            o.name.contains("coordinator"),
            o.kind != ObjKind::StatefulSet,
        )
    });
    for o in &objects {
        match api(ctx, &ns, o.kind)
            .delete(&o.name, &DeleteParams::background())
            .await
        {
            Ok(_) => {
                ctx.event_about(
                    kc,
                    false,
                    "Deleted",
                    "Cleanup",
                    format!("Deleted {:?} {}", o.kind, o.name),
                    Some(o.object_ref()),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let fins: Vec<String> = kc
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    clusters
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": fins}})),
        )
        .await?;
    info!(cluster = %name, "cleaned up");
    Ok(Action::await_change())
}
