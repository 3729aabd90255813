//! Client construction shared by the modes.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Where the broker is and how to reach it: the bootstrap servers and the librdkafka
/// properties every client gets (security settings, for instance).
pub struct Conn {
    pub bootstrap: String,
    pub props: Vec<(String, String)>,
}

impl Conn {
    /// A client configuration with the bootstrap servers and the shared properties.
    pub fn config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.props {
            cfg.set(k, v);
        }
        cfg
    }
}

/// Reads a librdkafka properties file: `key=value` lines; blank lines and `#` comments skipped.
pub fn read_properties(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading client config {}", path.display()))?;
    parse_properties(&text).with_context(|| format!("client config {}", path.display()))
}

fn parse_properties(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected key=value", n + 1);
        };
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Creates `topic` with `partitions` partitions (replication factor 1).
pub fn create_topic(conn: &Conn, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        conn.config().create().context("creating admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics([&new], &opts))
        .context("CreateTopics request")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("CreateTopics {name}: {code}");
        }
    }
    Ok(())
}

/// A consumer that reads assigned partitions only. librdkafka insists on a group.id for
/// assign(); offsets are never committed, so the broker needs no group support.
pub fn assigned_consumer(conn: &Conn, extra: &[(&str, &str)]) -> Result<BaseConsumer> {
    let mut cfg = conn.config();
    cfg.set(
        "group.id",
        format!("rivulet-loadgen-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("enable.partition.eof", "false");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().context("creating consumer")
}

/// Number of partitions of `topic` according to the broker's metadata.
pub fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<i32> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("Metadata request")?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("topic {topic} missing from metadata"))?;
    if let Some(e) = t.error() {
        bail!("topic {topic} metadata error: {e:?}");
    }
    Ok(t.partitions().len() as i32)
}

/// (low, high) watermarks of every partition of `topic`, in partition order.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Result<Vec<(i64, i64)>> {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("ListOffsets {topic}/{p}"))
        })
        .collect()
}

/// Assigns every partition of `topic` at the given offsets.
pub fn assign_at(consumer: &BaseConsumer, topic: &str, offsets: &[i64]) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (p, off) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*off))
            .context("building assignment")?;
    }
    consumer.assign(&tpl).context("assign")
}

/// Deterministic, incompressible-looking bytes (xorshift), so compression settings can't flatter.
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{filler, parse_properties};

    #[test]
    fn properties_files_parse_like_kcat_reads_them() {
        let p = parse_properties("# admin\nsecurity.protocol=SASL_SSL\n\n sasl.password = a=b \n")
            .unwrap();
        assert_eq!(
            p,
            vec![
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
                ("sasl.password".to_string(), "a=b".to_string()),
            ]
        );
        assert!(parse_properties("no-equals-sign").is_err());
    }

    #[test]
    fn filler_is_deterministic_and_varied() {
        let a = filler(1024, 7);
        assert_eq!(a, filler(1024, 7));
        assert_ne!(a, filler(1024, 8));
        let distinct: std::collections::HashSet<u8> = a.iter().copied().collect();
        assert!(
            distinct.len() > 200,
            "only {} distinct bytes",
            distinct.len()
        );
    }
}
