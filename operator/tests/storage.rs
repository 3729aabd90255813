//! Storage growth against the in-memory Kubernetes API (which refuses what the real API server
//! refuses: a changed volumeClaimTemplates, a claim shrink, an expansion the StorageClass
//! doesn't allow). Manual size increases, refusals and GitOps re-applies need no broker; the
//! autoscaling tests measure a real rivulet-broker whose log dir is a size-limited tmpfs
//! (root only), and play the volume resizer by remounting it larger.

mod fixtures;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rivulet_operator::cluster_controller::reconcile;
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::KafkaCluster;
use rivulet_operator::metrics::Metrics;
use serde_json::{json, Value};
use support::fakeapi::FakeApi;

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters";
const STS: &str = "/apis/apps/v1/namespaces/kafka/statefulsets";
const PVC: &str = "/api/v1/namespaces/kafka/persistentvolumeclaims";
const SC: &str = "/apis/storage.k8s.io/v1/storageclasses";

struct World {
    api: FakeApi,
    ctx: Arc<Ctx>,
}

impl World {
    fn with_ctx(kc: KafkaCluster, hosts: &[(String, String)]) -> Self {
        let api = FakeApi::new();
        let mut v = serde_json::to_value(&kc).expect("json");
        v["metadata"]
            .as_object_mut()
            .expect("meta")
            .retain(|k, _| k == "name" || k == "namespace");
        api.insert(KC, v);
        let mut ctx = Ctx::build(api.client("kafka"), Arc::new(Metrics::default()));
        ctx.log_dirs.hosts = hosts.iter().cloned().collect();
        ctx.log_dirs.timeout = Duration::from_secs(3);
        Self {
            api,
            ctx: Arc::new(ctx),
        }
    }
    fn new(kc: KafkaCluster) -> Self {
        Self::with_ctx(kc, &[])
    }
    fn storage_class(&self, name: &str, expandable: Option<bool>) {
        let mut sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                            "metadata": {"name": name}, "provisioner": "rivulet.dev/tmpfs"});
        if let Some(e) = expandable {
            sc["allowVolumeExpansion"] = json!(e);
        }
        self.api.insert(SC, sc);
    }
    fn spec(&self) -> Value {
        self.api.get(KC, "demo").expect("kc")["spec"].clone()
    }
    fn set_spec(&self, f: impl FnOnce(&mut Value)) {
        let mut spec = self.spec();
        f(&mut spec);
        self.api.update_spec(KC, "demo", spec);
    }
    async fn reconcile(&self) {
        let v = self.api.get(KC, "demo").expect("cluster");
        let kc: KafkaCluster = serde_json::from_value(v).expect("typed");
        reconcile(Arc::new(kc), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
    }
    /// Plays the StatefulSet controller: sets ready, and each broker's claim created from the
    /// template (labelled with the selector, bound at the requested size).
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
            if name.contains("coordinator") {
                continue;
            }
            let start = s["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
            let tmpl = &s["spec"]["volumeClaimTemplates"][0];
            for o in 0..r.as_i64().unwrap_or(0) {
                let claim = format!("data-{name}-{}", start + o);
                if self.api.get(PVC, &claim).is_some() {
                    continue;
                }
                let size = tmpl["spec"]["resources"]["requests"]["storage"].clone();
                self.api.insert(
                    PVC,
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": claim, "namespace": "kafka",
                                        "labels": s["spec"]["selector"]["matchLabels"]},
                           "spec": {"storageClassName": tmpl["spec"]["storageClassName"],
                                    "accessModes": ["ReadWriteOnce"],
                                    "resources": {"requests": {"storage": size}}},
                           "status": {"phase": "Bound", "capacity": {"storage": size}}}),
                );
            }
        }
    }
    /// Plays the resizer: every claim's capacity follows its request.
    fn resize_all(&self) {
        for p in self.api.list(PVC) {
            let name = p["metadata"]["name"].as_str().expect("name").to_string();
            let req = p["spec"]["resources"]["requests"]["storage"].clone();
            self.api.set_status(
                PVC,
                &name,
                json!({"phase": "Bound", "capacity": {"storage": req}}),
            );
        }
    }
    fn requests(&self) -> Vec<String> {
        self.api
            .list(PVC)
            .iter()
            .map(|p| {
                p["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }
    fn status(&self) -> Value {
        self.api.get(KC, "demo").expect("kc")["status"].clone()
    }
    fn condition(&self, t: &str) -> Value {
        self.status()["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == t).cloned())
            .unwrap_or(Value::Null)
    }
    fn event_writes(&self) -> usize {
        self.api.writes().iter().filter(|w| w.is_event()).count()
    }
    fn events_with(&self, reason: &str) -> Vec<Value> {
        self.api
            .list("/apis/events.k8s.io/v1/namespaces/kafka/events")
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }
}

/// A running cluster: created, settled, claims bound, Ready.
async fn running(w: &World) {
    w.reconcile().await;
    w.settle();
    w.reconcile().await;
    assert_eq!(w.condition("Ready")["status"], "True", "{}", w.status());
}

#[tokio::test]
async fn manual_size_increase_grows_claims_and_recreates_statefulsets_with_orphan() {
    let w = World::new(fixtures::three_zone_cluster());
    w.storage_class("gp3", Some(true));
    running(&w).await;
    assert_eq!(w.requests(), vec!["100Gi"; 6]);

    w.set_spec(|s| s["storage"]["size"] = json!("200Gi"));
    w.api.clear_writes();
    w.reconcile().await;

    // Every claim grows in place, whatever zone's StatefulSet rolls first.
    assert_eq!(w.requests(), vec!["200Gi"; 6]);
    assert_eq!(w.condition("Degraded")["status"], "False", "{}", w.status());
    let writes = w.api.object_writes();
    let deletes: Vec<_> = writes.iter().filter(|x| x.method == "DELETE").collect();
    assert!(!deletes.is_empty(), "{writes:?}");
    for d in &deletes {
        assert!(d.path.contains("/statefulsets/"), "{d:?}");
        assert_eq!(d.propagation.as_deref(), Some("Orphan"), "{d:?}");
    }
    // Zone by zone: later zones wait until the recreated one settles.
    for _ in 0..4 {
        w.settle();
        w.reconcile().await;
    }
    for s in w.api.list(STS) {
        let want = if s["metadata"]["name"] == "demo-coordinator" {
            "1Gi"
        } else {
            "200Gi"
        };
        assert_eq!(
            s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], want,
            "{}",
            s["metadata"]["name"]
        );
    }
    assert_eq!(w.condition("Ready")["status"], "True", "{}", w.status());
    let deleted: Vec<String> = w
        .api
        .writes()
        .iter()
        .filter(|x| x.method == "DELETE" && x.path.contains("/statefulsets/"))
        .map(|x| x.path.rsplit('/').next().unwrap_or("").to_string())
        .collect();
    let mut zones = deleted.clone();
    zones.sort();
    zones.dedup();
    assert_eq!(
        zones,
        ["demo-broker-z0", "demo-broker-z1", "demo-broker-z2"],
        "each broker StatefulSet recreated once, the coordinator never"
    );
    assert_eq!(zones.len(), deleted.len(), "{deleted:?}");
    assert_eq!(w.events_with("StorageGrown").len(), 6);
    // status.brokers names every broker with its claim and the effective size.
    let brokers = w.status()["brokers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(brokers.len(), 6);
    assert_eq!(brokers[2]["id"], 1000);
    assert_eq!(brokers[2]["pvc"], "data-demo-broker-z1-1000");
    assert_eq!(brokers[2]["requested"], "200Gi");
}

#[tokio::test]
async fn applying_claim_template_changes_in_place_is_what_the_api_refuses() {
    // The in-memory API refuses what the real one does: this is the wedge the recreate avoids.
    let w = World::new(fixtures::three_zone_cluster());
    w.storage_class("gp3", Some(true));
    running(&w).await;
    let mut sts = w.api.get(STS, "demo-broker-z0").expect("sts");
    sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        json!("200Gi");
    let client = w.api.client("kafka");
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client,
        "kafka",
        &kube::core::ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
    );
    let err = api
        .patch(
            "demo-broker-z0",
            &kube::api::PatchParams::apply("test").force(),
            &kube::api::Patch::Apply(&sts),
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("Forbidden"), "{err}");
}

#[tokio::test]
async fn storage_class_without_expansion_is_refused_once_with_a_condition() {
    let w = World::new(fixtures::three_zone_cluster());
    w.storage_class("gp3", Some(false));
    running(&w).await;
    w.set_spec(|s| s["storage"]["size"] = json!("200Gi"));
    w.reconcile().await;
    let c = w.condition("StorageAutoscaling");
    assert_eq!(c["status"], "False", "{}", w.status());
    assert_eq!(c["reason"], "ExpansionNotAllowed");
    assert!(c["message"].as_str().unwrap_or("").contains("gp3"), "{c}");
    assert_eq!(w.requests(), vec!["100Gi"; 6], "nothing patched");
    assert_eq!(w.events_with("ExpansionNotAllowed").len(), 1);
    assert_eq!(w.status()["brokers"][0]["phase"], "Refused");

    // No retry storm: once the zones have rolled, reconciles write no Event and patch no claim.
    for _ in 0..4 {
        w.settle();
        w.reconcile().await;
    }
    w.api.clear_writes();
    for _ in 0..3 {
        w.settle();
        w.reconcile().await;
    }
    assert_eq!(w.event_writes(), 0, "{:?}", w.api.writes());
    assert!(
        !w.api
            .object_writes()
            .iter()
            .any(|x| x.path.contains("persistentvolumeclaims")),
        "{:?}",
        w.api.writes()
    );

    // The class gains expansion: growth resumes, with one Event saying so.
    w.storage_class("gp3", Some(true));
    w.reconcile().await;
    assert_eq!(w.requests(), vec!["200Gi"; 6]);
    assert_eq!(w.condition("StorageAutoscaling")["status"], "True");
    assert_eq!(w.events_with("StorageAutoscalingResumed").len(), 1);
}

#[tokio::test]
async fn missing_storage_class_is_refused() {
    let w = World::new(fixtures::three_zone_cluster());
    running(&w).await;
    w.set_spec(|s| s["storage"]["size"] = json!("150Gi"));
    w.reconcile().await;
    let c = w.condition("StorageAutoscaling");
    assert_eq!(c["status"], "False", "{}", w.status());
    assert_eq!(c["reason"], "StorageClassMissing");
    assert_eq!(w.requests(), vec!["100Gi"; 6]);
    assert_eq!(w.events_with("StorageClassMissing").len(), 1);
}

#[tokio::test]
async fn reapplying_the_original_spec_never_shrinks() {
    let w = World::new(fixtures::three_zone_cluster());
    w.storage_class("gp3", Some(true));
    running(&w).await;
    // Autoscaling grew one claim (as the tmpfs tests below do for real).
    w.api.update_spec(
        PVC,
        "data-demo-broker-z1-1001",
        json!({
            "storageClassName": "gp3", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "130Gi"}}}),
    );
    w.resize_all();
    // GitOps re-applies the original manifest: same spec, a new generation.
    let spec = w.spec();
    w.set_spec(|s| s["logLevel"] = json!("debug"));
    w.set_spec(|s| *s = spec.clone());
    w.api.clear_writes();
    for _ in 0..3 {
        w.settle();
        w.reconcile().await;
    }
    let mut req = w.requests();
    req.sort();
    assert_eq!(req.last().map(String::as_str), Some("130Gi"));
    assert!(
        !w.api
            .object_writes()
            .iter()
            .any(|x| x.path.contains("persistentvolumeclaims") || x.method == "DELETE"),
        "{:?}",
        w.api.object_writes()
    );
    let b = &w.status()["brokers"][3];
    assert_eq!(b["id"], 1001);
    assert_eq!(b["requested"], "130Gi", "effective size in status");
    assert_eq!(
        w.spec()["storage"]["size"],
        "100Gi",
        "never written into spec"
    );
}

// ---- Autoscaling against a real broker on a size-limited filesystem ----

/// A tmpfs of `size` bytes mounted on a temporary directory; unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().to_path_buf();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: mounting a tmpfs needs root (the storage autoscaling tests measure a real full-able filesystem)");
            return None;
        }
        Some(Self { _dir: dir, path })
    }
    fn resize(&self, size: u64) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {}", self.path.display());
    }
    fn fill(&self, name: &str, bytes: usize) {
        std::fs::write(self.path.join(name), vec![7u8; bytes]).expect("fill");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

const MI: u64 = 1 << 20;

/// One zone, one broker (id 0) whose log dir is `fs`, 64Mi, autoscaling on.
fn small_cluster(mode: &str) -> KafkaCluster {
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.zones = vec!["zone-a".into()];
    kc.spec.brokers_per_zone = 1;
    kc.spec.config.clear();
    kc.spec.storage.size = "64Mi".into();
    kc.spec.storage.storage_class_name = Some("rivulet-local".into());
    let mut auto: Value = json!({"enabled": true, "targetUtilizationPercent": 60,
        "criticalUtilizationPercent": 90, "maxSize": "128Mi", "minIncrement": "8Mi",
        "incrementPercent": 10, "marginPercent": 5, "cooldown": "6h", "checkInterval": "1s",
        "predictionHorizon": "0s", "mode": mode});
    auto["mode"] = json!(mode);
    kc.spec.storage.autoscaling = Some(serde_json::from_value(auto).expect("policy"));
    kc
}

fn broker_on(fs: &Path) -> Option<(support::Proc, std::net::SocketAddr)> {
    let data = fs.join("data");
    std::fs::create_dir_all(&data).ok()?;
    support::start_broker(&data)
}

async fn tick(w: &World) {
    // checkInterval is 1s: each tick measures again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.reconcile().await;
}

fn pod_addr() -> String {
    "demo-broker-z0-0.demo-broker-headless.kafka.svc:9092".to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_grows_a_filling_brokers_claim_then_waits_out_the_cooldown() {
    let Some(fs) = Tmpfs::mount(64 * MI) else {
        return;
    };
    let Some((_broker, addr)) = broker_on(&fs.path) else {
        return;
    };
    let w = World::with_ctx(small_cluster("Enforce"), &[(pod_addr(), addr.to_string())]);
    w.storage_class("rivulet-local", Some(true));
    running(&w).await;
    tick(&w).await;
    assert_eq!(w.requests(), vec!["64Mi"]);
    let b = w.status()["brokers"][0].clone();
    assert_eq!(b["phase"], "Ok", "{b}");
    assert_eq!(b["storageTotalBytes"], 64 * MI, "{b}");
    assert_eq!(w.condition("StorageAutoscaling")["reason"], "Active");

    // 43.7Mi of 64Mi: 68.3 % > 60 %. Step: max(8Mi, 10 %) = 8Mi, but landing at 55 % needs
    // 79.5Mi, rounded up to 80Mi (the broker's own files are a few KiB).
    fs.fill("ballast-1", (43.7 * MI as f64) as usize);
    tick(&w).await;
    assert_eq!(w.requests(), vec!["80Mi"], "{}", w.status());
    let b = w.status()["brokers"][0].clone();
    assert_eq!(b["phase"], "Growing", "{b}");
    assert!(b["lastScaleTime"].is_string(), "{b}");
    let grown = w.events_with("StorageGrown");
    assert_eq!(grown.len(), 1);
    let note = grown[0]["note"].as_str().unwrap_or("");
    assert!(
        note.contains("broker 0") && note.contains("64Mi → 80Mi") && note.contains("Threshold"),
        "{note}"
    );

    // The resizer grows the filesystem live; the broker reports it; nothing more to do.
    fs.resize(80 * MI);
    w.resize_all();
    tick(&w).await;
    let b = w.status()["brokers"][0].clone();
    assert_eq!(b["storageTotalBytes"], 80 * MI, "{b}");
    assert_eq!(b["phase"], "Ok", "{b}");
    assert_eq!(w.requests(), vec!["80Mi"]);

    // Above the target again (51.7Mi of 80Mi = 65 %): the 6 h cooldown holds.
    fs.fill("ballast-2", 8 * MI as usize);
    tick(&w).await;
    assert_eq!(w.requests(), vec!["80Mi"], "{}", w.status());
    let msg = w.status()["brokers"][0]["message"].clone();
    assert!(msg.as_str().unwrap_or("").contains("cooldown"), "{msg}");

    // Critical (72.7Mi of 80Mi > 90 %): emergency growth ignores the cooldown; clamped to maxSize.
    fs.fill("ballast-3", 21 * MI as usize);
    tick(&w).await;
    assert_eq!(w.requests(), vec!["128Mi"], "{}", w.status());
    let note = w
        .events_with("StorageGrown")
        .iter()
        .filter_map(|e| e["note"].as_str().map(str::to_string))
        .find(|n| n.contains("80Mi → 128Mi"))
        .unwrap_or_default();
    assert!(note.contains("Emergency"), "{note}");

    // At maxSize and critical again (117.7Mi of 128Mi): a refusal, not another patch.
    fs.resize(128 * MI);
    w.resize_all();
    fs.fill("ballast-4", 45 * MI as usize);
    tick(&w).await;
    assert_eq!(w.requests(), vec!["128Mi"]);
    let c = w.condition("StorageAutoscaling");
    assert_eq!(c["status"], "False", "{}", w.status());
    assert_eq!(c["reason"], "MaxSizeReached");
    assert_eq!(w.events_with("MaxSizeReached").len(), 1);

    let metrics = w.ctx.metrics.encode();
    assert!(
        metrics.contains("rivulet_operator_storage_scales_total{reason=\"Emergency\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("storage_requested_bytes{"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_only_reports_and_patches_nothing() {
    let Some(fs) = Tmpfs::mount(64 * MI) else {
        return;
    };
    let Some((_broker, addr)) = broker_on(&fs.path) else {
        return;
    };
    let w = World::with_ctx(
        small_cluster("RecommendOnly"),
        &[(pod_addr(), addr.to_string())],
    );
    w.storage_class("rivulet-local", Some(true));
    running(&w).await;
    fs.fill("ballast", (43.7 * MI as f64) as usize);
    tick(&w).await;
    tick(&w).await;
    assert_eq!(w.requests(), vec!["64Mi"]);
    assert!(!w
        .api
        .object_writes()
        .iter()
        .any(|x| x.path.contains("persistentvolumeclaims")),);
    let b = w.status()["brokers"][0].clone();
    assert_eq!(b["phase"], "Recommended", "{b}");
    assert_eq!(b["recommendedSize"], "80Mi", "{b}");
    assert_eq!(w.condition("StorageAutoscaling")["reason"], "RecommendOnly");
    assert_eq!(
        w.events_with("StorageGrowthRecommended").len(),
        1,
        "one Event per recommendation, not per check"
    );
}
