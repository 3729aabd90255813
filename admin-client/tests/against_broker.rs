//! The admin client against a real rivulet-broker started by the test (skips when not built).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use rivulet_admin_client::{AdminClient, Error, SOURCE_TOPIC_CONFIG};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn broker_bin() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("RIVULET_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release"));
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(d).join("release"));
    }
    dirs.into_iter()
        .map(|d| d.join("rivulet-broker"))
        .find(|p| p.is_file())
}

use rivulet_testkit::free_port;

fn start(dir: &std::path::Path) -> Option<(Proc, String)> {
    let Some(bin) = broker_bin() else {
        eprintln!("SKIPPED: rivulet-broker is not built (cargo build --release -p rivulet-broker)");
        return None;
    };
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .args([
            "--broker-id",
            "7",
            "--listen-addr",
            &addr,
            "--advertised-addr",
            &addr,
            "--rack",
            "zone-x",
        ])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--data-dir", &dir.display().to_string()])
        .env("RIVULET_LOG_LEVEL", "warn")
        .spawn()
        .expect("spawn broker");
    let p = Proc(child);
    let start = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "broker never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((p, addr))
}

#[tokio::test]
async fn topic_admin_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_p, addr)) = start(dir.path()) else {
        return;
    };
    let mut admin = AdminClient::connect(&format!("127.0.0.1:1,{addr}"), Duration::from_secs(10))
        .await
        .expect("connect skips the dead address");

    let cluster = admin.describe_cluster().await.expect("cluster");
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].id, 7);
    assert_eq!(cluster.brokers[0].rack.as_deref(), Some("zone-x"));

    assert_eq!(admin.describe_topic("t1").await.expect("describe"), None);
    let cfg = BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]);
    admin.create_topic("t1", 2, 1, &cfg).await.expect("create");
    let err = admin
        .create_topic("t1", 2, 1, &cfg)
        .await
        .expect_err("duplicate");
    assert_eq!(
        err.kafka_error(),
        Some(&ResponseError::TopicAlreadyExists),
        "{err}"
    );
    let t = admin
        .describe_topic("t1")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!((t.partitions, t.replication_factor), (2, 1));
    assert!(admin
        .list_topics()
        .await
        .expect("list")
        .contains(&"t1".to_string()));

    admin.create_partitions("t1", 4).await.expect("grow");
    assert_eq!(
        admin
            .describe_topic("t1")
            .await
            .expect("d")
            .expect("t")
            .partitions,
        4
    );

    let c = admin.describe_topic_config("t1").await.expect("configs");
    let e = c.get("retention.ms").expect("retention.ms listed");
    assert_eq!(e.value.as_deref(), Some("60000"));
    assert_eq!(e.source, SOURCE_TOPIC_CONFIG);

    admin
        .alter_topic_config("t1", &BTreeMap::new(), &["retention.ms".to_string()])
        .await
        .expect("delete config");
    let c = admin.describe_topic_config("t1").await.expect("configs");
    assert_ne!(
        c.get("retention.ms").map(|e| e.source),
        Some(SOURCE_TOPIC_CONFIG)
    );

    let dirs = admin.describe_log_dirs(7).await.expect("log dirs");
    assert!(!dirs.is_empty());
    assert!(dirs[0].total_bytes > 0, "{dirs:?}");
    // The same directory when asking the connected broker for its own disks.
    let own = admin.describe_own_log_dirs().await.expect("own log dirs");
    assert_eq!(own.len(), dirs.len());
    assert_eq!(own[0].path, dirs[0].path);
    assert!(own[0].total_bytes > 0 && own[0].usable_bytes <= own[0].total_bytes);

    admin.delete_topic("t1").await.expect("delete");
    assert_eq!(admin.describe_topic("t1").await.expect("describe"), None);
    let err = admin.delete_topic("t1").await.expect_err("gone");
    assert!(matches!(err, Error::Kafka { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_bootstrap_is_an_error_not_a_hang() {
    let start = Instant::now();
    let err = AdminClient::connect("127.0.0.1:1", Duration::from_secs(2))
        .await
        .err()
        .expect("no broker there");
    assert!(matches!(err, Error::NoBroker(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn partitions_and_min_insync_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_p, addr)) = start(dir.path()) else {
        return;
    };
    let mut admin = AdminClient::connect(&addr, Duration::from_secs(10))
        .await
        .expect("connect");
    admin
        .create_topic("plain", 3, 1, &BTreeMap::new())
        .await
        .expect("create plain");
    let strict = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    admin
        .create_topic("strict", 1, 1, &strict)
        .await
        .expect("create strict");

    let view = admin.describe_partitions().await.expect("partitions");
    assert_eq!(view.controller_id, 7);
    assert_eq!(view.brokers, vec![7]);
    let ours: Vec<_> = view
        .partitions
        .iter()
        .filter(|p| p.topic == "plain" || p.topic == "strict")
        .map(|p| {
            (
                p.topic.as_str(),
                p.partition,
                p.leader,
                p.replicas.clone(),
                p.isr.clone(),
            )
        })
        .collect();
    assert_eq!(
        ours,
        vec![
            ("plain", 0, 7, vec![7], vec![7]),
            ("plain", 1, 7, vec![7], vec![7]),
            ("plain", 2, 7, vec![7], vec![7]),
            ("strict", 0, 7, vec![7], vec![7]),
        ]
    );

    let m = admin
        .min_insync_replicas(&["plain", "strict"])
        .await
        .expect("min.insync.replicas");
    assert_eq!(m.get("plain"), Some(&1), "the broker default: {m:?}");
    assert_eq!(m.get("strict"), Some(&2), "set on the topic: {m:?}");
    assert!(admin
        .min_insync_replicas(&[])
        .await
        .expect("empty")
        .is_empty());

    let err = admin
        .min_insync_replicas(&["missing"])
        .await
        .expect_err("a missing topic is an error");
    assert_eq!(
        err.kafka_error(),
        Some(&ResponseError::UnknownTopicOrPartition),
        "{err}"
    );
}

#[tokio::test]
async fn placement_broker_configs_and_reassignments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_p, addr)) = start(dir.path()) else {
        return;
    };
    let mut admin = AdminClient::connect(&addr, Duration::from_secs(10))
        .await
        .expect("connect");
    admin
        .create_topic("placed", 3, 1, &BTreeMap::new())
        .await
        .expect("create");

    // Metadata with placement: every partition led by broker 7, replicas and ISR [7].
    let state = admin.cluster_state().await.expect("cluster state");
    assert_eq!(state.brokers.len(), 1);
    assert_eq!(state.brokers[0].rack.as_deref(), Some("zone-x"));
    let t = state
        .topics
        .iter()
        .find(|t| t.name == "placed")
        .expect("topic listed");
    assert_eq!(t.partitions.len(), 3);
    for (i, p) in t.partitions.iter().enumerate() {
        assert_eq!(p.index, i as i32);
        assert_eq!((p.leader, &p.replicas, &p.isr), (7, &vec![7], &vec![7]));
    }

    // The throttle rates on the cluster-wide default and on this broker, then removed.
    let rate = "leader.replication.throttled.rate".to_string();
    let set = BTreeMap::from([(rate.clone(), "1048576".to_string())]);
    admin
        .alter_broker_config(None, &set, &[])
        .await
        .expect("default entity");
    let own = BTreeMap::from([(rate.clone(), "2048".to_string())]);
    admin
        .alter_broker_config(Some(7), &own, &[])
        .await
        .expect("broker 7");
    let c = admin
        .describe_broker_config(Some(7))
        .await
        .expect("describe");
    assert_eq!(c[&rate].value.as_deref(), Some("2048"));
    assert_eq!(c[&rate].source, 2, "DYNAMIC_BROKER_CONFIG");
    admin
        .alter_broker_config(Some(7), &BTreeMap::new(), std::slice::from_ref(&rate))
        .await
        .expect("delete on broker 7");
    let c = admin
        .describe_broker_config(Some(7))
        .await
        .expect("describe");
    assert_eq!(c[&rate].value.as_deref(), Some("1048576"));
    assert_eq!(c[&rate].source, 3, "DYNAMIC_DEFAULT_BROKER_CONFIG");
    // Bad values are refused with the broker's message.
    let bad = BTreeMap::from([(rate.clone(), "-1".to_string())]);
    let err = admin
        .alter_broker_config(None, &bad, &[])
        .await
        .expect_err("negative rate");
    assert_eq!(
        err.kafka_error(),
        Some(&ResponseError::InvalidConfig),
        "{err}"
    );
    // A broker id that is not in the metadata is an error, not a hang.
    assert!(admin
        .alter_broker_config(Some(99), &set, &[])
        .await
        .is_err());

    // Reassignment needs cluster mode: standalone refuses at the top level, and lists nothing.
    assert!(admin
        .list_partition_reassignments()
        .await
        .expect("list")
        .is_empty());
    let err = admin
        .alter_partition_reassignments(&[rivulet_admin_client::ReassignmentRequest {
            topic: "placed".into(),
            partition: 0,
            target: Some(vec![7]),
        }])
        .await
        .expect_err("standalone");
    assert_eq!(
        err.kafka_error(),
        Some(&ResponseError::InvalidRequest),
        "{err}"
    );
}

/// RFC 5802: StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword,
/// "Server Key"), with SHA-512 here.
fn scram_sha512_keys(salted: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha512};
    let mac = |key: &[u8], msg: &[u8]| {
        let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    };
    let client_key = mac(salted, b"Client Key");
    (
        Sha512::digest(&client_key).to_vec(),
        mac(salted, b"Server Key"),
    )
}

/// (salt, stored_key, server_key, iterations) of a stored SCRAM credential.
type StoredCredential = (Vec<u8>, Vec<u8>, Vec<u8>, u32);

/// The broker's stored credential of `user` (standalone: `<data-dir>/scram-credentials.json`).
fn stored_credential(dir: &std::path::Path, user: &str) -> Option<StoredCredential> {
    use base64::Engine;
    let text = std::fs::read_to_string(dir.join("scram-credentials.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let entry = v[user]["SCRAM-SHA-512"]
        .as_str()
        .or_else(|| v["users"][user]["SCRAM-SHA-512"].as_str())?
        .to_string();
    let field = |k: &str| {
        entry
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    let b = |s: String| base64::engine::general_purpose::STANDARD.decode(s).ok();
    Some((
        b(field("salt")?)?,
        b(field("stored_key")?)?,
        b(field("server_key")?)?,
        field("iterations")?.parse().ok()?,
    ))
}

#[tokio::test]
async fn scram_credentials_round_trip_with_client_side_salting() {
    use rivulet_admin_client::{salted_password, ScramMechanism, SCRAM_MIN_ITERATIONS};
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_p, addr)) = start(dir.path()) else {
        return;
    };
    let mut admin = AdminClient::connect(&addr, Duration::from_secs(10))
        .await
        .expect("connect");
    assert!(admin
        .describe_user_scram_credentials(&["alice"])
        .await
        .expect("describe")
        .is_empty());

    admin
        .upsert_scram_credential(
            "alice",
            ScramMechanism::Sha512,
            "s3cret-Pw",
            SCRAM_MIN_ITERATIONS,
        )
        .await
        .expect("upsert");
    let d = admin
        .describe_user_scram_credentials(&["alice"])
        .await
        .expect("describe");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, "alice");
    assert_eq!(d[0].1[0].mechanism, Some(ScramMechanism::Sha512));
    assert_eq!(d[0].1[0].iterations, SCRAM_MIN_ITERATIONS as i32);

    // What the broker stored is RFC 5802's StoredKey/ServerKey of this password and the salt
    // we chose: the salted password went over the wire, not the password.
    let (salt, stored, server, iters) =
        stored_credential(dir.path(), "alice").expect("credential persisted");
    assert_eq!(iters, SCRAM_MIN_ITERATIONS);
    assert_eq!(salt.len(), 32);
    let salted = salted_password(ScramMechanism::Sha512, "s3cret-Pw", &salt, iters);
    assert_eq!(scram_sha512_keys(&salted), (stored, server));
    let text = std::fs::read_to_string(dir.path().join("scram-credentials.json")).expect("file");
    assert!(!text.contains("s3cret-Pw"));

    // A second upsert changes the salt (fresh per call).
    admin
        .upsert_scram_credential(
            "alice",
            ScramMechanism::Sha512,
            "s3cret-Pw",
            SCRAM_MIN_ITERATIONS,
        )
        .await
        .expect("upsert again");
    let (salt2, ..) = stored_credential(dir.path(), "alice").expect("credential");
    assert_ne!(salt, salt2);

    // Too few iterations: the broker's error comes back.
    let err = admin
        .upsert_scram_credential("bob", ScramMechanism::Sha512, "pw", 100)
        .await
        .expect_err("iterations below 4096");
    assert!(matches!(err, Error::Kafka { .. }), "{err}");

    admin
        .delete_scram_credential("alice", ScramMechanism::Sha512)
        .await
        .expect("delete");
    assert!(admin
        .describe_user_scram_credentials(&["alice"])
        .await
        .expect("describe")
        .is_empty());
    // Deleting what isn't there is fine.
    admin
        .delete_scram_credential("alice", ScramMechanism::Sha512)
        .await
        .expect("delete again");
}
