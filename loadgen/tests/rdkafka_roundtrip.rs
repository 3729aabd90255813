//! Integration test with the `rdkafka` crate (librdkafka) against a real `rivulet-broker` process:
//! admin CreateTopics, an idempotent producer writing keys, values, null values and headers with
//! duplicate keys over three partitions, and an assigned consumer reading everything back
//! byte-exact and in order per partition.
//!
//! The broker binary is taken from `RIVULET_BROKER_BIN`, else from the same target directory as
//! this test (target/<profile>/rivulet-broker), else target/release or target/debug of the workspace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RIVULET_BROKER_BIN") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    // target/<profile>/deps/<this test> -> target/<profile>/rivulet-broker
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(|d| d.parent()) {
            candidates.push(profile_dir.join("rivulet-broker"));
        }
    }
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(ws.join("target/release/rivulet-broker"));
    candidates.push(ws.join("target/debug/rivulet-broker"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("rivulet-broker binary not found (tried {candidates:?}); run `cargo build -p rivulet-broker` or set RIVULET_BROKER_BIN")
        })
}

use rivulet_testkit::free_port;

/// The broker process; killed and reaped on drop, whatever happened in the test.
struct Broker {
    child: Child,
    bootstrap: String,
    _data: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let data = tempfile::tempdir().expect("temp dir");
        let (kafka, admin) = (free_port(), free_port());
        let bootstrap = format!("127.0.0.1:{kafka}");
        let child = Command::new(broker_bin())
            .args(["--listen-addr", &bootstrap])
            .args(["--advertised-addr", &bootstrap])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rivulet-broker");
        let mut b = Broker {
            child,
            bootstrap,
            _data: data,
        };
        b.wait_ready(admin);
        b
    }

    fn wait_ready(&mut self, admin_port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rivulet-broker exited during start-up: {status}");
            }
            if http_status(addr, "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rivulet-broker not ready within 30 s");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of a plain HTTP/1.0 GET, or None if the server is not answering yet.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One expected record; `value: None` is a null value (a tombstone).
#[derive(Clone, Debug, PartialEq)]
struct Rec {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn expected_records(partitions: i32, per_partition: usize) -> Vec<Vec<Rec>> {
    (0..partitions)
        .map(|p| {
            (0..per_partition)
                .map(|i| {
                    let key = format!("p{p}-k{i}").into_bytes();
                    let value = if i % 17 == 5 {
                        None
                    } else {
                        // Sizes vary from 0 to ~3 KiB, with binary content.
                        Some(
                            (0..(i * 37 % 3000))
                                .map(|j| (j * 31 + i + p as usize) as u8)
                                .collect(),
                        )
                    };
                    let mut headers = vec![
                        ("trace".to_string(), Some(format!("{p}:{i}").into_bytes())),
                        ("dup".to_string(), Some(b"first".to_vec())),
                        ("dup".to_string(), Some(b"second".to_vec())),
                    ];
                    if i % 3 == 0 {
                        headers.push(("nullh".to_string(), None));
                        headers.push(("dup".to_string(), Some(Vec::new())));
                    }
                    Rec {
                        key,
                        value,
                        headers,
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn rdkafka_produce_and_consume_roundtrip() {
    let broker = Broker::start();
    let topic = "rdkafka-roundtrip";
    let partitions = 3;
    let per_partition = 400;

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let created = futures_executor::block_on(admin.create_topics(
        [&NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(1),
        )],
        &opts,
    ))
    .expect("CreateTopics");
    assert_eq!(created, vec![Ok(topic.to_string())]);

    let expected = expected_records(partitions, per_partition);

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    for i in 0..per_partition {
        for (p, recs) in expected.iter().enumerate() {
            let r = &recs[i];
            let mut headers = OwnedHeaders::new();
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                .key(&r.key[..])
                .partition(p as i32)
                .headers(headers);
            if let Some(v) = &r.value {
                rec = rec.payload(&v[..]);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut rec = rec;
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert!(Instant::now() < deadline, "enqueue failed for 30 s: {e}");
                        rec = back;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all messages delivered");
    assert_eq!(producer.in_flight_count(), 0);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "rdkafka-roundtrip-unused")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    for p in 0..partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(
            (lo, hi),
            (0, per_partition as i64),
            "watermarks of partition {p}"
        );
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&tpl).expect("assign");

    let mut got: Vec<Vec<(i64, Rec)>> = vec![Vec::new(); partitions as usize];
    let total = partitions as usize * per_partition;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(Instant::now() < deadline, "timed out consuming");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consume without error");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        got[m.partition() as usize].push((
            m.offset(),
            Rec {
                key: m.key().map(<[u8]>::to_vec).unwrap_or_default(),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            },
        ));
    }
    for (p, recs) in got.iter().enumerate() {
        let offsets: Vec<i64> = recs.iter().map(|(o, _)| *o).collect();
        let want: Vec<i64> = (0..per_partition as i64).collect();
        assert_eq!(offsets, want, "offsets of partition {p}");
        for (i, (_, r)) in recs.iter().enumerate() {
            assert_eq!(r, &expected[p][i], "record {i} of partition {p}");
        }
    }
}
