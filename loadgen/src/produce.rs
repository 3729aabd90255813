//! Throughput mode: send N fixed-size messages as fast as librdkafka takes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde_json::{json, Value};

use crate::client::{filler, Conn};
use crate::stats::mb_per_s;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[arg(long)]
    pub topic: String,
    /// Number of messages.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Value size in bytes (no key).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Partitions to spread over (round-robin); must not exceed the topic's count.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// acks: 0, 1 or -1 (all).
    #[arg(long, default_value = "1", allow_hyphen_values = true)]
    pub acks: String,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u32,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Extra librdkafka properties, key=value (repeatable).
    #[arg(long = "set", value_parser = parse_kv)]
    pub extra: Vec<(String, String)>,
}

pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// Counts delivery reports; keeps the first error for the report.
#[derive(Default)]
pub struct Deliveries {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

pub fn producer(
    conn: &Conn,
    acks: &str,
    linger_ms: u32,
    compression: &str,
    extra: &[(String, String)],
) -> Result<BaseProducer<Deliveries>> {
    let mut cfg = conn.config();
    cfg.set("acks", acks)
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", compression)
        .set("batch.num.messages", "100000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (k, v) in extra {
        cfg.set(k, v);
    }
    cfg.create_with_context(Deliveries::default())
        .context("creating producer")
}

/// Enqueues one record, serving delivery reports while librdkafka's queue is full.
pub fn send_blocking(
    producer: &BaseProducer<Deliveries>,
    mut record: BaseRecord<'_, (), [u8], ()>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                if Instant::now() > deadline {
                    bail!("producer queue stayed full for 60 s");
                }
                record = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("enqueue failed: {e}"),
        }
    }
}

pub fn run(conn: &Conn, a: &ProduceArgs) -> Result<Value> {
    if a.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let producer = producer(conn, &a.acks, a.linger_ms, &a.compression, &a.extra)?;
    let payload = filler(a.size, 0x5eed ^ a.size as u64);

    let start = Instant::now();
    for i in 0..a.messages {
        let partition = (i % a.partitions as u64) as i32;
        send_blocking(
            &producer,
            BaseRecord::to(&a.topic)
                .payload(&payload[..])
                .partition(partition),
        )?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing producer")?;
    let secs = start.elapsed().as_secs_f64();

    let ctx = producer.context();
    let ok = ctx.ok.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let bytes = ok * a.size as u64;
    let report = json!({
        "mode": "produce",
        "topic": a.topic,
        "size": a.size,
        "partitions": a.partitions,
        "acks": a.acks,
        "compression": a.compression,
        "messages": ok,
        "failed": failed,
        "bytes": bytes,
        "seconds": secs,
        "mb_per_s": mb_per_s(bytes, secs),
        "msgs_per_s": ok as f64 / secs,
    });
    eprintln!(
        "produce {} x {} B, {} partition(s), acks={}: {:.1} MB/s, {:.0} msgs/s in {:.2} s",
        ok,
        a.size,
        a.partitions,
        a.acks,
        mb_per_s(bytes, secs),
        ok as f64 / secs,
        secs
    );
    if failed > 0 {
        let first = ctx
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        bail!(
            "{failed} of {} messages failed; first error: {first}",
            a.messages
        );
    }
    Ok(report)
}
