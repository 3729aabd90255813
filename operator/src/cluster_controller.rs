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
use crate::patches::{add_finalizer, patch_status, remove_finalizer};
use crate::quantity::parse_bytes;
use crate::scale::reconcile::reconcile_scaling;
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
    #[error("roll: {0}")]
    Roll(#[from] crate::roll::reconcile::Error),
    #[error("{0}")]
    Certs(#[from] crate::security::cluster_certs::Error),
    #[error("internal credentials: {0}")]
    Credentials(#[from] crate::security::internal_secret::Error),
}

/// What the live objects look like (the dereference step's output).
#[derive(Default, Debug)]
pub struct Observed {
    /// Applied-hash annotation of each live object, by (kind, name).
    pub hashes: Vec<((ObjKind, String), Option<String>)>,
    /// Live StatefulSets, by name.
    pub statefulsets: Vec<StatefulSet>,
    /// Every live object, as JSON, by (kind, name): what drift compares.
    pub live: Vec<((ObjKind, String), serde_json::Value)>,
}

impl Observed {
    fn hash_of(&self, kind: ObjKind, name: &str) -> Option<Option<&str>> {
        self.hashes
            .iter()
            .find(|((k, n), _)| *k == kind && n == name)
            .map(|(_, h)| h.as_deref())
    }
    /// The live JSON of an object.
    pub fn live_of(&self, kind: ObjKind, name: &str) -> Option<&serde_json::Value> {
        self.live
            .iter()
            .find(|((k, n), _)| *k == kind && n == name)
            .map(|(_, v)| v)
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
        if let Some(v) = live.and_then(|l| serde_json::to_value(l).ok()) {
            obs.live.push(((d.kind, d.name.clone()), v));
        }
    }
    Ok(obs)
}

/// The objects to write now: those whose applied hash differs. Broker StatefulSets use
/// `updateStrategy: OnDelete`, so writing one restarts nothing: the roller
/// ([`crate::roll`]) restarts broker pods one at a time, gated on in-sync replicas.
pub fn plan(desired: &[DesiredObject], obs: &Observed) -> (Vec<DesiredObject>, Vec<String>) {
    let writes = desired
        .iter()
        .filter(|d| obs.hash_of(d.kind, &d.name) != Some(Some(d.applied_hash())))
        .cloned()
        .collect();
    (writes, Vec::new())
}

/// Adds to `writes` the objects whose live fields drifted from the desired ones (see
/// [`crate::drift`]); returns them with the drifted paths, for Events. Objects already written
/// (or held) by `plan()` are not touched here: their hash differs, so they aren't checked.
pub fn revert_drift(
    desired: &[DesiredObject],
    obs: &Observed,
    writes: &mut Vec<DesiredObject>,
) -> Vec<(DesiredObject, Vec<String>)> {
    let found = crate::drift::drifted_objects(desired, |k, n| obs.live_of(k, n));
    let mut reverts = Vec::new();
    for (d, paths) in found {
        if !writes.iter().any(|w| w.kind == d.kind && w.name == d.name) {
            writes.push(d.clone());
            reverts.push((d.clone(), paths));
        }
    }
    reverts
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

/// `spec.replicas` of each zone's live broker StatefulSet (None where there is none yet).
async fn live_broker_replicas(
    ctx: &Ctx,
    ns: &str,
    cluster: &str,
    zones: usize,
) -> Result<Vec<Option<i32>>, Error> {
    let a: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut out = Vec::with_capacity(zones);
    for z in 0..zones {
        let live = a.get_opt(&broker_sts_name(cluster, z)).await?;
        out.push(live.and_then(|s| s.spec).and_then(|s| s.replicas));
    }
    Ok(out)
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
    patch_status(&api, kc, kc.status.as_ref(), &status).await?;
    Ok(true)
}

async fn reconcile_inner(kc: &KafkaCluster, ctx: &Ctx) -> Result<Action, Error> {
    let ns = kc.namespace().ok_or(Error::NoNamespace)?;
    let name = kc.name_any();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);

    if kc.meta().deletion_timestamp.is_some() {
        return cleanup(kc, ctx, &clusters).await;
    }
    add_finalizer(&clusters, kc, FINALIZER).await?;

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
    // The internal credentials too: the brokers mount them and bootstrap their SCRAM users
    // and coordinator ACLs from them.
    if let Some(c) = crate::security::internal_secret::reconcile(kc, ctx).await? {
        ctx.event(kc, false, "Credentials", "Apply", c).await;
    }
    // Scaling: lowering brokersPerZone drains the brokers being removed first, so the
    // StatefulSets keep their replica count until the drain finishes (scale/reconcile.rs).
    let live_per_zone = live_broker_replicas(ctx, &ns, &name, kc.spec.zones.len()).await?;
    let scale = reconcile_scaling(kc, ctx, &live_per_zone, &mut status).await;
    let held_kc;
    let effective = if scale.hold_brokers_per_zone != kc.spec.brokers_per_zone {
        let mut k = kc.clone();
        k.spec.brokers_per_zone = scale.hold_brokers_per_zone;
        held_kc = k;
        &held_kc
    } else {
        kc
    };

    // Build (pure), dereference, plan, apply.
    let built = build_cluster_with_image(effective, &ctx.broker_image);
    let obs = observe(ctx, &ns, &built.objects).await?;
    let (mut writes, mut held) = plan(&built.objects, &obs);
    // Drift: objects plan() leaves alone (applied hash unchanged) whose live fields were edited
    // are applied again, with an Event naming the fields.
    let reverts = revert_drift(&built.objects, &obs, &mut writes);
    held.extend(scale.progress.clone());
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
        // Keys someone else added to a map the operator owns whole (the broker ConfigMap's
        // data): server-side apply leaves them, so they are removed first.
        let extras = obs
            .live_of(d.kind, &d.name)
            .map(|l| crate::drift::extra_keys(d.kind, &d.value, l))
            .unwrap_or_default();
        if !extras.is_empty() {
            let mut patch = json!({});
            for (map, key) in &extras {
                patch[*map][key] = serde_json::Value::Null;
            }
            api(ctx, &ns, d.kind)
                .patch(&d.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        api(ctx, &ns, d.kind)
            .patch(&d.name, &pp, &Patch::Apply(&d.value))
            .await?;
        if let Some((_, paths)) = reverts
            .iter()
            .find(|(o, _)| o.name == d.name && o.kind == d.kind)
        {
            warn!(cluster = %name, kind = ?d.kind, object = %d.name, fields = %paths.join(", "), "drift reverted");
            ctx.event_about(
                kc,
                true,
                "DriftReverted",
                "Apply",
                format!(
                    "{:?} {} was edited outside the operator; reverted {}",
                    d.kind,
                    d.name,
                    paths.join(", ")
                ),
                Some(d.object_ref()),
            )
            .await;
        } else {
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
        }
        written.push(d.clone());
    }
    let writes = written;

    // Roll: at most one broker pod restarted, once the StatefulSets written above are seen.
    let broker_sets: Vec<String> = (0..kc.spec.zones.len())
        .map(|i| broker_sts_name(&name, i))
        .collect();
    let roll = if writes.iter().any(|w| broker_sets.contains(&w.name)) {
        crate::roll::reconcile::RollOutcome {
            operation: status.operation.clone().unwrap_or_default(),
            requeue: Some(crate::roll::reconcile::ROLL_POLL),
        }
    } else {
        crate::roll::reconcile::roll(kc, ctx, &obs.statefulsets).await?
    };
    let rolling = roll.operation.state != crate::crd::OperationState::Active;

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
    let progressing = !writes.is_empty() || !held.is_empty() || !ready_total || rolling;
    let (reason, msg) = if !writes.is_empty() {
        ("Applying", format!("applied {} object(s)", writes.len()))
    } else if !held.is_empty() {
        ("Waiting", held.join("; "))
    } else if rolling {
        (
            "RollingBrokers",
            roll.operation.message.clone().unwrap_or_default(),
        )
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
    status.operation = Some(roll.operation);
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
    if let Some(r) = roll.requeue {
        next = next.min(r);
    }
    if let Some(check) = scale.requeue {
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
    remove_finalizer(clusters, kc, FINALIZER).await?;
    info!(cluster = %name, "cleaned up");
    Ok(Action::await_change())
}
