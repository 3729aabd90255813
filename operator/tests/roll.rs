//! The broker roller against the in-memory Kubernetes API: StatefulSets are OnDelete and a
//! config change writes every zone at once, restarting nothing by itself; the roller deletes
//! one pod at a time, only after asking the brokers (a real standalone `rivulet-broker` where a
//! restart must be approved), reports `status.operation`, and holds on the pause annotation,
//! on an unready broker and on brokers it cannot ask — with one Event per change, not a storm.

mod fixtures;
mod support;

use std::sync::Arc;

use rivulet_operator::cluster_controller::reconcile;
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::KafkaCluster;
use rivulet_operator::metrics::Metrics;
use serde_json::{json, Value};
use support::fakeapi::FakeApi;

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters";
const STS: &str = "/apis/apps/v1/namespaces/kafka/statefulsets";
const PODS: &str = "/api/v1/namespaces/kafka/pods";
const PVC: &str = "/api/v1/namespaces/kafka/persistentvolumeclaims";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";

struct World {
    api: FakeApi,
    ctx: Arc<Ctx>,
}

/// Every broker pod address of a cluster, mapped to `to`.
fn hosts(kc: &KafkaCluster, to: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for z in 0..kc.spec.zones.len() {
        for o in 0..kc.spec.brokers_per_zone {
            let id = z as i32 * 1000 + o;
            out.push((
                format!("demo-broker-z{z}-{id}.demo-broker-headless.kafka.svc:9092"),
                to.to_string(),
            ));
        }
    }
    out
}

impl World {
    fn new(kc: KafkaCluster, hosts: &[(String, String)]) -> Self {
        let api = FakeApi::new();
        let mut v = serde_json::to_value(&kc).expect("json");
        v["metadata"]
            .as_object_mut()
            .expect("meta")
            .retain(|k, _| k == "name" || k == "namespace" || k == "annotations");
        api.insert(KC, v);
        let mut ctx = Ctx::build(api.client("kafka"), Arc::new(Metrics::default()));
        ctx.log_dirs.hosts = hosts.iter().cloned().collect();
        Self {
            api,
            ctx: Arc::new(ctx),
        }
    }
    async fn reconcile(&self) {
        let v = self.api.get(KC, "demo").expect("cluster");
        let kc: KafkaCluster = serde_json::from_value(v).expect("typed");
        reconcile(Arc::new(kc), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
    }
    fn set_spec(&self, f: impl FnOnce(&mut Value)) {
        let mut spec = self.api.get(KC, "demo").expect("kc")["spec"].clone();
        f(&mut spec);
        self.api.update_spec(KC, "demo", spec);
    }
    /// Plays the StatefulSet controller with `OnDelete`: the update revision follows the pod
    /// template; a missing pod is created at it (not ready: `ready_new`); existing pods keep
    /// their revision; the current revision moves once every pod has the update revision.
    fn settle(&self, ready_new: bool) {
        for s in self.api.list(STS) {
            let name = s["metadata"]["name"].as_str().expect("name").to_string();
            if name.contains("coordinator") {
                let r = s["spec"]["replicas"].clone();
                self.api.set_status(
                    STS,
                    &name,
                    json!({"observedGeneration": s["metadata"]["generation"], "replicas": r,
                           "readyReplicas": r, "updatedReplicas": r,
                           "currentRevision": "c", "updateRevision": "c"}),
                );
                continue;
            }
            let tmpl = &s["spec"]["template"];
            let rev = format!(
                "rev-{}",
                tmpl["metadata"]["annotations"]["rivulet.dev/config-hash"]
                    .as_str()
                    .unwrap_or("")
            );
            let start = s["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
            let n = s["spec"]["replicas"].as_i64().unwrap_or(0);
            let mut ready = 0;
            let mut updated = 0;
            for id in start..start + n {
                let pod = format!("{name}-{id}");
                let p = match self.api.get(PODS, &pod) {
                    Some(p) => p,
                    None => {
                        let mut labels = tmpl["metadata"]["labels"].clone();
                        labels["controller-revision-hash"] = json!(rev);
                        labels["apps.kubernetes.io/pod-index"] = json!(id.to_string());
                        self.api.insert(
                            PODS,
                            json!({"metadata": {"name": pod, "namespace": "kafka", "labels": labels},
                                   "status": {"conditions": [{"type": "Ready", "status": if ready_new { "True" } else { "False" }}]}}),
                        )
                    }
                };
                if pod_ready(&p) {
                    ready += 1;
                }
                if p["metadata"]["labels"]["controller-revision-hash"] == json!(rev) {
                    updated += 1;
                }
            }
            let current = if updated == n {
                rev.clone()
            } else {
                "old".into()
            };
            self.api.set_status(
                STS,
                &name,
                json!({"observedGeneration": s["metadata"]["generation"], "replicas": n,
                       "readyReplicas": ready, "updatedReplicas": updated,
                       "currentRevision": current, "updateRevision": rev}),
            );
        }
    }
    fn set_pod_ready(&self, pod: &str, ready: bool) {
        let s = if ready { "True" } else { "False" };
        self.api.set_status(
            PODS,
            pod,
            json!({"conditions": [{"type": "Ready", "status": s}]}),
        );
    }
    fn pods(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .api
            .list(PODS)
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        n.sort();
        n
    }
    fn deleted_pods(&self) -> Vec<String> {
        self.api
            .writes()
            .into_iter()
            .filter(|w| w.method == "DELETE" && w.path.contains("/pods/"))
            .map(|w| w.path.rsplit('/').next().unwrap_or("").to_string())
            .collect()
    }
    fn operation(&self) -> Value {
        self.api.get(KC, "demo").expect("kc")["status"]["operation"].clone()
    }
    fn events(&self, reason: &str) -> Vec<Value> {
        self.api
            .list(EVENTS)
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }
    fn condition(&self, t: &str) -> Value {
        let kc = self.api.get(KC, "demo").expect("cluster");
        kc["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    }
}

fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Created, pods up and ready, Active.
async fn running(w: &World) {
    w.reconcile().await;
    w.settle(true);
    w.reconcile().await;
    assert_eq!(
        w.condition("Ready")["status"],
        "True",
        "{}",
        w.condition("Ready")
    );
    assert_eq!(w.operation()["state"], "Active", "{}", w.operation());
}

#[tokio::test]
async fn brokers_are_on_delete_and_a_config_change_restarts_nothing_by_itself() {
    let kc = fixtures::three_zone_cluster();
    // Nothing listens on port 1: asking the brokers fails at once.
    let w = World::new(kc.clone(), &hosts(&kc, "127.0.0.1:1"));
    running(&w).await;
    for s in w.api.list(STS) {
        if !s["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .contains("coordinator")
        {
            assert_eq!(s["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
        }
    }

    w.set_spec(|s| s["config"]["log.retention.ms"] = json!("3600000"));
    w.api.clear_writes();
    w.reconcile().await;
    let written: Vec<String> = w
        .api
        .object_writes()
        .into_iter()
        .map(|x| x.path)
        .filter(|p| p.contains("/statefulsets/"))
        .collect();
    assert_eq!(written.len(), 3, "every zone at once: {written:?}");

    // The StatefulSet controller sees the new template; every pod is stale. The roller must
    // ask the brokers, can't, and waits: nothing deleted, one Event however often it retries.
    w.settle(true);
    for _ in 0..3 {
        w.reconcile().await;
    }
    assert!(w.deleted_pods().is_empty(), "{:?}", w.deleted_pods());
    let op = w.operation();
    assert_eq!(op["state"], "Updating", "{op}");
    assert_eq!(op["reason"], "ClusterUnreachable", "{op}");
    assert_eq!(op["progress"], "0/6", "{op}");
    assert_eq!(w.events("RollClusterUnreachable").len(), 1);
    assert_eq!(w.condition("Progressing")["reason"], "RollingBrokers");
    assert_eq!(w.condition("Ready")["status"], "False");
}

#[tokio::test]
async fn the_pause_annotation_holds_the_roll_as_maintenance() {
    let mut kc = fixtures::three_zone_cluster();
    kc.metadata.annotations = Some(
        [("rivulet.dev/pause-roll".to_string(), "true".to_string())]
            .into_iter()
            .collect(),
    );
    let w = World::new(kc.clone(), &hosts(&kc, "127.0.0.1:1"));
    running(&w).await;
    w.set_spec(|s| s["config"]["log.retention.ms"] = json!("3600000"));
    w.reconcile().await;
    w.settle(true);
    w.reconcile().await;
    w.reconcile().await;
    assert!(w.deleted_pods().is_empty());
    let op = w.operation();
    assert_eq!(op["state"], "Maintenance", "{op}");
    assert_eq!(op["reason"], "Paused", "{op}");
    assert_eq!(op["progress"], "0/6", "{op}");
    assert_eq!(w.events("RollPaused").len(), 1);
}

#[tokio::test]
async fn an_unready_broker_holds_the_roll_and_is_named() {
    let kc = fixtures::three_zone_cluster();
    let w = World::new(kc.clone(), &hosts(&kc, "127.0.0.1:1"));
    running(&w).await;
    w.set_spec(|s| s["config"]["log.retention.ms"] = json!("3600000"));
    w.reconcile().await;
    w.settle(true);
    w.set_pod_ready("demo-broker-z1-1001", false);
    w.reconcile().await;
    assert!(w.deleted_pods().is_empty());
    let op = w.operation();
    assert_eq!(op["reason"], "BrokerNotReady", "{op}");
    assert_eq!(op["currentBroker"], 1001, "{op}");
}

/// One zone, one broker (id 0), whose address maps to a real standalone broker.
fn one_broker() -> KafkaCluster {
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.zones = vec!["zone-a".into()];
    kc.spec.brokers_per_zone = 1;
    kc.spec.config.clear();
    kc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_restart_deletes_one_pod_and_the_roll_ends_when_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, addr)) = support::start_broker(dir.path()) else {
        return;
    };
    let kc = one_broker();
    let w = World::new(kc.clone(), &hosts(&kc, &addr.to_string()));
    running(&w).await;
    w.set_spec(|s| s["config"]["log.retention.ms"] = json!("3600000"));
    w.reconcile().await;
    w.settle(true);
    w.api.clear_writes();
    w.reconcile().await;
    assert_eq!(w.deleted_pods(), ["demo-broker-z0-0"]);
    let op = w.operation();
    assert_eq!(op["state"], "Updating", "{op}");
    assert_eq!(op["reason"], "Restarting", "{op}");
    assert_eq!(op["currentBroker"], 0, "{op}");
    assert_eq!(op["progress"], "0/1", "{op}");
    let ev = w.events("RestartingBroker");
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("broker 0") && n.contains("pod template revision")),
        "{ev:?}"
    );

    // The StatefulSet controller brings the pod back at the new revision, not ready yet: the
    // roll is not over until it is.
    w.settle(false);
    w.reconcile().await;
    let op = w.operation();
    assert_eq!(op["state"], "Updating", "{op}");
    assert_eq!(op["reason"], "BrokerNotReady", "{op}");
    assert_eq!(op["progress"], "1/1", "{op}");
    w.set_pod_ready("demo-broker-z0-0", true);
    w.settle(true);
    w.reconcile().await;
    assert_eq!(w.operation()["state"], "Active", "{}", w.operation());
    assert_eq!(w.events("RollFinished").len(), 1);
    assert_eq!(w.pods(), ["demo-broker-z0-0"]);
    assert_eq!(w.deleted_pods(), ["demo-broker-z0-0"], "restarted once");
    assert_eq!(w.condition("Ready")["status"], "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waiting_for_an_offline_resize_restarts_only_its_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_broker, addr)) = support::start_broker(dir.path()) else {
        return;
    };
    let kc = one_broker();
    let w = World::new(kc.clone(), &hosts(&kc, &addr.to_string()));
    running(&w).await;
    w.api.insert(
        PVC,
        json!({"metadata": {"name": "data-demo-broker-z0-0", "namespace": "kafka"},
               "spec": {"resources": {"requests": {"storage": "200Gi"}}},
               "status": {"capacity": {"storage": "100Gi"},
                          "conditions": [{"type": "FileSystemResizePending", "status": "True"}]}}),
    );
    w.api.clear_writes();
    w.reconcile().await;
    assert_eq!(w.deleted_pods(), ["demo-broker-z0-0"]);
    let ev = w.events("RestartingBroker");
    assert!(
        ev[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("offline filesystem resize")),
        "{ev:?}"
    );
    assert_eq!(w.operation()["progress"], "0/1");
}
