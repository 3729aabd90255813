//! The secure broker pod contract: a cluster with a SCRAM-over-TLS client listener and the ACL
//! authorizer, run as rendered — the coordinator and one broker per zone with exactly the env
//! the builders render, the mounted Secrets written as the kubelet would (the cluster CA and
//! broker certificate from the operator's own certificate code, the internal credentials from
//! its own generator) — and checked with real peers:
//!
//! - the brokers bootstrap their SCRAM users and replicate over the authenticated
//!   (SASL_SSL) replication listener: an acks=all produce to a 3-replica topic succeeds only
//!   when both followers fetched;
//! - the operator's admin connection (its own principal, trusting the CA bundle) works, and an
//!   unauthenticated or wrongly authenticated one doesn't;
//! - a ZooKeeper client without the digest credential can't write `/brokers` or read
//!   `/config/users`, one with it can; no password reaches a broker log.

mod fixtures;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rivulet_admin_client::{AdminClient, ClientSecurity, Connection, SaslCredentials};
use rivulet_operator::builders::*;
use rivulet_operator::crd::KafkaCluster;
use rivulet_operator::security::admin::{client_security, AdminSecrets};
use rivulet_operator::security::{certs, internal, listeners::TLS_DIR};
use serde_json::json;
use zookeeper_client as zk;

const TIMEOUT: Duration = Duration::from_secs(10);
const CLIENT_PORT: i32 = 9093;

fn secure_cluster() -> KafkaCluster {
    let mut kc = fixtures::three_zone_cluster();
    kc.spec.listeners = Some(
        serde_json::from_value(json!([
            {"name": "scram", "port": CLIENT_PORT, "tls": true, "authentication": "scram-sha-512"}
        ]))
        .expect("listeners"),
    );
    kc.spec.authorization = Some(
        serde_json::from_value(json!({"type": "simple", "superUsers": ["admin"]}))
            .expect("authorization"),
    );
    kc
}

use support::pods::{container, kubelet_env};

struct Pod {
    id: i32,
    replication: u16,
    admin: SocketAddr,
    env: BTreeMap<String, String>,
}

/// One broker's env as the kubelet would give it, cluster addresses moved to loopback, the
/// Secret mounts and the data volume to temp dirs.
fn render(built: &ClusterObjects, zone: usize, zk: SocketAddr, dir: &Path, mounts: &Mounts) -> Pod {
    let c = container(&built.objects, &broker_sts_name("demo", zone));
    let id = zone_first_id(zone);
    let pod_name = format!("{}-{id}", broker_sts_name("demo", zone));
    let (replication, client) = (support::free_port(), support::free_port());
    let admin: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .expect("addr");
    let env = kubelet_env(built, &c, &pod_name, id, "demo-broker-config");
    let host = format!("{pod_name}.demo-broker-headless.kafka.svc");
    let data = dir.join(format!("broker-{id}"));
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .replace(
                    &format!("{host}:{}", rivulet_operator::crd::REPLICATION_PORT),
                    &format!("localhost:{replication}"),
                )
                .replace(
                    &format!("{host}:{CLIENT_PORT}"),
                    &format!("localhost:{client}"),
                )
                .replace(
                    &format!("0.0.0.0:{}", rivulet_operator::crd::REPLICATION_PORT),
                    &format!("127.0.0.1:{replication}"),
                )
                .replace(
                    &format!("0.0.0.0:{CLIENT_PORT}"),
                    &format!("127.0.0.1:{client}"),
                )
                .replace(&format!("0.0.0.0:{BROKER_ADMIN_PORT}"), &admin.to_string())
                .replace(
                    &format!("demo-coordinator.kafka.svc:{COORDINATOR_CLIENT_PORT}"),
                    &zk.to_string(),
                )
                .replace(BROKER_DATA_DIR, &data.display().to_string())
                .replace(TLS_DIR, &mounts.tls.display().to_string())
                .replace(
                    internal::CREDENTIALS_DIR,
                    &mounts.internal.display().to_string(),
                );
            (k, v)
        })
        .collect();
    Pod {
        id,
        replication,
        admin,
        env,
    }
}

/// The Secret volumes, written as the kubelet would.
struct Mounts {
    tls: PathBuf,
    internal: PathBuf,
    ca_bundle: String,
    passwords: BTreeMap<String, String>,
}

fn write_mounts(dir: &Path) -> Mounts {
    let now = time::OffsetDateTime::now_utc();
    let ca = certs::generate_ca("demo", now).expect("ca");
    let leaf = certs::issue("demo", &ca, "demo-broker", &["localhost".into()], true, now)
        .expect("broker certificate");
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    for (k, v) in [
        ("tls.crt", &leaf.cert_pem),
        ("tls.key", &leaf.key_pem),
        ("ca.crt", &ca.cert_pem),
    ] {
        std::fs::write(tls.join(k), v).expect("write tls");
    }
    let passwords = internal::desired_data(None, || {
        rivulet_operator::security::users::generate_password().expect("password")
    })
    .expect("credentials");
    let dir_internal = dir.join("internal");
    std::fs::create_dir_all(&dir_internal).expect("internal dir");
    // Only the mounted keys (the volume's items).
    for k in internal::MOUNTED_KEYS {
        std::fs::write(dir_internal.join(k), &passwords[*k]).expect("write credentials");
    }
    Mounts {
        tls,
        internal: dir_internal,
        ca_bundle: ca.cert_pem,
        passwords,
    }
}

fn batch(values: &[String]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

async fn wait_ready(pod: &Pod, dir: &Path) {
    for _ in 0..300 {
        if support::http_get(pod.admin, "/readyz").is_some_and(|(s, _)| s == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log =
        std::fs::read_to_string(dir.join(format!("broker-{}.log", pod.id))).unwrap_or_default();
    panic!("broker {} never ready:\n{log}", pod.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cluster_replicates_and_guards_the_coordinator() {
    let (Some(broker_bin), Some(coord_bin)) = (
        support::find_binary("rivulet-broker"),
        support::find_binary("rivulet-coordinator"),
    ) else {
        eprintln!("SKIPPED: rivulet-broker and rivulet-coordinator must both be built (release)");
        return;
    };
    let kc = secure_cluster();
    let built = build_cluster(&kc);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mounts = write_mounts(dir);

    // The coordinator as rendered.
    let coord = container(&built.objects, "demo-coordinator");
    let zk_addr: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .expect("addr");
    let coord_admin = support::free_port();
    let args: Vec<String> = coord
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            a.replace(
                &format!("0.0.0.0:{COORDINATOR_CLIENT_PORT}"),
                &zk_addr.to_string(),
            )
            .replace(
                &format!("0.0.0.0:{COORDINATOR_ADMIN_PORT}"),
                &format!("127.0.0.1:{coord_admin}"),
            )
            .replace(
                COORDINATOR_DATA_DIR,
                &dir.join("coordinator").display().to_string(),
            )
        })
        .collect();
    let _coord = support::Proc(
        Command::new(coord_bin)
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn coordinator"),
    );
    assert!(support::wait_for_port(zk_addr, Duration::from_secs(20)));

    let pods: Vec<Pod> = (0..kc.spec.zones.len())
        .map(|z| render(&built, z, zk_addr, dir, &mounts))
        .collect();
    let _brokers: Vec<support::Proc> = pods
        .iter()
        .map(|p| {
            let log = std::fs::File::create(dir.join(format!("broker-{}.log", p.id))).expect("log");
            let mut cmd = Command::new(&broker_bin);
            cmd.env_clear()
                .envs(&p.env)
                .stdout(log.try_clone().expect("log"))
                .stderr(log);
            support::Proc(cmd.spawn().expect("spawn broker"))
        })
        .collect();
    for p in &pods {
        wait_ready(p, dir).await;
    }
    let bootstrap = pods
        .iter()
        .map(|p| format!("localhost:{}", p.replication))
        .collect::<Vec<_>>()
        .join(",");

    // The operator's admin connection: its own principal, trusting the CA bundle.
    let secrets = AdminSecrets {
        operator_password: Some(mounts.passwords[internal::KEY_OPERATOR].clone()),
        ca_bundle: Some(mounts.ca_bundle.clone()),
    };
    let sec = client_security(&kc.spec, &secrets).expect("operator security");
    let start = Instant::now();
    let mut admin = loop {
        // The brokers create the operator's credential just after registering.
        match AdminClient::connect_with(&bootstrap, TIMEOUT, sec.clone()).await {
            Ok(mut a) => match a.describe_cluster().await {
                Ok(c) if c.brokers.len() == pods.len() => break a,
                _ => {}
            },
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                panic!("operator admin connection: {e}")
            }
            Err(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "brokers never all registered"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // Nobody else gets in on the replication listener: TLS without SASL, a wrong password.
    let mut tls_only = sec.clone();
    tls_only.sasl = None;
    let anonymous = match AdminClient::connect_with(&bootstrap, TIMEOUT, tls_only.clone()).await {
        Ok(mut a) => a.describe_cluster().await.is_ok(),
        Err(_) => false,
    };
    assert!(
        !anonymous,
        "an unauthenticated client used the replication listener"
    );
    let mut wrong = sec.clone();
    if let Some(s) = wrong.sasl.as_mut() {
        s.password = "not-the-password".into();
    }
    assert!(
        AdminClient::connect_with(&bootstrap, TIMEOUT, wrong)
            .await
            .is_err(),
        "a wrong password was accepted"
    );
    // The brokers' own user authenticates too (what the replica fetchers use).
    let as_broker = ClientSecurity {
        tls: tls_only.tls.clone(),
        sasl: Some(SaslCredentials {
            mechanism: rivulet_admin_client::SaslMechanism::ScramSha512,
            username: internal::BROKER_USER.into(),
            password: mounts.passwords[internal::KEY_BROKER].clone(),
        }),
    };
    AdminClient::connect_with(&bootstrap, TIMEOUT, as_broker)
        .await
        .expect("broker user authenticates");

    // Replication over the authenticated listener: acks=all on 3-replica partitions succeeds
    // only when both followers fetched the batch; three partitions, so that every broker is a
    // follower of some partition.
    let topic = "secure-contract";
    let partitions = 3;
    let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    let topic_id: uuid::Uuid = admin
        .create_topic(topic, partitions, 3, &configs)
        .await
        .expect("create topic")
        .parse()
        .expect("topic id");
    let start = Instant::now();
    let leaders: BTreeMap<i32, i32> = loop {
        let view = admin.describe_partitions().await.expect("partitions");
        let ready: BTreeMap<i32, i32> = view
            .partitions
            .iter()
            .filter(|p| p.topic == topic && p.leader >= 0 && p.isr.len() == 3)
            .map(|p| (p.partition, p.leader))
            .collect();
        if ready.len() == partitions as usize {
            break ready;
        }
        assert!(start.elapsed() < TIMEOUT, "no leaders with a full ISR");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (partition, leader) in &leaders {
        let leader_pod = pods.iter().find(|p| p.id == *leader).expect("leader pod");
        let mut conn = Connection::connect_with(
            &format!("localhost:{}", leader_pod.replication),
            TIMEOUT,
            &sec,
        )
        .await
        .expect("connect to the leader");
        let version = conn.version::<ProduceRequest>().expect("Produce");
        let values: Vec<String> = (0..20).map(|i| format!("p{partition}-v{i}")).collect();
        let mut td =
            TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
                .with_index(*partition)
                .with_records(Some(batch(&values)))]);
        td = if version >= 13 {
            td.with_topic_id(topic_id)
        } else {
            td.with_name(TopicName(StrBytes::from_static_str(topic)))
        };
        let resp = conn
            .send(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(15_000)
                    .with_topic_data(vec![td]),
            )
            .await
            .expect("produce");
        let part = &resp.responses[0].partition_responses[0];
        assert_eq!(
            part.error_code, 0,
            "acks=all produce to partition {partition} (leader {leader}) failed: replication \
             over the authenticated listener is broken"
        );
    }
    let view = admin.describe_partitions().await.expect("partitions");
    for p in view.partitions.iter().filter(|p| p.topic == topic) {
        assert_eq!(
            p.isr.len(),
            3,
            "ISR of {} after the produce: {:?}",
            p.partition,
            p.isr
        );
    }

    // The coordinator: without the digest credential, cluster metadata is read-only and the
    // credentials unreadable.
    let anon = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&zk_addr.to_string())
        .await
        .expect("zk connect");
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    assert!(
        matches!(
            anon.create("/brokers/ids/4242", b"x", &open).await,
            Err(zk::Error::NoAuth)
        ),
        "an anonymous client registered a broker"
    );
    assert!(matches!(
        anon.set_data(&format!("/brokers/ids/{}", pods[0].id), b"x", None)
            .await,
        Err(zk::Error::NoAuth)
    ));
    let user_node = format!("/config/users/{}", internal::BROKER_USER);
    assert!(
        matches!(anon.get_data(&user_node).await, Err(zk::Error::NoAuth)),
        "an anonymous client read a SCRAM credential"
    );
    // Metadata stays readable (clients and tools may look).
    anon.get_data(&format!("/brokers/ids/{}", pods[0].id))
        .await
        .expect("broker registration readable");
    // With the digest credential (what the brokers use), the credential is readable.
    let digest = format!(
        "{}:{}",
        internal::COORDINATOR_USER,
        mounts.passwords[internal::KEY_COORDINATOR]
    );
    let brokers_zk = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&zk_addr.to_string())
        .await
        .expect("zk connect");
    brokers_zk
        .auth("digest", digest.as_bytes())
        .await
        .expect("digest auth");
    brokers_zk
        .get_data(&user_node)
        .await
        .expect("the brokers' digest user reads credentials");

    // No password in any broker log.
    for p in &pods {
        let log = std::fs::read_to_string(dir.join(format!("broker-{}.log", p.id))).expect("log");
        for (k, pw) in &mounts.passwords {
            if k != internal::KEY_BOOTSTRAP_USERS {
                assert!(!log.contains(pw.as_str()), "broker {} logged {k}", p.id);
            }
        }
    }
}
