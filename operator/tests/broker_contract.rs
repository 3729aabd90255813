//! The broker pod contract: run rivulet-broker (cluster mode, against a rivulet-coordinator
//! started from its own rendered pod spec) with exactly the command and env the builder renders
//! for zone 1 — downward-API values filled in as the kubelet would, `$(VAR)` references expanded,
//! the ConfigMap's data added as envFrom does, cluster DNS names and pod bind addresses replaced
//! by loopback — and check it serves its probes and reports the id and rack it was given.

mod fixtures;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container};
use rivulet_admin_client::AdminClient;
use rivulet_operator::builders::*;

fn container(objects: &[DesiredObject], name: &str) -> Container {
    let o = objects
        .iter()
        .find(|o| o.name == name && o.kind == ObjKind::StatefulSet)
        .expect("statefulset");
    let sts: StatefulSet = serde_json::from_value(o.value.clone()).expect("statefulset");
    sts.spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0]
        .clone()
}

/// `$(NAME)` expansion as Kubernetes does for env values.
fn expand(v: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = v.to_string();
    for (k, val) in env {
        out = out.replace(&format!("$({k})"), val);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rivulet-broker has no cluster mode yet: with --coordinator it exits 'not available in this build yet'"]
async fn broker_serves_with_the_rendered_pod_spec() {
    run_rendered_broker(true).await;
}

/// Everything rendered except RIVULET_COORDINATOR (the broker can't serve it yet) and the
/// cluster-wide default replication factor: every other env value must be accepted and the
/// probes, id and rack must hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_serves_with_the_rendered_pod_spec_standalone() {
    run_rendered_broker(false).await;
}

async fn run_rendered_broker(cluster_mode: bool) {
    let (Some(broker_bin), Some(coord_bin)) = (
        support::find_binary("rivulet-broker"),
        support::find_binary("rivulet-coordinator"),
    ) else {
        eprintln!("SKIPPED: rivulet-broker and rivulet-coordinator must both be built (release)");
        return;
    };
    let kc = fixtures::three_zone_cluster();
    let built = build_cluster(&kc);
    let dir = tempfile::tempdir().expect("tempdir");

    // Coordinator from its rendered args, on loopback.
    let coord = container(&built.objects, "demo-coordinator");
    let zk_port = support::free_port();
    let coord_admin = support::free_port();
    let coord_data = dir.path().join("coordinator");
    let args: Vec<String> = coord
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            a.replace(
                &format!("0.0.0.0:{COORDINATOR_CLIENT_PORT}"),
                &format!("127.0.0.1:{zk_port}"),
            )
            .replace(
                &format!("0.0.0.0:{COORDINATOR_ADMIN_PORT}"),
                &format!("127.0.0.1:{coord_admin}"),
            )
            .replace(COORDINATOR_DATA_DIR, &coord_data.display().to_string())
        })
        .collect();
    let _coord = support::Proc(
        Command::new(&coord_bin)
            .args(&args)
            .spawn()
            .expect("spawn coordinator"),
    );
    let zk: SocketAddr = format!("127.0.0.1:{zk_port}").parse().expect("addr");
    assert!(
        support::wait_for_port(zk, Duration::from_secs(20)),
        "coordinator did not listen"
    );

    // Broker of zone 1, pod ordinal 1000 (= broker id).
    let c = container(&built.objects, "demo-broker-z1");
    assert_eq!(
        c.command.clone().unwrap_or_default(),
        ["/usr/local/bin/rivulet-broker"]
    );
    let kafka_port = support::free_port();
    let admin_port = support::free_port();
    let pod_name = "demo-broker-z1-1000";
    let headless_dns = format!("{pod_name}.demo-broker-headless.kafka.svc:{KAFKA_PORT}");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in c.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from.and_then(|f| f.field_ref)) {
            (Some(v), _) => expand(&v, &env),
            (None, Some(f)) if f.field_path == "metadata.name" => pod_name.to_string(),
            (None, Some(f))
                if f.field_path == "metadata.labels['apps.kubernetes.io/pod-index']" =>
            {
                "1000".into()
            }
            (None, other) => panic!("{}: unexpected source {other:?}", e.name),
        };
        env.insert(e.name, value);
    }
    // envFrom: the rendered ConfigMap.
    let cm = built
        .objects
        .iter()
        .find(|o| o.name == "demo-broker-config")
        .expect("cm");
    let cm: ConfigMap = serde_json::from_value(cm.value.clone()).expect("configmap");
    env.extend(cm.data.unwrap_or_default());
    assert_eq!(env["RIVULET_ADVERTISED_ADDR"], headless_dns);
    // Cluster DNS and pod bind addresses -> loopback; the volume mount -> a temp dir.
    let loopback = |v: &str| {
        v.replace(&headless_dns, &format!("127.0.0.1:{kafka_port}"))
            .replace(
                &format!("0.0.0.0:{KAFKA_PORT}"),
                &format!("127.0.0.1:{kafka_port}"),
            )
            .replace(
                &format!("0.0.0.0:{BROKER_ADMIN_PORT}"),
                &format!("127.0.0.1:{admin_port}"),
            )
            .replace(
                &format!("demo-coordinator.kafka.svc:{COORDINATOR_CLIENT_PORT}"),
                &zk.to_string(),
            )
            .replace(
                BROKER_DATA_DIR,
                &dir.path().join("broker").display().to_string(),
            )
    };
    if !cluster_mode {
        // Standalone is one broker: it rightly refuses the 3-way default replication too.
        assert!(env.remove("RIVULET_COORDINATOR").is_some());
        assert!(env.remove("RIVULET_DEFAULT_REPLICATION_FACTOR").is_some());
    }
    let mut cmd = Command::new(&broker_bin);
    cmd.env_clear();
    for (k, v) in &env {
        cmd.env(k, loopback(v));
    }
    let _broker = support::Proc(cmd.spawn().expect("spawn broker"));
    let kafka: SocketAddr = format!("127.0.0.1:{kafka_port}").parse().expect("addr");
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    assert!(
        support::wait_for_port(kafka, Duration::from_secs(30)),
        "broker did not listen"
    );

    for probe in [c.readiness_probe.as_ref(), c.liveness_probe.as_ref()] {
        let path = probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
            .expect("http probe");
        let mut ok = false;
        for _ in 0..200 {
            if support::http_get(admin, &path).is_some_and(|(s, _)| s == 200) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "{path} never answered 200");
    }

    let mut client = AdminClient::connect(&kafka.to_string(), Duration::from_secs(10))
        .await
        .expect("admin connect");
    let cluster = client.describe_cluster().await.expect("metadata");
    let me = cluster
        .brokers
        .iter()
        .find(|b| b.id == 1000)
        .expect("broker 1000 registered");
    assert_eq!(me.rack.as_deref(), Some("eu-west-1b"));
    assert_eq!(format!("{}:{}", me.host, me.port), kafka.to_string());
}
