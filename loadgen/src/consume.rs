//! Throughput mode: read a topic from its low watermarks to the high watermarks seen at start.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use rdkafka::Message;
use serde_json::{json, Value};

use crate::client::{assign_at, assigned_consumer, partition_count, watermarks, Conn};
use crate::stats::mb_per_s;

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub topic: String,
    /// Give up after this many seconds without reaching the end.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Extra librdkafka properties, key=value (repeatable).
    #[arg(long = "set", value_parser = crate::produce::parse_kv)]
    pub extra: Vec<(String, String)>,
}

pub fn run(conn: &Conn, a: &ConsumeArgs) -> Result<Value> {
    // Big fetches, and a local queue deep enough for them: with librdkafka's defaults a 4 MiB
    // fetch of 100 B records overflows queued.min.messages and the fetcher then backs off for
    // fetch.queue.backoff.ms (1 s), which would measure the client's pause, not the broker.
    let mut cfg = vec![
        ("fetch.max.bytes", "104857600"),
        ("max.partition.fetch.bytes", "4194304"),
        ("queued.min.messages", "1000000"),
        ("queued.max.messages.kbytes", "262144"),
        ("fetch.queue.backoff.ms", "10"),
    ];
    cfg.extend(a.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let consumer = assigned_consumer(conn, &cfg)?;
    let partitions = partition_count(&consumer, &a.topic)?;
    let marks = watermarks(&consumer, &a.topic, partitions)?;
    let lows: Vec<i64> = marks.iter().map(|m| m.0).collect();
    // Per partition: the next offset we still need; done when it reaches the high watermark.
    let mut next = lows.clone();
    let highs: Vec<i64> = marks.iter().map(|m| m.1).collect();

    assign_at(&consumer, &a.topic, &lows)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.timeout_secs);
    let (mut count, mut bytes) = (0u64, 0u64);
    // Done when every partition's next offset reached its high watermark (offsets may skip, e.g.
    // over control batches, so counting messages would not do).
    while next.iter().zip(&highs).any(|(n, h)| n < h) {
        if Instant::now() > deadline {
            bail!(
                "consumed {count} messages, not at the end after the {} s timeout",
                a.timeout_secs
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => bail!("consume error: {e}"),
            Some(Ok(m)) => {
                let p = m.partition() as usize;
                if p >= next.len() || m.offset() < next[p] {
                    continue;
                }
                if m.offset() >= highs[p] {
                    continue;
                }
                next[p] = m.offset() + 1;
                count += 1;
                bytes += m.payload_len() as u64 + m.key().map_or(0, |k| k.len() as u64);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "consume {count} messages ({partitions} partition(s)): {:.1} MB/s, {:.0} msgs/s in {:.2} s",
        mb_per_s(bytes, secs),
        count as f64 / secs,
        secs
    );
    Ok(json!({
        "mode": "consume",
        "topic": a.topic,
        "partitions": partitions,
        "messages": count,
        "bytes": bytes,
        "seconds": secs,
        "mb_per_s": mb_per_s(bytes, secs),
        "msgs_per_s": count as f64 / secs,
    }))
}
