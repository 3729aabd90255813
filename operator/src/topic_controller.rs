//! The KafkaTopic controller: makes the Kafka topic match the resource through the Kafka admin
//! protocol on the cluster's bootstrap address. Creates, grows partitions (refuses to shrink),
//! applies config, reverts config changed outside the resource on every resync, and deletes per
//! deletionPolicy behind a finalizer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use rivulet_admin_client::{AdminClient, ConfigEntry, SOURCE_TOPIC_CONFIG};
use tracing::{info, warn};

use crate::conditions::set_condition;
use crate::context::Ctx;
use crate::crd::{DeletionPolicy, KafkaCluster, KafkaTopic, KafkaTopicStatus};
use crate::patches::{add_finalizer, patch_status, remove_finalizer};
use crate::presets::TOPIC_CONFIG_KEYS;

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
    Ok(patch_status(&api, kt, kt.status.as_ref(), &status).await?)
}

/// The bootstrap address of the referenced cluster, or why there is none yet.
async fn bootstrap(
    ctx: &Ctx,
    ns: &str,
    kt: &KafkaTopic,
) -> Result<Result<(String, KafkaCluster), (String, String)>, Error> {
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
        .clone()
        .and_then(|s| s.admin_address.or(s.bootstrap_address))
    {
        Some(b) => Ok(Ok((b, kc))),
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
        let all = api.list(&ListParams::default()).await?.items;
        if let Some(other) = claim_owner(kt, &all).filter(|o| !same_resource(o, kt)) {
            ctx.event(
                kt,
                false,
                "NotOwner",
                "Delete",
                format!(
                    "topic {topic} is managed by KafkaTopic {}; left as it is",
                    other.name_any()
                ),
            )
            .await;
        } else if kt.spec.deletion_policy == DeletionPolicy::Delete {
            match bootstrap(ctx, &ns, kt).await? {
                Ok((addr, kc)) => {
                    let mut admin =
                        crate::security::admin::connect(&ctx.client, &kc, &addr, ADMIN_TIMEOUT)
                            .await?;
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
        remove_finalizer(&api, kt, FINALIZER).await?;
        return Ok(Action::await_change());
    }
    add_finalizer(&api, kt, FINALIZER).await?;

    let g = kt.metadata.generation;
    let mut status = kt.status.clone().unwrap_or_default();
    status.observed_generation = g;
    status.topic_name = Some(topic.clone());

    // Refusals that need no cluster: unknown config keys, a topic another resource manages.
    let mut refusal = None;
    let unknown = unknown_config_keys(&kt.spec.config);
    if !unknown.is_empty() {
        refusal = Some((
            "InvalidConfig".to_string(),
            format!(
                "spec.config has keys the broker doesn't support as topic config: {} (supported: {})",
                unknown.join(", "),
                TOPIC_CONFIG_KEYS.join(", ")
            ),
        ));
    } else if let Some(owner) = claim_owner(kt, &api.list(&ListParams::default()).await?.items)
        .filter(|o| !same_resource(o, kt))
        .cloned()
    {
        refusal = Some((
            "TopicClaimed".to_string(),
            format!(
                "Kafka topic {topic} on KafkaCluster {} is managed by KafkaTopic {} (created first); this resource is not applied",
                kt.spec.cluster_ref.name,
                owner.name_any()
            ),
        ));
    }
    if let Some((reason, msg)) = refusal {
        refuse(ctx, kt, &mut status, &reason, &msg).await;
        write_status(ctx, kt, status).await?;
        return Ok(Action::requeue(RESYNC));
    }

    let addr = match bootstrap(ctx, &ns, kt).await? {
        Ok(a) => a,
        Err((reason, msg)) => {
            set_condition(&mut status.conditions, "Ready", false, &reason, &msg, g);
            write_status(ctx, kt, status).await?;
            return Ok(Action::requeue(CLUSTER_WAIT));
        }
    };

    let (addr, kc) = addr;
    let mut admin = crate::security::admin::connect(&ctx.client, &kc, &addr, ADMIN_TIMEOUT).await?;
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
            status.adopted = Some(false);
            admin.describe_topic(&topic).await?
        }
        Some(t) => {
            // First sight of a topic this resource didn't create: adopted, so its config that
            // the spec doesn't name stays. (Unknown means adopted: the careful side.)
            let adopted = *status.adopted.get_or_insert(true);
            if adopted && status.topic_id.is_none() {
                out.changes.push(format!(
                    "adopted existing topic {topic}; its config not named in spec.config is kept"
                ));
            }
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
            sync_config(
                &mut admin,
                &topic,
                &kt.spec.config,
                adopted,
                &status.managed_config,
                &mut out,
            )
            .await?;
            admin.describe_topic(&topic).await?
        }
    };

    for c in &out.changes {
        info!(topic = %topic, "{c}");
        ctx.event(kt, false, "Applied", "Apply", c.clone()).await;
    }
    status.managed_config = kt.spec.config.keys().cloned().collect();
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
        refuse(ctx, kt, &mut status, &reason, &msg).await;
    }
    write_status(ctx, kt, status).await?;
    Ok(Action::requeue(RESYNC))
}

/// Ready=False and Degraded=True with `reason`; a Warning Event when the message is new.
async fn refuse(
    ctx: &Ctx,
    kt: &KafkaTopic,
    status: &mut KafkaTopicStatus,
    reason: &str,
    msg: &str,
) {
    let g = kt.metadata.generation;
    set_condition(&mut status.conditions, "Ready", false, reason, msg, g);
    let newly = !crate::conditions::get(&status.conditions, "Degraded")
        .is_some_and(|c| c.status == "True" && c.message == msg);
    set_condition(&mut status.conditions, "Degraded", true, reason, msg, g);
    if newly {
        ctx.event(kt, true, reason, "Validate", msg.to_string())
            .await;
    }
}

/// Keys of `config` that aren't topic configs the broker knows.
pub fn unknown_config_keys(config: &BTreeMap<String, String>) -> Vec<String> {
    config
        .keys()
        .filter(|k| !TOPIC_CONFIG_KEYS.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn same_resource(a: &KafkaTopic, b: &KafkaTopic) -> bool {
    a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
}

/// The KafkaTopic that manages `kt`'s Kafka topic among `all` (one namespace): of those naming
/// the same cluster and topic, the one created first (creation time, then name; ties on time
/// are common, timestamps have second resolution). Ownership is therefore recorded by the API
/// server itself and never moves while the owner exists: `clusterRef` and `topicName` are
/// immutable. A resource being deleted still owns until it is gone. `None` only when `all`
/// doesn't hold `kt` and no other claimant.
pub fn claim_owner<'a>(kt: &'a KafkaTopic, all: &'a [KafkaTopic]) -> Option<&'a KafkaTopic> {
    let topic = kt.topic_name();
    all.iter()
        .chain(std::iter::once(kt))
        .filter(|o| o.spec.cluster_ref.name == kt.spec.cluster_ref.name && o.topic_name() == topic)
        .min_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        })
}

/// What to change in a topic's config: keys to set (those the spec names whose value differs)
/// and keys to remove. Removed are topic-level keys the spec doesn't name — all of them on a
/// topic this resource created, only those it set earlier (`managed`) on an adopted one.
pub fn config_changes(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, ConfigEntry>,
    adopted: bool,
    managed: &[String],
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = want
        .iter()
        .filter(|(k, v)| have.get(*k).and_then(|e| e.value.as_deref()) != Some(v.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete = have
        .iter()
        .filter(|(k, e)| {
            e.source == SOURCE_TOPIC_CONFIG
                && !e.read_only
                && !want.contains_key(*k)
                && (!adopted || managed.contains(k))
        })
        .map(|(k, _)| k.clone())
        .collect();
    (set, delete)
}

fn is_unknown_topic(e: &rivulet_admin_client::Error) -> bool {
    matches!(
        e.kafka_error(),
        Some(kafka_protocol::ResponseError::UnknownTopicOrPartition)
    )
}

/// Applies [`config_changes`] in one IncrementalAlterConfigs (only the named keys change: a
/// key that is neither set nor removed keeps its value).
async fn sync_config(
    admin: &mut AdminClient,
    topic: &str,
    want: &BTreeMap<String, String>,
    adopted: bool,
    managed: &[String],
    out: &mut Outcome,
) -> Result<(), Error> {
    let have = admin.describe_topic_config(topic).await?;
    let (set, delete) = config_changes(want, &have, adopted, managed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kt(name: &str, created: &str, cluster: &str, topic: Option<&str>) -> KafkaTopic {
        let mut spec = json!({"clusterRef": {"name": cluster}, "partitions": 1});
        if let Some(t) = topic {
            spec["topicName"] = json!(t);
        }
        serde_json::from_value(json!({
            "apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": spec,
        }))
        .expect("KafkaTopic")
    }

    #[test]
    fn the_first_created_claimant_owns_the_topic() {
        let all = vec![
            kt("orders", "2026-01-01T00:00:05Z", "demo", None),
            kt(
                "orders-again",
                "2026-01-01T00:00:09Z",
                "demo",
                Some("orders"),
            ),
            kt("a-orders", "2026-01-01T00:00:05Z", "demo", Some("orders")),
            kt(
                "orders-elsewhere",
                "2026-01-01T00:00:01Z",
                "other",
                Some("orders"),
            ),
            kt(
                "early-other",
                "2026-01-01T00:00:00Z",
                "demo",
                Some("payments"),
            ),
        ];
        let owner = |i: usize| claim_owner(&all[i], &all).map(|o| o.name_any());
        // Same second: the name breaks the tie ("a-orders" < "orders").
        assert_eq!(owner(0).as_deref(), Some("a-orders"));
        assert_eq!(owner(1).as_deref(), Some("a-orders"));
        assert_eq!(owner(2).as_deref(), Some("a-orders"));
        // Another cluster, another topic: their own owners.
        assert_eq!(owner(3).as_deref(), Some("orders-elsewhere"));
        assert_eq!(owner(4).as_deref(), Some("early-other"));
        // Alone (not even in the list yet): itself.
        let lone = kt("new", "2026-01-02T00:00:00Z", "demo", Some("fresh"));
        assert_eq!(
            claim_owner(&lone, &all).map(|o| o.name_any()).as_deref(),
            Some("new")
        );
    }

    fn entry(value: &str, source: i8) -> ConfigEntry {
        ConfigEntry {
            value: Some(value.into()),
            source,
            read_only: false,
        }
    }

    #[test]
    fn config_changes_table() {
        let have = BTreeMap::from([
            (
                "retention.ms".to_string(),
                entry("1000", SOURCE_TOPIC_CONFIG),
            ),
            ("segment.ms".to_string(), entry("5000", SOURCE_TOPIC_CONFIG)),
            ("cleanup.policy".to_string(), entry("delete", 5)),
        ]);
        let want = BTreeMap::from([("retention.ms".to_string(), "2000".to_string())]);
        let set2000 = BTreeMap::from([("retention.ms".to_string(), "2000".to_string())]);
        let none: Vec<String> = vec![];
        let managed_seg = vec!["segment.ms".to_string()];
        type Case<'a> = (
            &'a str,
            bool,
            &'a [String],
            BTreeMap<String, String>,
            Vec<String>,
        );
        let cases: Vec<Case> = vec![
            // Created here: every topic-level key the spec doesn't name goes.
            (
                "created",
                false,
                &none,
                set2000.clone(),
                vec!["segment.ms".into()],
            ),
            // Adopted: unnamed keys stay, named ones are set.
            ("adopted", true, &none, set2000.clone(), vec![]),
            // Adopted, a key this resource set earlier left the spec: it goes.
            (
                "adopted, key dropped",
                true,
                &managed_seg,
                set2000.clone(),
                vec!["segment.ms".into()],
            ),
        ];
        for (what, adopted, managed, want_set, want_delete) in cases {
            let (set, delete) = config_changes(&want, &have, adopted, managed);
            assert_eq!(set, want_set, "{what}");
            assert_eq!(delete, want_delete, "{what}");
        }
        // Nothing differs: nothing to do; broker defaults (source 5) are never removed.
        let same = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let (set, delete) = config_changes(&same, &have, true, &[]);
        assert!(set.is_empty() && delete.is_empty());
    }

    #[test]
    fn unknown_topic_config_keys_are_named() {
        let c = BTreeMap::from([
            ("retention.ms".to_string(), "1".to_string()),
            ("retention.mss".to_string(), "1".to_string()),
            ("log.retention.ms".to_string(), "1".to_string()),
        ]);
        assert_eq!(
            unknown_config_keys(&c),
            vec!["log.retention.ms".to_string(), "retention.mss".to_string()]
        );
    }
}
