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
        self.api.insert(
            KT,
            json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
                   "metadata": {"name": name, "namespace": "kafka"}, "spec": spec}),
        );
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
