//! The verbs the operator's code really uses, per resource, derived by running its reconciles
//! (create, roll, grow storage, recreate a StatefulSet, delete; a topic waiting for its
//! cluster) against the in-memory API, plus the controllers' watches. The result must equal
//! `operator/tests/chart/operator-rbac.json`, which the chart test checks the rendered
//! ClusterRole/Roles grant — so a new call in the code can't ship without its RBAC (issue 11:
//! server-side apply that creates is authorized as `create`).

mod fixtures;

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rivulet_operator::context::Ctx;
use rivulet_operator::crd::{KafkaCluster, KafkaTopic, KafkaUser};
use rivulet_operator::metrics::Metrics;
use rivulet_operator::{cluster_controller, topic_controller, user_controller};
use serde_json::{json, Value};
use support::fakeapi::FakeApi;

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters";
const KT: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkatopics";
const KU: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkausers";
const STS: &str = "/apis/apps/v1/namespaces/kafka/statefulsets";
const PVC: &str = "/api/v1/namespaces/kafka/persistentvolumeclaims";
const SC: &str = "/apis/storage.k8s.io/v1/storageclasses";

fn cluster(api: &FakeApi) -> KafkaCluster {
    serde_json::from_value(api.get(KC, "demo").expect("kc")).expect("typed")
}

fn settle(api: &FakeApi) {
    for s in api.list(STS) {
        let name = s["metadata"]["name"].as_str().expect("name").to_string();
        let r = s["spec"]["replicas"].clone();
        api.set_status(
            STS,
            &name,
            json!({"observedGeneration": s["metadata"]["generation"], "replicas": r,
                   "readyReplicas": r, "updatedReplicas": r,
                   "currentRevision": "rev", "updateRevision": "rev"}),
        );
        let start = s["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
        for o in 0..r.as_i64().unwrap_or(0) {
            let claim = format!("data-{name}-{}", start + o);
            if name.contains("coordinator") || api.get(PVC, &claim).is_some() {
                continue;
            }
            api.insert(
                PVC,
                json!({"metadata": {"name": claim, "namespace": "kafka",
                                    "labels": s["spec"]["selector"]["matchLabels"]},
                       "spec": {"storageClassName": "gp3",
                                "resources": {"requests": {"storage": "100Gi"}}},
                       "status": {"capacity": {"storage": "100Gi"}}}),
            );
        }
    }
}

async fn derived() -> BTreeMap<(String, String), BTreeSet<String>> {
    let api = FakeApi::new();
    let mut v = serde_json::to_value(fixtures::three_zone_cluster()).expect("json");
    v["metadata"]
        .as_object_mut()
        .expect("meta")
        .retain(|k, _| k == "name" || k == "namespace");
    api.insert(KC, v);
    api.insert(
        SC,
        json!({"metadata": {"name": "gp3"}, "provisioner": "x", "allowVolumeExpansion": true}),
    );
    api.insert(
        KT,
        json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
               "metadata": {"name": "orders", "namespace": "kafka"},
               "spec": {"clusterRef": {"name": "demo"}, "partitions": 3, "replicationFactor": 3}}),
    );
    let ctx = Ctx::new(api.client("kafka"), Arc::new(Metrics::default()));
    {
        let run = |api: FakeApi, ctx: Arc<Ctx>| async move {
            cluster_controller::reconcile(Arc::new(cluster(&api)), ctx)
                .await
                .expect("reconcile");
        };
        // Topic first: its cluster has no bootstrap address yet, so it waits.
        let kt: KafkaTopic =
            serde_json::from_value(api.get(KT, "orders").expect("kt")).expect("kt");
        let _ = topic_controller::reconcile(Arc::new(kt), ctx.clone()).await;
        run(api.clone(), ctx.clone()).await;
        settle(&api);
        run(api.clone(), ctx.clone()).await;
        // A config change: existing objects are patched (apply), zone by zone.
        let mut spec: Value = api.get(KC, "demo").expect("kc")["spec"].clone();
        spec["config"]["log.retention.ms"] = json!("3600000");
        api.update_spec(KC, "demo", spec);
        for _ in 0..4 {
            run(api.clone(), ctx.clone()).await;
            settle(&api);
        }
        // Grow storage by hand: claims patched, StatefulSets recreated with orphan.
        let mut spec: Value = api.get(KC, "demo").expect("kc")["spec"].clone();
        spec["storage"]["size"] = json!("200Gi");
        api.update_spec(KC, "demo", spec);
        for _ in 0..4 {
            run(api.clone(), ctx.clone()).await;
            settle(&api);
        }
        api.delete_user(KC, "demo");
        run(api.clone(), ctx.clone()).await;

        // A cluster with a TLS listener (its CA and broker certificate Secrets) and a tls
        // KafkaUser (its client certificate Secret), then the user's deletion.
        let mut sec = serde_json::to_value(fixtures::three_zone_cluster()).expect("json");
        sec["metadata"] = json!({"name": "sec", "namespace": "kafka"});
        sec["spec"]["listeners"] =
            json!([{"name": "mtls", "port": 9093, "tls": true, "authentication": "tls"}]);
        api.insert(KC, sec);
        let kc: KafkaCluster =
            serde_json::from_value(api.get(KC, "sec").expect("sec")).expect("kc");
        cluster_controller::reconcile(Arc::new(kc), ctx.clone())
            .await
            .expect("reconcile sec");
        // A broker more: the broker certificate is issued again (its Secret patched).
        let mut spec: Value = api.get(KC, "sec").expect("sec")["spec"].clone();
        spec["brokersPerZone"] = json!(3);
        api.update_spec(KC, "sec", spec);
        let kc: KafkaCluster =
            serde_json::from_value(api.get(KC, "sec").expect("sec")).expect("kc");
        cluster_controller::reconcile(Arc::new(kc), ctx.clone())
            .await
            .expect("reconcile sec again");
        api.insert(
            KU,
            json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser",
                   "metadata": {"name": "audit", "namespace": "kafka"},
                   "spec": {"clusterRef": {"name": "sec"}, "authentication": {"type": "tls"}}}),
        );
        let user = |api: &FakeApi| -> Arc<KafkaUser> {
            Arc::new(serde_json::from_value(api.get(KU, "audit").expect("ku")).expect("typed"))
        };
        user_controller::reconcile(user(&api), ctx.clone())
            .await
            .expect("reconcile user");
        // Deleted after its cluster: the finalizer is released without the admin protocol.
        api.delete_user(KC, "sec");
        let kc: KafkaCluster =
            serde_json::from_value(api.get(KC, "sec").expect("sec")).expect("kc");
        cluster_controller::reconcile(Arc::new(kc), ctx.clone())
            .await
            .expect("delete sec");
        api.delete_user(KU, "audit");
        user_controller::reconcile(user(&api), ctx.clone())
            .await
            .expect("delete user");
    }
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (verb, group, resource) in api.verbs() {
        out.entry((group, resource)).or_default().insert(verb);
    }
    // The controllers list and watch what they own (main.rs builds them from this list).
    for (group, resource) in cluster_controller::WATCHED
        .iter()
        .chain(topic_controller::WATCHED)
        .chain(user_controller::WATCHED)
    {
        let e = out
            .entry((group.to_string(), resource.to_string()))
            .or_default();
        e.insert("list".into());
        e.insert("watch".into());
    }
    out
}

#[tokio::test]
async fn verbs_used_match_the_checked_in_rbac_list() {
    let got: Vec<Value> = derived()
        .await
        .into_iter()
        .map(|((g, r), verbs)| json!({"apiGroup": g, "resource": r, "verbs": verbs}))
        .collect();
    let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/chart/operator-rbac.json"
    );
    if std::env::var_os("RIVULET_UPDATE_RBAC").is_some() {
        std::fs::write(path, &text).expect("write");
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        want, text,
        "the operator's API calls changed: update {path} (RIVULET_UPDATE_RBAC=1) and the chart's RBAC"
    );
    // The issue-11 defect: applying objects that don't exist yet needs `create`.
    for r in [
        "statefulsets",
        "services",
        "configmaps",
        "poddisruptionbudgets",
    ] {
        assert!(text.contains(r), "{r}");
    }
}
