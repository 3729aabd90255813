//! Scale-in drain: the KafkaCluster reconcile on the in-memory Kubernetes API, against a real
//! coordinator and two real brokers of one zone (ids 0 and 1). Lowering brokersPerZone 2→1 is
//! first refused while a topic of replication factor 2 exists (the StatefulSet keeps two pods),
//! then drains broker 1 through AlterPartitionReassignments under the replication throttle, and
//! only then shrinks the StatefulSet; the throttle is removed at the end.

mod fixtures;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_admin_client::AdminClient;
use rivulet_operator::cluster_controller::reconcile;
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::KafkaCluster;
use rivulet_operator::metrics::Metrics;
use serde_json::{json, Value};
use support::fakeapi::FakeApi;
use support::{find_binary, free_port, wait_for_port, Proc};

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters";
const STS: &str = "/apis/apps/v1/namespaces/kafka/statefulsets";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";
const T: Duration = Duration::from_secs(10);

fn coordinator(dir: &Path) -> Option<(Proc, String)> {
    let bin = find_binary("rivulet-coordinator")?;
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .args(["--client-addr", &addr])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.join("coordinator"))
        .args([
            "--tick-time-ms",
            "100",
            "--fsync",
            "false",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn rivulet-coordinator");
    let p = Proc(child);
    assert!(
        wait_for_port(addr.parse().expect("addr"), T),
        "coordinator did not listen"
    );
    Some((p, addr))
}

fn broker(dir: &Path, id: i32, coordinator: &str) -> Option<(Proc, String)> {
    let bin = find_binary("rivulet-broker")?;
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .args(["--broker-id", &id.to_string(), "--rack", "zone-a"])
        .args(["--listen-addr", &addr, "--advertised-addr", &addr])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.join(format!("broker-{id}")))
        .args(["--coordinator", coordinator])
        .args([
            "--replica-fetch-wait-max-ms",
            "100",
            "--replica-fetch-backoff-ms",
            "100",
        ])
        .args(["--replica-lag-time-max-ms", "2000"])
        .args([
            "--default-replication-factor",
            "1",
            "--offsets-topic-replication-factor",
            "1",
        ])
        .env("RIVULET_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn rivulet-broker");
    let p = Proc(child);
    assert!(
        wait_for_port(addr.parse().expect("addr"), T),
        "broker {id} did not listen"
    );
    Some((p, addr))
}

struct World {
    api: FakeApi,
    ctx: Arc<Ctx>,
}

impl World {
    async fn reconcile(&self) {
        let kc: KafkaCluster =
            serde_json::from_value(self.api.get(KC, "demo").expect("kc")).expect("typed");
        reconcile(Arc::new(kc), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
    }
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
    fn replicas(&self) -> Value {
        self.api.get(STS, "demo-broker-z0").expect("sts")["spec"]["replicas"].clone()
    }
    fn scaling(&self) -> Value {
        self.api.get(KC, "demo").expect("kc")["status"]["scaling"].clone()
    }
    fn event_reasons(&self) -> Vec<String> {
        self.api
            .list(EVENTS)
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// Replicas on broker `id`, over every topic.
async fn hosted_on(admin: &mut AdminClient, id: i32) -> usize {
    let state = admin.cluster_state().await.expect("metadata");
    state
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.replicas.contains(&id))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_brokers_per_zone_refuses_then_drains_then_shrinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_coord, zk)) = coordinator(dir.path()) else {
        eprintln!("SKIPPED: rivulet-coordinator is not built (cargo build --release)");
        return;
    };
    let Some((_b0, addr0)) = broker(dir.path(), 0, &zk) else {
        eprintln!("SKIPPED: rivulet-broker is not built (cargo build --release)");
        return;
    };
    let (_b1, _addr1) = broker(dir.path(), 1, &zk).expect("broker 1");
    let mut admin = AdminClient::connect(&addr0, T).await.expect("admin");
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin
        .describe_cluster()
        .await
        .map(|c| c.brokers.len())
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "both brokers register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .create_topic("orders", 6, 1, &BTreeMap::new())
        .await
        .expect("orders");
    admin
        .create_topic("wide", 1, 2, &BTreeMap::new())
        .await
        .expect("wide");
    let deadline = Instant::now() + Duration::from_secs(30);
    while hosted_on(&mut admin, 1).await < 2 {
        assert!(Instant::now() < deadline, "broker 1 hosts replicas");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One zone, two brokers; the bootstrap Service name maps to broker 0 (an /etc/hosts entry).
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.zones = vec!["zone-a".into()];
    kc.spec.storage.autoscaling = None;
    kc.spec.config.remove("default.replication.factor");
    kc.spec.scaling = Some(rivulet_operator::crd::ScalingSpec {
        rebalance_on_scale_out: false,
        throttle_bytes_per_second: 1 << 20,
    });
    let api = FakeApi::new();
    let mut v = serde_json::to_value(&kc).expect("json");
    v["metadata"]
        .as_object_mut()
        .expect("meta")
        .retain(|k, _| k == "name" || k == "namespace");
    api.insert(KC, v);
    let mut ctx = Ctx::build(api.client("kafka"), Arc::new(Metrics::default()));
    ctx.log_dirs
        .hosts
        .insert("demo-bootstrap.kafka.svc:9092".into(), addr0.clone());
    let w = World {
        api,
        ctx: Arc::new(ctx),
    };
    w.reconcile().await;
    w.settle();
    w.reconcile().await;
    assert_eq!(w.replicas(), 2);
    assert_eq!(
        w.api.get(KC, "demo").expect("kc")["status"]["bootstrapAddress"],
        "demo-bootstrap.kafka.svc:9092"
    );

    // 2 → 1 is refused while `wide` has replication factor 2.
    let mut spec = w.api.get(KC, "demo").expect("kc")["spec"].clone();
    spec["brokersPerZone"] = json!(1);
    w.api.update_spec(KC, "demo", spec);
    w.reconcile().await;
    w.settle();
    w.reconcile().await;
    let s = w.scaling();
    assert_eq!(s["phase"], "Refused", "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or("")
            .contains("wide has replication factor 2, but only 1 broker(s) would remain"),
        "{s}"
    );
    assert_eq!(w.replicas(), 2, "nothing shrinks while refused");
    assert!(w.event_reasons().contains(&"DrainRefused".to_string()));
    assert!(hosted_on(&mut admin, 1).await > 0);

    // Without it the drain runs, and the StatefulSet keeps broker 1 until it holds nothing.
    admin.delete_topic("wide").await.expect("delete wide");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut saw_draining = false;
    loop {
        w.reconcile().await;
        w.settle();
        let s = w.scaling();
        if s["phase"] == "Draining" {
            saw_draining = true;
            assert_eq!(s["brokers"], json!([1]), "{s}");
            assert_eq!(w.replicas(), 2, "the StatefulSet waits for the drain");
        }
        if w.replicas() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "drain did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(saw_draining, "status.scaling showed the drain");
    assert_eq!(hosted_on(&mut admin, 1).await, 0, "broker 1 holds nothing");
    assert!(w.scaling().is_null(), "status.scaling cleared");
    let reasons = w.event_reasons();
    assert!(reasons.contains(&"DrainStarted".to_string()), "{reasons:?}");
    assert!(
        reasons.contains(&"DrainFinished".to_string()),
        "{reasons:?}"
    );

    // The throttle is gone: broker rates back to Kafka's default, no throttled replicas.
    let broker_cfg = admin
        .describe_broker_config(None)
        .await
        .expect("broker cfg");
    let rate = &broker_cfg["leader.replication.throttled.rate"];
    assert_eq!(
        rate.value.as_deref(),
        Some("9223372036854775807"),
        "{rate:?}"
    );
    let topic_cfg = admin
        .describe_topic_config("orders")
        .await
        .expect("topic cfg");
    assert_ne!(
        topic_cfg["leader.replication.throttled.replicas"].source,
        rivulet_admin_client::SOURCE_TOPIC_CONFIG
    );

    // Settled: nothing more to do, nothing written.
    w.reconcile().await;
    assert_eq!(w.replicas(), 1);
}
