//! The broker pod contract: run rivulet-coordinator and rivulet-broker with exactly the command
//! and env the builders render — downward-API values filled in as the kubelet would, `$(VAR)`
//! references expanded, the ConfigMap's data added as envFrom does, cluster DNS names and pod bind
//! addresses replaced by loopback — and check they serve their probes, report the id and rack
//! they were given, and (cluster mode: one broker per zone) that a real client (librdkafka)
//! produces and consumes through the rendered bootstrap address.

mod fixtures;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use rivulet_admin_client::AdminClient;
use rivulet_operator::builders::*;

use support::pods::{container, kubelet_env};

/// The rendered coordinator, on a loopback port; returns the process and its client address.
fn start_coordinator(
    built: &ClusterObjects,
    bin: &Path,
    dir: &Path,
) -> (support::Proc, SocketAddr) {
    let coord = container(&built.objects, "demo-coordinator");
    let zk_port = support::free_port();
    let coord_admin = support::free_port();
    let coord_data = dir.join("coordinator");
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
    let proc = support::Proc(
        Command::new(bin)
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn coordinator"),
    );
    let zk: SocketAddr = format!("127.0.0.1:{zk_port}").parse().expect("addr");
    assert!(
        support::wait_for_port(zk, Duration::from_secs(20)),
        "coordinator did not listen"
    );
    (proc, zk)
}

/// One rendered broker pod: zone index, ordinal (= broker id) and its loopback ports.
struct BrokerPod {
    id: i32,
    zone: usize,
    kafka: SocketAddr,
    admin: SocketAddr,
    container: Container,
    env: BTreeMap<String, String>,
}

fn render_broker(
    built: &ClusterObjects,
    zone: usize,
    zk: SocketAddr,
    dir: &Path,
    cluster_mode: bool,
) -> BrokerPod {
    let c = container(&built.objects, &broker_sts_name("demo", zone));
    assert_eq!(
        c.command.clone().unwrap_or_default(),
        ["/usr/local/bin/rivulet-broker"]
    );
    let id = zone_first_id(zone);
    let kafka: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .expect("addr");
    let admin: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .expect("addr");
    let pod_name = format!("{}-{id}", broker_sts_name("demo", zone));
    let headless_dns = format!("{pod_name}.demo-broker-headless.kafka.svc:{KAFKA_PORT}");
    let mut env = kubelet_env(built, &c, &pod_name, id, "demo-broker-config");
    assert_eq!(env["RIVULET_ADVERTISED_ADDR"], headless_dns);
    if !cluster_mode {
        // Standalone is one broker: it rightly refuses the 3-way default replication too.
        assert!(env.remove("RIVULET_COORDINATOR").is_some());
        assert!(env.remove("RIVULET_DEFAULT_REPLICATION_FACTOR").is_some());
    }
    // Cluster DNS and pod bind addresses -> loopback; the volume mount -> a temp dir.
    let data = dir.join(format!("broker-{id}"));
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .replace(&headless_dns, &kafka.to_string())
                .replace(&format!("0.0.0.0:{KAFKA_PORT}"), &kafka.to_string())
                .replace(&format!("0.0.0.0:{BROKER_ADMIN_PORT}"), &admin.to_string())
                .replace(
                    &format!("demo-coordinator.kafka.svc:{COORDINATOR_CLIENT_PORT}"),
                    &zk.to_string(),
                )
                .replace(BROKER_DATA_DIR, &data.display().to_string());
            (k, v)
        })
        .collect();
    BrokerPod {
        id,
        zone,
        kafka,
        admin,
        container: c,
        env,
    }
}

fn start_broker(pod: &BrokerPod, bin: &Path, dir: &Path) -> support::Proc {
    let log = std::fs::File::create(dir.join(format!("broker-{}.log", pod.id))).expect("log");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(&pod.env)
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    support::Proc(cmd.spawn().expect("spawn broker"))
}

fn log_of(dir: &Path, id: i32) -> String {
    let text = std::fs::read_to_string(dir.join(format!("broker-{id}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The pod's readiness and liveness probes answer 200.
async fn wait_probes(pod: &BrokerPod, dir: &Path) {
    assert!(
        support::wait_for_port(pod.kafka, Duration::from_secs(30)),
        "broker {} did not listen:\n{}",
        pod.id,
        log_of(dir, pod.id)
    );
    for probe in [
        pod.container.readiness_probe.as_ref(),
        pod.container.liveness_probe.as_ref(),
    ] {
        let path = probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
            .expect("http probe");
        let mut ok = false;
        for _ in 0..300 {
            if support::http_get(pod.admin, &path).is_some_and(|(s, _)| s == 200) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            ok,
            "broker {}: {path} never answered 200:\n{}",
            pod.id,
            log_of(dir, pod.id)
        );
    }
}

fn binaries() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    match (
        support::find_binary("rivulet-broker"),
        support::find_binary("rivulet-coordinator"),
    ) {
        (Some(b), Some(c)) => Some((b, c)),
        _ => {
            eprintln!(
                "SKIPPED: rivulet-broker and rivulet-coordinator must both be built (release)"
            );
            None
        }
    }
}

/// Every rendered env value except RIVULET_COORDINATOR and the default replication factor, one
/// broker (zone 1): accepted, probes and id/rack hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_serves_with_the_rendered_pod_spec_standalone() {
    let Some((broker_bin, coord_bin)) = binaries() else {
        return;
    };
    let built = build_cluster(&fixtures::three_zone_cluster());
    let dir = tempfile::tempdir().expect("tempdir");
    let (_coord, zk) = start_coordinator(&built, &coord_bin, dir.path());
    let pod = render_broker(&built, 1, zk, dir.path(), false);
    let _broker = start_broker(&pod, &broker_bin, dir.path());
    wait_probes(&pod, dir.path()).await;

    let mut client = AdminClient::connect(&pod.kafka.to_string(), Duration::from_secs(10))
        .await
        .expect("admin connect");
    let cluster = client.describe_cluster().await.expect("metadata");
    let me = cluster
        .brokers
        .iter()
        .find(|b| b.id == 1000)
        .expect("broker 1000 registered");
    assert_eq!(me.rack.as_deref(), Some("eu-west-1b"));
    assert_eq!(format!("{}:{}", me.host, me.port), pod.kafka.to_string());
}

/// Cluster mode: the rendered coordinator and one rendered broker per zone (pod ordinal 0 of each
/// zone's StatefulSet). They form one cluster with the rendered ids and racks, and librdkafka
/// produces (acks=all, RF=3) and consumes through the rendered bootstrap address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_form_a_cluster_with_the_rendered_pod_specs() {
    let Some((broker_bin, coord_bin)) = binaries() else {
        return;
    };
    let kc = fixtures::three_zone_cluster();
    let built = build_cluster(&kc);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_coord, zk) = start_coordinator(&built, &coord_bin, dir.path());
    let pods: Vec<BrokerPod> = (0..kc.spec.zones.len())
        .map(|z| render_broker(&built, z, zk, dir.path(), true))
        .collect();
    let _brokers: Vec<support::Proc> = pods
        .iter()
        .map(|p| start_broker(p, &broker_bin, dir.path()))
        .collect();
    for p in &pods {
        wait_probes(p, dir.path()).await;
    }

    // The rendered bootstrap address is the bootstrap Service's DNS name; that Service selects
    // every broker pod on the Kafka port, so the name stands for the list of brokers.
    let svc = built
        .objects
        .iter()
        .find(|o| o.kind == ObjKind::Service && o.name == bootstrap_name("demo"))
        .expect("bootstrap service");
    assert_eq!(
        built.bootstrap_address,
        format!("{}.kafka.svc:{KAFKA_PORT}", bootstrap_name("demo"))
    );
    assert_eq!(svc.value["spec"]["ports"][0]["port"], KAFKA_PORT as i64);
    let selector = svc.value["spec"]["selector"]
        .as_object()
        .expect("selector")
        .clone();
    for z in 0..kc.spec.zones.len() {
        let sts = built
            .objects
            .iter()
            .find(|o| o.kind == ObjKind::StatefulSet && o.name == broker_sts_name("demo", z))
            .expect("broker statefulset");
        let pod_labels = &sts.value["spec"]["template"]["metadata"]["labels"];
        for (k, v) in &selector {
            assert_eq!(&pod_labels[k], v, "bootstrap selector {k} vs zone {z} pods");
        }
    }
    let bootstrap = built.bootstrap_address.replace(
        &built.bootstrap_address,
        &pods
            .iter()
            .map(|p| p.kafka.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );

    // Every broker registered with its rendered id, rack (= zone) and advertised address.
    let mut admin = AdminClient::connect(&bootstrap, Duration::from_secs(10))
        .await
        .expect("admin connect");
    let start = Instant::now();
    let cluster = loop {
        let c = admin.describe_cluster().await.expect("metadata");
        if c.brokers.len() == pods.len() || start.elapsed() > Duration::from_secs(30) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for p in &pods {
        let b = cluster
            .brokers
            .iter()
            .find(|b| b.id == p.id)
            .unwrap_or_else(|| panic!("broker {} not registered: {:?}", p.id, cluster.brokers));
        assert_eq!(b.rack.as_deref(), Some(kc.spec.zones[p.zone].as_str()));
        assert_eq!(format!("{}:{}", b.host, b.port), p.kafka.to_string());
    }

    let topic = "contract";
    admin
        .create_topic(
            topic,
            3,
            3,
            &BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]),
        )
        .await
        .expect("create topic");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let sent: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    for (i, v) in sent.iter().enumerate() {
        let key = i.to_string();
        producer
            .send(
                FutureRecord::to(topic)
                    .partition((i % 3) as i32)
                    .key(&key)
                    .payload(v),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {v}: {e}"));
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "contract-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got: Vec<String> = Vec::new();
    let start = Instant::now();
    while got.len() < sent.len() && start.elapsed() < Duration::from_secs(30) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    got.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got, want, "consumed through {bootstrap}");
}
