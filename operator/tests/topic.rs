//! KafkaTopic controller against a real rivulet-broker started here (Kubernetes in memory).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rivulet_admin_client::AdminClient;
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::KafkaTopic;
use rivulet_operator::metrics::Metrics;
use rivulet_operator::topic_controller::{reconcile, FINALIZER};
use serde_json::{json, Value};
use support::fakeapi::FakeApi;

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters";
const KT: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkatopics";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";

struct World {
    api: FakeApi,
    ctx: Arc<Ctx>,
    bootstrap: String,
}

impl World {
    fn new(bootstrap: &str) -> Self {
        let api = FakeApi::new();
        api.insert(
            KC,
            json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster",
                   "metadata": {"name": "demo", "namespace": "kafka"},
                   "spec": {"zones": ["a"], "brokersPerZone": 1, "storage": {"size": "1Gi"}},
                   "status": {"bootstrapAddress": bootstrap}}),
        );
        let ctx = Ctx::new(api.client("kafka"), Arc::new(Metrics::default()));
        Self {
            api,
            ctx,
            bootstrap: bootstrap.into(),
        }
    }
    fn add_topic(&self, name: &str, spec: Value) {
        self.add_topic_at(name, "2026-01-01T00:00:00Z", spec);
    }
    fn add_topic_at(&self, name: &str, created: &str, spec: Value) {
        self.api.insert(
            KT,
            json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
                   "metadata": {"name": name, "namespace": "kafka", "creationTimestamp": created},
                   "spec": spec}),
        );
    }
    fn events(&self, reason: &str) -> Vec<String> {
        self.api
            .list(EVENTS)
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| {
                format!(
                    "{} {}",
                    e["regarding"]["name"].as_str().unwrap_or(""),
                    e["note"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
    async fn reconcile(&self, name: &str) {
        let v = self.api.get(KT, name).expect("topic resource");
        let kt: KafkaTopic = serde_json::from_value(v).expect("typed topic");
        reconcile(Arc::new(kt), self.ctx.clone())
            .await
            .expect("reconcile");
    }
    fn status(&self, name: &str) -> Value {
        self.api
            .get(KT, name)
            .map(|v| v["status"].clone())
            .unwrap_or(Value::Null)
    }
    fn condition(&self, name: &str, t: &str) -> Value {
        self.status(name)["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    }
    fn edit_spec(&self, name: &str, f: impl FnOnce(&mut Value)) {
        let mut spec = self.api.get(KT, name).expect("topic")["spec"].clone();
        f(&mut spec);
        self.api.update_spec(KT, name, spec);
    }
    async fn admin(&self) -> AdminClient {
        AdminClient::connect(&self.bootstrap, Duration::from_secs(10))
            .await
            .expect("admin connect")
    }
}

async fn topic_config(admin: &mut AdminClient, topic: &str, key: &str) -> Option<String> {
    admin
        .describe_topic_config(topic)
        .await
        .expect("describe configs")
        .get(key)
        .and_then(|e| e.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_lifecycle_against_a_real_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, addr)) = support::start_broker(dir.path()) else {
        return;
    };
    let w = World::new(&addr.to_string());
    w.add_topic(
        "orders",
        json!({"clusterRef": {"name": "demo"}, "partitions": 3, "replicationFactor": 1,
               "config": {"retention.ms": "3600000"}, "deletionPolicy": "Delete"}),
    );

    // Create.
    w.reconcile("orders").await;
    let mut admin = w.admin().await;
    let t = admin
        .describe_topic("orders")
        .await
        .expect("describe")
        .expect("topic exists");
    assert_eq!(t.partitions, 3);
    assert_eq!(
        topic_config(&mut admin, "orders", "retention.ms")
            .await
            .as_deref(),
        Some("3600000")
    );
    assert_eq!(w.condition("orders", "Ready")["status"], "True");
    assert_eq!(w.status("orders")["partitions"], 3);
    let fins = w.api.get(KT, "orders").expect("kt")["metadata"]["finalizers"].clone();
    assert_eq!(fins, json!([FINALIZER]));

    // Grow partitions.
    w.edit_spec("orders", |s| s["partitions"] = json!(5));
    w.reconcile("orders").await;
    assert_eq!(
        admin
            .describe_topic("orders")
            .await
            .expect("d")
            .expect("t")
            .partitions,
        5
    );
    assert_eq!(w.status("orders")["partitions"], 5);

    // Shrinking is refused with a clear condition, the topic untouched.
    w.edit_spec("orders", |s| s["partitions"] = json!(2));
    w.reconcile("orders").await;
    assert_eq!(
        admin
            .describe_topic("orders")
            .await
            .expect("d")
            .expect("t")
            .partitions,
        5
    );
    let ready = w.condition("orders", "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "PartitionShrinkRefused");
    assert!(ready["message"]
        .as_str()
        .unwrap_or("")
        .contains("can't remove partitions"));

    // Config change.
    w.edit_spec("orders", |s| {
        s["partitions"] = json!(5);
        s["config"]["retention.ms"] = json!("7200000");
    });
    w.reconcile("orders").await;
    assert_eq!(
        topic_config(&mut admin, "orders", "retention.ms")
            .await
            .as_deref(),
        Some("7200000")
    );
    assert_eq!(w.condition("orders", "Ready")["status"], "True");

    // Drift made outside the resource is reverted on the next resync.
    admin
        .alter_topic_config(
            "orders",
            &BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
            &[],
        )
        .await
        .expect("alter outside");
    assert_eq!(
        topic_config(&mut admin, "orders", "retention.ms")
            .await
            .as_deref(),
        Some("1000")
    );
    w.reconcile("orders").await;
    assert_eq!(
        topic_config(&mut admin, "orders", "retention.ms")
            .await
            .as_deref(),
        Some("7200000")
    );

    // Delete with deletionPolicy Delete: the topic goes, then the finalizer.
    w.api.delete_user(KT, "orders").expect("marked");
    w.reconcile("orders").await;
    assert!(w.api.get(KT, "orders").is_none());
    assert_eq!(
        admin.describe_topic("orders").await.expect("describe"),
        None
    );

    // Delete with deletionPolicy Retain: the resource goes, the topic stays.
    w.add_topic(
        "audit",
        json!({"clusterRef": {"name": "demo"}, "partitions": 1, "deletionPolicy": "Retain"}),
    );
    w.reconcile("audit").await;
    w.api.delete_user(KT, "audit").expect("marked");
    w.reconcile("audit").await;
    assert!(w.api.get(KT, "audit").is_none());
    assert!(admin
        .describe_topic("audit")
        .await
        .expect("describe")
        .is_some());
}

#[tokio::test]
async fn missing_cluster_is_reported_not_fatal() {
    let w = World::new("127.0.0.1:1");
    w.add_topic(
        "lost",
        json!({"clusterRef": {"name": "nope"}, "partitions": 1}),
    );
    w.reconcile("lost").await;
    let ready = w.condition("lost", "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ClusterNotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_claimant_is_refused_and_never_deletes_the_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, addr)) = support::start_broker(dir.path()) else {
        return;
    };
    let w = World::new(&addr.to_string());
    w.add_topic_at(
        "orders",
        "2026-01-01T00:00:00Z",
        json!({"clusterRef": {"name": "demo"}, "partitions": 2}),
    );
    // Later, another resource names the same Kafka topic, with other settings.
    w.add_topic_at(
        "orders-copy",
        "2026-01-01T00:01:00Z",
        json!({"clusterRef": {"name": "demo"}, "topicName": "orders", "partitions": 6,
               "config": {"retention.ms": "1000"}}),
    );
    // Even reconciled first, the later one is refused and does nothing.
    w.reconcile("orders-copy").await;
    let ready = w.condition("orders-copy", "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "TopicClaimed");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or("")
            .contains("managed by KafkaTopic orders"),
        "{ready}"
    );
    let ev = w.events("TopicClaimed");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(ev[0].starts_with("orders-copy "), "{ev:?}");
    let mut admin = w.admin().await;
    assert_eq!(
        admin.describe_topic("orders").await.expect("describe"),
        None
    );

    w.reconcile("orders").await;
    assert_eq!(w.condition("orders", "Ready")["status"], "True");
    w.reconcile("orders-copy").await;
    let t = admin
        .describe_topic("orders")
        .await
        .expect("describe")
        .expect("topic");
    assert_eq!(t.partitions, 2, "the refused resource changed nothing");
    assert_eq!(
        topic_config(&mut admin, "orders", "retention.ms")
            .await
            .as_deref(),
        Some("604800000")
    );
    assert_eq!(
        w.events("TopicClaimed").len(),
        1,
        "one Event, not one per resync"
    );

    // Deleting the refused resource (deletionPolicy Delete) leaves the owner's topic alone.
    w.api.delete_user(KT, "orders-copy").expect("marked");
    w.reconcile("orders-copy").await;
    assert!(w.api.get(KT, "orders-copy").is_none());
    assert!(admin
        .describe_topic("orders")
        .await
        .expect("describe")
        .is_some());
    assert_eq!(w.events("NotOwner").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_a_topic_keeps_the_config_the_spec_does_not_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, addr)) = support::start_broker(dir.path()) else {
        return;
    };
    let w = World::new(&addr.to_string());
    let mut admin = w.admin().await;
    // A topic made outside the operator, with its own config.
    admin
        .create_topic(
            "legacy",
            2,
            1,
            &BTreeMap::from([
                ("segment.ms".to_string(), "3600000".to_string()),
                ("retention.ms".to_string(), "86400000".to_string()),
            ]),
        )
        .await
        .expect("create outside");
    w.add_topic(
        "legacy",
        json!({"clusterRef": {"name": "demo"}, "partitions": 2,
               "config": {"retention.ms": "7200000", "cleanup.policy": "delete"}}),
    );
    w.reconcile("legacy").await;
    assert_eq!(w.condition("legacy", "Ready")["status"], "True");
    assert_eq!(w.status("legacy")["adopted"], true);
    assert_eq!(
        w.status("legacy")["managedConfig"],
        json!(["cleanup.policy", "retention.ms"])
    );
    assert_eq!(
        topic_config(&mut admin, "legacy", "retention.ms")
            .await
            .as_deref(),
        Some("7200000")
    );
    // The key the spec doesn't name is still there, after the next resync too.
    w.reconcile("legacy").await;
    assert_eq!(
        topic_config(&mut admin, "legacy", "segment.ms")
            .await
            .as_deref(),
        Some("3600000")
    );
    assert!(w
        .events("Applied")
        .iter()
        .any(|e| e.contains("adopted existing topic legacy")));

    // A key this resource set and no longer names is removed (back to the default); the
    // unnamed one stays.
    w.edit_spec("legacy", |s| {
        s["config"]
            .as_object_mut()
            .expect("config")
            .remove("retention.ms");
    });
    w.reconcile("legacy").await;
    let have = admin
        .describe_topic_config("legacy")
        .await
        .expect("configs");
    assert_ne!(
        have["retention.ms"].source,
        rivulet_admin_client::SOURCE_TOPIC_CONFIG
    );
    assert_eq!(have["segment.ms"].value.as_deref(), Some("3600000"));
    assert_eq!(
        have["segment.ms"].source,
        rivulet_admin_client::SOURCE_TOPIC_CONFIG
    );
}

#[tokio::test]
async fn unknown_topic_config_keys_are_refused_before_the_cluster_is_asked() {
    // The cluster address is unreachable: the refusal needs no broker.
    let w = World::new("127.0.0.1:1");
    w.add_topic(
        "typo",
        json!({"clusterRef": {"name": "demo"}, "partitions": 1,
               "config": {"retention.mss": "1000"}}),
    );
    w.reconcile("typo").await;
    let ready = w.condition("typo", "Ready");
    assert_eq!(ready["reason"], "InvalidConfig");
    assert!(ready["message"]
        .as_str()
        .unwrap_or("")
        .contains("retention.mss"));
    assert_eq!(w.events("InvalidConfig").len(), 1);
}
