//! The KafkaTopic controller: makes the Kafka topic match the resource through the Kafka admin
//! protocol on the cluster's bootstrap address. Creates, grows partitions (refuses to shrink),
//! applies config, reverts config changed outside the resource on every resync, and deletes per
//! deletionPolicy behind a finalizer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use rivulet_admin_client::{AdminClient, SOURCE_TOPIC_CONFIG};
use serde_json::json;
use tracing::{info, warn};

use crate::conditions::set_condition;
use crate::context::Ctx;
use crate::crd::{DeletionPolicy, KafkaCluster, KafkaTopic, KafkaTopicStatus};

pub const CONTROLLER: &str = "kafkatopic";
pub const FINALIZER: &str = "rivulet.dev/topic-cleanup";
/// (API group, resource) the KafkaTopic controller lists and watches.
pub const WATCHED: &[(&str, &str)] = &[("rivulet.dev", "kafkatopics")];
/// How often a settled topic is compared with the cluster (drift is reverted then).
pub const RESYNC: Duration = Duration::from_secs(60);
/// Wait while the cluster isn't there or ready yet.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(15);
/// Admin request timeout.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka admin: {0}")]
    Admin(#[from] rivulet_admin_client::Error),
    #[error("object has no namespace")]
    NoNamespace,
}

/// What a topic reconcile did or found, for conditions and Events.
#[derive(Debug, Default)]
struct Outcome {
    changes: Vec<String>,
    refusals: Vec<(String, String)>,
}

pub async fn reconcile(kt: Arc<KafkaTopic>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let key = format!(
        "topic/{}/{}",
        kt.namespace().unwrap_or_default(),
        kt.name_any()
    );
    let res = reconcile_inner(&kt, &ctx).await;
    ctx.metrics
        .observe(CONTROLLER, start.elapsed().as_secs_f64(), res.is_err());
    match &res {
        Ok(_) => ctx.succeeded(&key),
        Err(e) => {
            warn!(topic = %key, error = %e, "reconcile failed");
            ctx.event(&*kt, true, "ReconcileError", "Reconcile", e.to_string())
                .await;
            let mut status = kt.status.clone().unwrap_or_default();
            let g = kt.metadata.generation;
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                "Error",
                &e.to_string(),
                g,
            );
            set_condition(
                &mut status.conditions,
                "Degraded",
                true,
                "Error",
                &e.to_string(),
                g,
            );
            let _ = write_status(&ctx, &kt, status).await;
        }
    }
    res
}

pub fn error_policy(kt: Arc<KafkaTopic>, _e: &Error, ctx: Arc<Ctx>) -> Action {
    let key = format!(
        "topic/{}/{}",
        kt.namespace().unwrap_or_default(),
        kt.name_any()
    );
    Action::requeue(ctx.backoff(&key))
}

async fn write_status(ctx: &Ctx, kt: &KafkaTopic, status: KafkaTopicStatus) -> Result<(), Error> {
    if kt.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let ns = kt.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &kt.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

async fn set_finalizers(
    api: &Api<KafkaTopic>,
    kt: &KafkaTopic,
    fins: Vec<String>,
) -> Result<(), Error> {
    api.patch(
        &kt.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": fins}})),
    )
    .await?;
    Ok(())
}

/// The bootstrap address of the referenced cluster, or why there is none yet.
async fn bootstrap(
    ctx: &Ctx,
    ns: &str,
    kt: &KafkaTopic,
) -> Result<Result<String, (String, String)>, Error> {
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), ns);
    let name = &kt.spec.cluster_ref.name;
    let Some(kc) = clusters.get_opt(name).await? else {
        return Ok(Err((
            "ClusterNotFound".into(),
            format!("KafkaCluster {name} does not exist"),
        )));
    };
    // The admin address (internal listener) when the cluster has one; else the bootstrap.
    match kc
        .status
        .and_then(|s| s.admin_address.or(s.bootstrap_address))
    {
        Some(b) => Ok(Ok(b)),
        None => Ok(Err((
            "ClusterNotReady".into(),
            format!("KafkaCluster {name} has no bootstrap address yet"),
        ))),
    }
}

async fn reconcile_inner(kt: &KafkaTopic, ctx: &Ctx) -> Result<Action, Error> {
    let ns = kt.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &ns);
    let topic = kt.topic_name();

    if kt.meta().deletion_timestamp.is_some() {
        if !kt.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(Action::await_change());
        }
        if kt.spec.deletion_policy == DeletionPolicy::Delete {
            match bootstrap(ctx, &ns, kt).await? {
                Ok(addr) => {
                    let mut admin = AdminClient::connect(&addr, ADMIN_TIMEOUT).await?;
                    match admin.delete_topic(&topic).await {
                        Ok(()) => {
                            ctx.event(
                                kt,
                                false,
                                "Deleted",
                                "Delete",
                                format!("deleted topic {topic}"),
                            )
                            .await
                        }
                        Err(e) if is_unknown_topic(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // No cluster left: nothing holds the topic any more.
                Err((reason, _)) if reason == "ClusterNotFound" => {}
                Err((_, msg)) => {
                    warn!(topic = %topic, "{msg}; retrying the delete later");
                    return Ok(Action::requeue(CLUSTER_WAIT));
                }
            }
        } else {
            ctx.event(
                kt,
                false,
                "Retained",
                "Delete",
                format!("kept topic {topic} (deletionPolicy Retain)"),
            )
            .await;
        }
        let fins = kt
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        set_finalizers(&api, kt, fins).await?;
        return Ok(Action::await_change());
    }
    if !kt.finalizers().iter().any(|f| f == FINALIZER) {
        let mut fins = kt.finalizers().to_vec();
        fins.push(FINALIZER.into());
        set_finalizers(&api, kt, fins).await?;
    }

    let g = kt.metadata.generation;
    let mut status = kt.status.clone().unwrap_or_default();
    status.observed_generation = g;
    status.topic_name = Some(topic.clone());
    let addr = match bootstrap(ctx, &ns, kt).await? {
        Ok(a) => a,
        Err((reason, msg)) => {
            set_condition(&mut status.conditions, "Ready", false, &reason, &msg, g);
            write_status(ctx, kt, status).await?;
            return Ok(Action::requeue(CLUSTER_WAIT));
        }
    };

    let mut admin = AdminClient::connect(&addr, ADMIN_TIMEOUT).await?;
    let mut out = Outcome::default();
    let info = match admin.describe_topic(&topic).await? {
        None => {
            admin
                .create_topic(
                    &topic,
                    kt.spec.partitions,
                    kt.spec.replication_factor,
                    &kt.spec.config,
                )
                .await?;
            out.changes.push(format!(
                "created topic {topic} with {} partitions, replication factor {}",
                kt.spec.partitions, kt.spec.replication_factor
            ));
            admin.describe_topic(&topic).await?
        }
        Some(t) => {
            if kt.spec.partitions > t.partitions {
                admin.create_partitions(&topic, kt.spec.partitions).await?;
                out.changes.push(format!(
                    "grew topic {topic} from {} to {} partitions",
                    t.partitions, kt.spec.partitions
                ));
            } else if kt.spec.partitions < t.partitions {
                out.refusals.push((
                    "PartitionShrinkRefused".into(),
                    format!(
                        "topic {topic} has {} partitions; Kafka can't remove partitions, so spec.partitions {} is refused",
                        t.partitions, kt.spec.partitions
                    ),
                ));
            }
            if t.replication_factor != kt.spec.replication_factor as i32 {
                out.refusals.push((
                    "ReplicationFactorChangeRefused".into(),
                    format!(
                        "topic {topic} has replication factor {}; changing it to {} is not supported",
                        t.replication_factor, kt.spec.replication_factor
                    ),
                ));
            }
            sync_config(&mut admin, &topic, &kt.spec.config, &mut out).await?;
            admin.describe_topic(&topic).await?
        }
    };

    for c in &out.changes {
        info!(topic = %topic, "{c}");
        ctx.event(kt, false, "Applied", "Apply", c.clone()).await;
    }
    if let Some(t) = &info {
        status.topic_id = (!t.id.is_empty()).then(|| t.id.clone());
        status.partitions = Some(t.partitions);
        status.replication_factor = Some(t.replication_factor);
    }
    if out.refusals.is_empty() {
        set_condition(
            &mut status.conditions,
            "Ready",
            true,
            "InSync",
            "topic matches the resource",
            g,
        );
        set_condition(
            &mut status.conditions,
            "Degraded",
            false,
            "AsExpected",
            "",
            g,
        );
    } else {
        let reason = out.refusals[0].0.clone();
        let msg = out
            .refusals
            .iter()
            .map(|r| r.1.clone())
            .collect::<Vec<_>>()
            .join("; ");
        set_condition(&mut status.conditions, "Ready", false, &reason, &msg, g);
        let newly = !crate::conditions::get(&status.conditions, "Degraded")
            .is_some_and(|c| c.status == "True" && c.message == msg);
        set_condition(&mut status.conditions, "Degraded", true, &reason, &msg, g);
        if newly {
            ctx.event(kt, true, &reason, "Validate", msg).await;
        }
    }
    write_status(ctx, kt, status).await?;
    Ok(Action::requeue(RESYNC))
}

fn is_unknown_topic(e: &rivulet_admin_client::Error) -> bool {
    matches!(
        e.kafka_error(),
        Some(kafka_protocol::ResponseError::UnknownTopicOrPartition)
    )
}

/// Sets every key of the spec that differs and removes topic-level keys the spec doesn't
/// have (changes made outside the resource), in one IncrementalAlterConfigs.
async fn sync_config(
    admin: &mut AdminClient,
    topic: &str,
    want: &BTreeMap<String, String>,
    out: &mut Outcome,
) -> Result<(), Error> {
    let have = admin.describe_topic_config(topic).await?;
    let mut set = BTreeMap::new();
    for (k, v) in want {
        if have.get(k).and_then(|e| e.value.as_deref()) != Some(v.as_str()) {
            set.insert(k.clone(), v.clone());
        }
    }
    let delete: Vec<String> = have
        .iter()
        .filter(|(k, e)| e.source == SOURCE_TOPIC_CONFIG && !e.read_only && !want.contains_key(*k))
        .map(|(k, _)| k.clone())
        .collect();
    if set.is_empty() && delete.is_empty() {
        return Ok(());
    }
    admin.alter_topic_config(topic, &set, &delete).await?;
    let mut parts: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.extend(delete.iter().map(|k| format!("-{k}")));
    out.changes
        .push(format!("set config of topic {topic}: {}", parts.join(", ")));
    Ok(())
}
