//! KafkaCluster reconcile against the in-memory Kubernetes API.

mod fixtures;

mod support;

use std::sync::Arc;

use kube::ResourceExt;
use rivulet_operator::cluster_controller::{reconcile, FINALIZER};
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::KafkaCluster;
use rivulet_operator::metrics::Metrics;
use serde_json::{json, Value};
use support::fakeapi::FakeApi;

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters";
const STS: &str = "/apis/apps/v1/namespaces/kafka/statefulsets";
const SVC: &str = "/api/v1/namespaces/kafka/services";
const CM: &str = "/api/v1/namespaces/kafka/configmaps";
const PDB: &str = "/apis/policy/v1/namespaces/kafka/poddisruptionbudgets";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";

struct World {
    api: FakeApi,
    ctx: Arc<Ctx>,
}

impl World {
    fn new(kc: KafkaCluster) -> Self {
        let api = FakeApi::new();
        let mut v = serde_json::to_value(&kc).expect("json");
        v["metadata"]
            .as_object_mut()
            .expect("meta")
            .retain(|k, _| k == "name" || k == "namespace");
        api.insert(KC, v);
        let ctx = Ctx::new(api.client("kafka"), Arc::new(Metrics::default()));
        Self { api, ctx }
    }
    fn cluster(&self, name: &str) -> Option<KafkaCluster> {
        self.api
            .get(KC, name)
            .map(|v| serde_json::from_value(v).expect("typed cluster"))
    }
    async fn reconcile(&self, name: &str) {
        let kc = self.cluster(name).expect("cluster exists");
        reconcile(Arc::new(kc), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
    }
    /// Plays the StatefulSet controller: every set fully rolled out and ready.
    fn settle(&self) {
        for s in self.api.list(STS) {
            let name = s["metadata"]["name"].as_str().expect("name").to_string();
            let r = s["spec"]["replicas"].clone();
            self.api.set_status(
                STS,
                &name,
                json!({"observedGeneration": s["metadata"]["generation"], "replicas": r,
                       "readyReplicas": r, "updatedReplicas": r,
                       "currentRevision": "rev", "updateRevision": "rev"}),
            );
        }
    }
    fn condition(&self, name: &str, t: &str) -> Value {
        let kc = self.api.get(KC, name).expect("cluster");
        kc["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    }
    fn events(&self) -> Vec<Value> {
        self.api.list(EVENTS)
    }
}

fn names(items: Vec<Value>) -> Vec<String> {
    let mut n: Vec<String> = items
        .iter()
        .map(|v| v["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn create_then_ready_then_nothing_written() {
    let w = World::new(fixtures::three_zone_cluster());
    w.reconcile("demo").await;

    assert_eq!(
        names(w.api.list(STS)),
        [
            "demo-broker-z0",
            "demo-broker-z1",
            "demo-broker-z2",
            "demo-coordinator"
        ]
    );
    assert_eq!(
        names(w.api.list(SVC)),
        [
            "demo-bootstrap",
            "demo-broker-headless",
            "demo-coordinator",
            "demo-coordinator-headless"
        ]
    );
    assert_eq!(names(w.api.list(CM)), ["demo-broker-config"]);
    assert_eq!(names(w.api.list(PDB)), ["demo-broker", "demo-coordinator"]);
    let kc = w.cluster("demo").expect("cluster");
    assert!(kc.finalizers().iter().any(|f| f == FINALIZER));
    let st = kc.status.expect("status");
    assert_eq!(
        st.bootstrap_address.as_deref(),
        Some("demo-bootstrap.kafka.svc:9092")
    );
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(w.condition("demo", "Progressing")["status"], "True");
    assert_eq!(w.condition("demo", "Ready")["status"], "False");
    // Every object is owned by the cluster.
    for s in w.api.list(STS) {
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "KafkaCluster");
    }
    let created = w
        .events()
        .iter()
        .filter(|e| e["reason"] == "Created")
        .count();
    assert_eq!(created, 11, "one Event per created object");

    // Pods come up: Ready, zones counted.
    w.settle();
    w.reconcile("demo").await;
    assert_eq!(w.condition("demo", "Ready")["status"], "True");
    assert_eq!(w.condition("demo", "Progressing")["status"], "False");
    let kc = w.api.get(KC, "demo").expect("cluster");
    assert_eq!(
        kc["status"]["zones"][2],
        json!({"zone": "eu-west-1c", "readyBrokers": 2, "desiredBrokers": 2})
    );
    let ready_since = w.condition("demo", "Ready")["lastTransitionTime"].clone();

    // The same spec again: nothing written at all, and no pod template touched.
    w.api.clear_writes();
    w.reconcile("demo").await;
    w.reconcile("demo").await;
    assert_eq!(
        w.api.writes(),
        vec![],
        "an unchanged cluster must cause no writes"
    );
    assert_eq!(
        w.condition("demo", "Ready")["lastTransitionTime"],
        ready_since
    );
}

#[tokio::test]
async fn scale_and_config_change_write_every_zone_at_once() {
    // Broker StatefulSets are OnDelete: writing them restarts no pod (the roller does, one
    // broker at a time: tests/roll.rs), so every zone is written in the same pass.
    let w = World::new(fixtures::three_zone_cluster());
    w.reconcile("demo").await;
    w.settle();
    w.reconcile("demo").await;
    let hash_before = w.api.get(STS, "demo-broker-z2").expect("sts")["spec"]["template"]
        ["metadata"]["annotations"]["rivulet.dev/config-hash"]
        .clone();

    let mut spec = w.api.get(KC, "demo").expect("kc")["spec"].clone();
    spec["brokersPerZone"] = json!(3);
    spec["config"]["log.retention.ms"] = json!("3600000");
    w.api.update_spec(KC, "demo", spec);
    w.api.clear_writes();
    w.reconcile("demo").await;

    let writes: Vec<String> = w.api.object_writes().into_iter().map(|x| x.path).collect();
    assert!(
        writes
            .iter()
            .any(|p| p.ends_with("/configmaps/demo-broker-config")),
        "{writes:?}"
    );
    for z in ["demo-broker-z0", "demo-broker-z1", "demo-broker-z2"] {
        assert!(
            writes
                .iter()
                .any(|p| p.ends_with(&format!("/statefulsets/{z}"))),
            "{z}: {writes:?}"
        );
        let s = w.api.get(STS, z).expect("sts");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }
    assert!(
        !writes.iter().any(|p| p.contains("coordinator")),
        "coordinator untouched: {writes:?}"
    );
    let cm = w.api.get(CM, "demo-broker-config").expect("cm");
    assert_eq!(cm["data"]["RIVULET_LOG_RETENTION_MS"], "3600000");
    assert_eq!(w.condition("demo", "Progressing")["reason"], "Applying");
    let z2 = w.api.get(STS, "demo-broker-z2").expect("sts");
    assert_ne!(
        z2["spec"]["template"]["metadata"]["annotations"]["rivulet.dev/config-hash"],
        hash_before
    );
    w.settle();
    w.reconcile("demo").await;
    assert_eq!(w.condition("demo", "Ready")["status"], "True");
    assert!(w.events().iter().any(|e| e["reason"] == "Updated"));
}

#[tokio::test]
async fn edits_to_owned_objects_are_reverted_with_an_event() {
    let w = World::new(fixtures::three_zone_cluster());
    w.reconcile("demo").await;
    w.settle();
    w.reconcile("demo").await;

    // `kubectl scale --replicas=0`, a label and an env value edited: the applied-hash
    // annotation stays, so only a field comparison sees it.
    let mut sts = w.api.get(STS, "demo-broker-z1").expect("sts");
    sts["spec"]["replicas"] = json!(0);
    sts["metadata"]["labels"]["rivulet.dev/zone"] = json!("elsewhere");
    let env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env");
    for e in env.iter_mut() {
        if e["name"] == "RIVULET_LOG_FORMAT" {
            e["value"] = json!("text");
        }
    }
    w.api.insert(STS, sts);
    let mut cm = w.api.get(CM, "demo-broker-config").expect("cm");
    cm["data"]["RIVULET_LOG_LEVEL"] = json!("trace");
    // A key nobody validated, added by hand: it would reach every broker through envFrom.
    cm["data"]["RIVULET_NUM_PARTITIONS"] = json!("7");
    w.api.insert(CM, cm);

    w.api.clear_writes();
    w.reconcile("demo").await;
    let mut writes: Vec<String> = w
        .api
        .object_writes()
        .into_iter()
        .map(|x| x.path)
        .filter(|p| !p.ends_with("/status"))
        .collect();
    writes.sort();
    writes.dedup();
    assert_eq!(
        writes,
        [
            "/api/v1/namespaces/kafka/configmaps/demo-broker-config",
            "/apis/apps/v1/namespaces/kafka/statefulsets/demo-broker-z1"
        ]
    );
    let sts = w.api.get(STS, "demo-broker-z1").expect("sts");
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["metadata"]["labels"]["rivulet.dev/zone"], "eu-west-1b");
    let cm = w.api.get(CM, "demo-broker-config").expect("cm");
    assert_eq!(cm["data"]["RIVULET_LOG_LEVEL"], "info");
    assert!(cm["data"].get("RIVULET_NUM_PARTITIONS").is_none(), "{cm}");
    let drift: Vec<String> = w
        .events()
        .iter()
        .filter(|e| e["reason"] == "DriftReverted")
        .map(|e| {
            format!(
                "{} {}",
                e["note"].as_str().unwrap_or(""),
                e["related"]["name"]
            )
        })
        .collect();
    assert_eq!(drift.len(), 2, "{drift:?}");
    let z1 = drift
        .iter()
        .find(|m| m.contains("demo-broker-z1"))
        .expect("event about the StatefulSet");
    for field in [
        "spec.replicas",
        "metadata.labels.rivulet.dev/zone",
        "spec.template.spec.containers[broker].env[RIVULET_LOG_FORMAT].value",
    ] {
        assert!(z1.contains(field), "{field} not in {z1}");
    }
    let cm_event = drift
        .iter()
        .find(|m| m.contains("demo-broker-config"))
        .expect("event about the ConfigMap");
    assert!(cm_event.contains("data.RIVULET_LOG_LEVEL"), "{cm_event}");
    assert!(
        cm_event.contains("data.RIVULET_NUM_PARTITIONS"),
        "{cm_event}"
    );

    // Reverted: the next reconcile writes nothing.
    w.settle();
    w.reconcile("demo").await;
    w.api.clear_writes();
    w.reconcile("demo").await;
    assert_eq!(w.api.object_writes(), vec![]);
}

#[tokio::test]
async fn invalid_spec_is_degraded_with_event_and_nothing_applied() {
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.config.insert("broker.id".into(), "3".into());
    kc.spec
        .config
        .insert("log.cleaner.enable".into(), "true".into());
    let w = World::new(kc);
    w.reconcile("demo").await;

    assert!(w.api.list(STS).is_empty());
    assert!(w.api.list(SVC).is_empty());
    assert!(w.api.list(CM).is_empty());
    let degraded = w.condition("demo", "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    let msg = degraded["message"].as_str().expect("message");
    assert!(
        msg.contains("[\"broker.id\"] is set by the operator"),
        "{msg}"
    );
    assert!(
        msg.contains("[\"log.cleaner.enable\"] is not a supported broker setting"),
        "{msg}"
    );
    let ev = w.events();
    assert!(
        ev.iter()
            .any(|e| e["reason"] == "InvalidSpec" && e["type"] == "Warning"),
        "{ev:?}"
    );

    // Fixing the spec recovers.
    let mut spec = w.api.get(KC, "demo").expect("kc")["spec"].clone();
    spec["config"] = json!({});
    w.api.update_spec(KC, "demo", spec);
    w.reconcile("demo").await;
    assert_eq!(w.condition("demo", "Degraded")["status"], "False");
    assert_eq!(w.api.list(STS).len(), 4);
}

#[tokio::test]
async fn removing_a_zone_is_refused_after_apply() {
    let w = World::new(fixtures::three_zone_cluster());
    w.reconcile("demo").await;
    let mut spec = w.api.get(KC, "demo").expect("kc")["spec"].clone();
    spec["zones"] = json!(["eu-west-1a", "eu-west-1c"]);
    w.api.update_spec(KC, "demo", spec);
    w.api.clear_writes();
    w.reconcile("demo").await;
    let writes: Vec<String> = w.api.object_writes().into_iter().map(|x| x.path).collect();
    assert!(writes.iter().all(|p| p.ends_with("/status")), "{writes:?}");
    assert!(w.condition("demo", "Degraded")["message"]
        .as_str()
        .unwrap_or("")
        .contains("may only be appended"));
}

#[tokio::test]
async fn delete_cleans_up_and_releases_the_finalizer() {
    let w = World::new(fixtures::three_zone_cluster());
    w.reconcile("demo").await;
    assert_eq!(w.api.list(STS).len(), 4);
    w.api.delete_user(KC, "demo").expect("marked for deletion");
    w.reconcile("demo").await;
    assert!(w.api.list(STS).is_empty());
    assert!(w.api.list(SVC).is_empty());
    assert!(w.api.list(CM).is_empty());
    assert!(w.api.list(PDB).is_empty());
    assert!(
        w.api.get(KC, "demo").is_none(),
        "finalizer released, object gone"
    );
    // Brokers were deleted before the coordinator.
    let deleted: Vec<String> = w
        .api
        .writes()
        .into_iter()
        .filter(|x| x.method == "DELETE" && x.path.contains("/statefulsets/"))
        .map(|x| x.path)
        .collect();
    assert!(
        deleted
            .last()
            .is_some_and(|p| p.ends_with("demo-coordinator")),
        "{deleted:?}"
    );
}

const SECRETS: &str = "/api/v1/namespaces/kafka/secrets";

fn secret_data(api: &FakeApi, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    use base64::Engine;
    let s = api.get(SECRETS, name)?;
    Some(
        s["data"]
            .as_object()?
            .iter()
            .map(|(k, v)| {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or(""))
                    .expect("base64");
                (k.clone(), String::from_utf8(b).expect("utf8"))
            })
            .collect(),
    )
}

/// A cluster with authentication gets its internal credentials Secret once: kept across
/// reconciles (the coordinator holds credentials made from it), repaired when a key goes,
/// not owned by the cluster (it outlives it, as the volumes do), and mounted by the brokers.
#[tokio::test]
async fn secured_cluster_gets_internal_credentials_once() {
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.listeners = Some(
        serde_json::from_value(json!([
            {"name": "sasl", "port": 9094, "authentication": "scram-sha-512"}
        ]))
        .expect("listeners"),
    );
    let w = World::new(kc);
    w.reconcile("demo").await;
    let name = "demo-internal-credentials";
    let first = secret_data(&w.api, name).expect("credentials secret");
    for k in [
        "broker-password",
        "operator-password",
        "coordinator-password",
        "bootstrap-users",
    ] {
        assert!(!first[k].is_empty(), "{k}");
    }
    assert_ne!(first["broker-password"], first["operator-password"]);
    assert_eq!(
        first["bootstrap-users"],
        format!("rivulet-operator={}\n", first["operator-password"])
    );
    let s = w.api.get(SECRETS, name).expect("secret");
    assert!(s["metadata"]["ownerReferences"].is_null(), "{s}");
    // The brokers mount it; no password appears in any object the operator applied.
    let sts = w.api.get(STS, "demo-broker-z0").expect("broker set");
    assert!(sts.to_string().contains(name));
    for o in w.api.list(STS).into_iter().chain(w.api.list(CM)) {
        for (k, v) in &first {
            assert!(
                !o.to_string().contains(v.as_str()),
                "{k} in {}",
                o["metadata"]["name"]
            );
        }
    }
    // The Events name the Secret, never its content.
    for e in w.events() {
        for v in first.values() {
            assert!(!e.to_string().contains(v.as_str()));
        }
    }

    // Settled: nothing rewritten, same passwords.
    w.settle();
    w.api.clear_writes();
    w.reconcile("demo").await;
    assert!(
        !w.api
            .object_writes()
            .iter()
            .any(|x| x.path.contains("/secrets")),
        "{:?}",
        w.api.object_writes()
    );
    assert_eq!(secret_data(&w.api, name).as_ref(), Some(&first));

    // A key removed by hand comes back; the others are kept.
    let mut s = w.api.get(SECRETS, name).expect("secret");
    s["data"]
        .as_object_mut()
        .expect("data")
        .remove("coordinator-password");
    w.api.insert(SECRETS, s);
    w.reconcile("demo").await;
    let repaired = secret_data(&w.api, name).expect("secret");
    assert_eq!(repaired["broker-password"], first["broker-password"]);
    assert_eq!(repaired["operator-password"], first["operator-password"]);
    assert!(!repaired["coordinator-password"].is_empty());
}

/// Without authentication anywhere, no credentials and no digest ACLs.
#[tokio::test]
async fn unsecured_cluster_has_no_internal_credentials() {
    let w = World::new(fixtures::three_zone_cluster());
    w.reconcile("demo").await;
    assert!(w.api.get(SECRETS, "demo-internal-credentials").is_none());
    let sts = w.api.get(STS, "demo-broker-z0").expect("broker set");
    assert!(!sts.to_string().contains("RIVULET_ZOOKEEPER_SET_ACL"));
}
