//! Prints the operator's figures against the in-memory Kubernetes API: RSS at rest, RSS while
//! reconciling 50 KafkaTopics (against a real rivulet-broker when one is built), and the time
//! from a KafkaCluster change to all its objects applied, and CPU and RSS while the storage
//! autoscaler watches 30 brokers (each measured with DescribeLogDirs against the real broker).
//! Figures only; nothing is asserted.

#[path = "../tests/support/fakeapi.rs"]
#[allow(dead_code)] // shared with the tests; the bench uses part of it
mod fakeapi;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fakeapi::FakeApi;
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::*;
use rivulet_operator::metrics::Metrics;
use rivulet_operator::{cluster_controller, topic_controller};
use serde_json::{json, Value};

const KC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/bench/kafkaclusters";
const KT: &str = "/apis/rivulet.dev/v1alpha1/namespaces/bench/kafkatopics";
const STS: &str = "/apis/apps/v1/namespaces/bench/statefulsets";

/// Prints the operator's figures (RSS, reconcile times) against an in-memory Kubernetes
/// API; uses a rivulet-broker built next to this binary or in $RIVULET_BIN_DIR when found.
#[derive(Parser, Debug)]
#[command(name = "bench-operator", version)]
struct Args {}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cluster_json(brokers: i32, retention: &str) -> Value {
    let spec = KafkaClusterSpec {
        zones: vec!["zone-a".into(), "zone-b".into(), "zone-c".into()],
        brokers_per_zone: brokers,
        broker_type: BrokerType::M5Large,
        resources: None,
        storage: BrokerStorage {
            size: "100Gi".into(),
            storage_class_name: None,
            autoscaling: None,
        },
        coordinator: CoordinatorSpec::default(),
        config: BTreeMap::from([("log.retention.ms".into(), retention.into())]),
        log_level: "info".into(),
        image: ImageSpec::default(),
        scaling: None,
        listeners: None,
        authorization: None,
    };
    json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster",
           "metadata": {"name": "bench", "namespace": "bench"}, "spec": spec})
}

fn settle(api: &FakeApi) {
    for s in api.list(STS) {
        let name = s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let r = s["spec"]["replicas"].clone();
        api.set_status(
            STS,
            &name,
            json!({"observedGeneration": s["metadata"]["generation"],
            "replicas": r, "readyReplicas": r, "updatedReplicas": r,
            "currentRevision": "x", "updateRevision": "x"}),
        );
    }
}

async fn reconcile_cluster(api: &FakeApi, ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let kc: KafkaCluster = serde_json::from_value(api.get(KC, "bench").unwrap_or_default())?;
    cluster_controller::reconcile(Arc::new(kc), ctx.clone()).await?;
    Ok(())
}

/// Reconciles (letting the in-memory StatefulSets settle between rounds) until a round writes
/// no object; returns the elapsed time and the rounds.
async fn converge(api: &FakeApi, ctx: &Arc<Ctx>) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    for round in 1..=20 {
        api.clear_writes();
        reconcile_cluster(api, ctx).await?;
        let objects = api
            .object_writes()
            .iter()
            .filter(|w| !w.path.ends_with("/status"))
            .count();
        settle(api);
        if objects == 0 {
            return Ok((start.elapsed(), round));
        }
    }
    Ok((start.elapsed(), 20))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn broker_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let here = exe.parent()?.join("rivulet-broker");
    let mut c = vec![here];
    if let Ok(d) = std::env::var("RIVULET_BIN_DIR") {
        c.push(PathBuf::from(d).join("rivulet-broker"));
    }
    c.into_iter().find(|p| p.is_file())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    Args::parse();
    let api = FakeApi::new();
    let ctx = Ctx::new(api.client("bench"), Arc::new(Metrics::default()));
    println!(
        "bench-operator: in-memory Kubernetes API, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("RSS at rest: {} KiB", rss_kib("VmRSS:"));

    // Cluster: create, then change brokersPerZone + config, repeated.
    let mut creates = Vec::new();
    let mut changes = Vec::new();
    let mut noops = Vec::new();
    let mut rounds = 0;
    for i in 0..20 {
        api.delete_user(KC, "bench");
        for s in api.list(STS) {
            let n = s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let _ = api.delete_user(STS, &n);
        }
        api.insert(KC, cluster_json(2, "1000"));
        let (t, _) = converge(&api, &ctx).await?;
        creates.push(t);
        let changed = cluster_json(3, &format!("{}", 2000 + i));
        api.update_spec(KC, "bench", changed["spec"].clone());
        let (t, r) = converge(&api, &ctx).await?;
        changes.push(t);
        rounds = r;
        let start = Instant::now();
        reconcile_cluster(&api, &ctx).await?;
        noops.push(start.elapsed());
    }
    println!(
        "KafkaCluster create -> all 11 objects applied: median {:?} (20 runs)",
        median(creates)
    );
    println!(
        "KafkaCluster change (brokersPerZone 2->3 + config) -> all objects applied, zone by zone: median {:?} over {rounds} reconcile rounds (20 runs)",
        median(changes)
    );
    println!(
        "KafkaCluster unchanged resync (no writes): median {:?}",
        median(noops)
    );
    println!("RSS after cluster runs: {} KiB", rss_kib("VmRSS:"));

    // 50 KafkaTopics against a real broker.
    let Some(bin) = broker_bin() else {
        println!("50 KafkaTopics: SKIPPED (rivulet-broker not built next to bench-operator)");
        return Ok(());
    };
    // Both probes stay bound until both ports are known, so the kernel cannot hand out one twice.
    let (probe, admin_probe) = (
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
    );
    let (port, admin_port) = (probe.local_addr()?.port(), admin_probe.local_addr()?.port());
    drop((probe, admin_probe));
    let data = std::env::temp_dir().join(format!("rivulet-bench-{}", std::process::id()));
    let addr = format!("127.0.0.1:{port}");
    let _broker = Proc(
        Command::new(bin)
            .args([
                "--broker-id",
                "0",
                "--listen-addr",
                &addr,
                "--advertised-addr",
                &addr,
            ])
            .args([
                "--admin-addr",
                &format!("127.0.0.1:{admin_port}"),
                "--data-dir",
                &data.display().to_string(),
            ])
            .env("RIVULET_LOG_LEVEL", "warn")
            .spawn()?,
    );
    let start = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("broker did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The topics only need the cluster's bootstrap address.
    api.set_status(KC, "bench", json!({"bootstrapAddress": addr}));
    for i in 0..50 {
        api.insert(KT, json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic",
            "metadata": {"name": format!("topic-{i}"), "namespace": "bench"},
            "spec": {"clusterRef": {"name": "bench"}, "partitions": 3, "config": {"retention.ms": "3600000"}}}));
    }
    let mut peak = 0;
    for pass in ["create", "resync"] {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let v = api.get(KT, &format!("topic-{i}")).unwrap_or_default();
            let kt: KafkaTopic = serde_json::from_value(v)?;
            tasks.push(tokio::spawn(topic_controller::reconcile(
                Arc::new(kt),
                ctx.clone(),
            )));
            peak = peak.max(rss_kib("VmRSS:"));
        }
        let mut failed = 0;
        for t in tasks {
            if !matches!(t.await, Ok(Ok(_))) {
                failed += 1;
            }
            peak = peak.max(rss_kib("VmRSS:"));
        }
        println!(
            "50 KafkaTopics {pass}: {:?} ({failed} failed), RSS now {} KiB",
            start.elapsed(),
            rss_kib("VmRSS:")
        );
    }
    println!(
        "RSS peak while reconciling 50 KafkaTopics: {peak} KiB (VmHWM {} KiB)",
        rss_kib("VmHWM:")
    );
    autoscaler_30_brokers(&addr).await?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// User + system CPU seconds of this process.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the state field.
    (ticks(11) + ticks(12)) / 100.0
}

/// 30 brokers (3 zones x 10) with autoscaling on and a 1 s check interval: every check reads
/// each broker's log dirs (all 30 pod addresses point at the one real broker) and decides.
async fn autoscaler_30_brokers(broker: &str) -> anyhow::Result<()> {
    const PVC: &str = "/api/v1/namespaces/bench/persistentvolumeclaims";
    let api = FakeApi::new();
    let mut ctx = Ctx::build(api.client("bench"), Arc::new(Metrics::default()));
    let mut kc = cluster_json(10, "1000");
    kc["spec"]["storage"]["autoscaling"] = json!({"enabled": true, "maxSize": "16Ti",
        "checkInterval": "1s", "targetUtilizationPercent": 80, "criticalUtilizationPercent": 99});
    for z in 0..3 {
        for o in 0..10 {
            let id = z * 1000 + o;
            ctx.log_dirs.hosts.insert(
                format!("bench-broker-z{z}-{id}.bench-broker-headless.bench.svc:9092"),
                broker.to_string(),
            );
            api.insert(
                PVC,
                json!({"metadata": {"name": format!("data-bench-broker-z{z}-{id}"),
                "namespace": "bench", "labels": {"rivulet.dev/cluster": "bench",
                "app.kubernetes.io/component": "broker"}},
                "spec": {"resources": {"requests": {"storage": "16Ti"}}},
                "status": {"capacity": {"storage": "16Ti"}}}),
            );
        }
    }
    let ctx = Arc::new(ctx);
    api.insert(KC, kc);
    converge(&api, &ctx).await?;
    let rss0 = rss_kib("VmRSS:");
    let (cpu0, wall0) = (cpu_secs(), Instant::now());
    let mut peak = 0;
    let mut checks = 0;
    let mut times = Vec::new();
    while wall0.elapsed() < Duration::from_secs(30) {
        let t = Instant::now();
        reconcile_cluster(&api, &ctx).await?;
        times.push(t.elapsed());
        checks += 1;
        peak = peak.max(rss_kib("VmRSS:"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu = cpu_secs() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let measured = api
        .get(KC, "bench")
        .map(|v| {
            v["status"]["brokers"]
                .as_array()
                .map(|b| {
                    b.iter()
                        .filter(|b| b["storageTotalBytes"].is_number())
                        .count()
                })
                .unwrap_or(0)
        })
        .unwrap_or(0);
    println!(
        "Storage autoscaler, 30 brokers, 1 s checks for {wall:.0} s: {checks} checks ({measured}/30 brokers measured), \
         check median {:?}, CPU {:.2} s = {:.1} % of one core, RSS {rss0} -> peak {peak} KiB",
        median(times),
        cpu,
        100.0 * cpu / wall
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    use super::Args;

    /// The CLI contract of every binary (`--help`, unknown flags refused), for this example.
    #[test]
    fn help_and_unknown_flags() {
        Args::command().debug_assert();
        assert!(Args::try_parse_from(["bench-operator"]).is_ok());
        let help = Args::try_parse_from(["bench-operator", "--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        let bad = Args::try_parse_from(["bench-operator", "--no-such-flag"]).unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::UnknownArgument);
    }
}
