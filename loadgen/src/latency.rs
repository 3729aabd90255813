//! Latency mode: an open-loop producer at a fixed rate and an assigned consumer in the same
//! process. Each message carries its *scheduled* send time (so a stalled producer cannot hide
//! latency: no coordinated omission); latency = time the consumer sees it - scheduled time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Message;
use serde_json::{json, Value};

use crate::client::{assign_at, assigned_consumer, filler, partition_count, watermarks, Conn};
use crate::produce::{parse_kv, producer, send_blocking};
use crate::stats::quantile;

#[derive(Args, Debug)]
pub struct LatencyArgs {
    #[arg(long)]
    pub topic: String,
    /// Messages per second.
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// Seconds of measured traffic (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Seconds of traffic sent first and left out of the percentiles.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// Value size in bytes (at least 16: scheduled send time and sequence number).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value = "1", allow_hyphen_values = true)]
    pub acks: String,
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u32,
    /// Extra librdkafka properties for the consumer, key=value (repeatable).
    #[arg(long = "consumer-set", value_parser = parse_kv)]
    pub consumer_extra: Vec<(String, String)>,
}

pub fn run(conn: &Conn, a: &LatencyArgs) -> Result<Value> {
    if a.size < 16 || a.rate == 0 {
        bail!("--size must be at least 16 and --rate positive");
    }
    let extra: Vec<(&str, &str)> = a
        .consumer_extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let consumer = assigned_consumer(conn, &extra)?;
    let partitions = partition_count(&consumer, &a.topic)?;
    let highs: Vec<i64> = watermarks(&consumer, &a.topic, partitions)?
        .iter()
        .map(|m| m.1)
        .collect();
    assign_at(&consumer, &a.topic, &highs)?;

    let total = a.rate * (a.warmup_secs + a.duration_secs);
    let warmup = a.rate * a.warmup_secs;
    let interval_ns = 1_000_000_000 / a.rate;
    let origin = Instant::now();

    let prod = Arc::new(producer(conn, &a.acks, a.linger_ms, "none", &[])?);
    let sender = {
        let prod = Arc::clone(&prod);
        let topic = a.topic.clone();
        let size = a.size;
        // Start a little later so the consumer's first fetch is already parked at the end.
        let first = origin + Duration::from_millis(500);
        thread::spawn(move || -> Result<()> {
            let mut payload = filler(size, 99);
            for i in 0..total {
                let scheduled = first + Duration::from_nanos(interval_ns * i);
                let now = Instant::now();
                if scheduled > now {
                    thread::sleep(scheduled - now);
                }
                let ns = (scheduled - origin).as_nanos() as u64;
                payload[..8].copy_from_slice(&ns.to_le_bytes());
                // The sequence number lets the consumer leave the warm-up out exactly.
                payload[8..16].copy_from_slice(&i.to_le_bytes());
                let partition = (i % partitions as u64) as i32;
                send_blocking(
                    &prod,
                    BaseRecord::to(&topic)
                        .payload(&payload[..])
                        .partition(partition),
                )?;
                prod.poll(Duration::ZERO);
            }
            prod.flush(Duration::from_secs(30))
                .context("flushing producer")?;
            Ok(())
        })
    };

    let mut samples: Vec<u64> = Vec::with_capacity((a.rate * a.duration_secs) as usize);
    let mut received = 0u64;
    let expected_end =
        origin + Duration::from_millis(500) + Duration::from_nanos(interval_ns * total);
    let deadline = expected_end + Duration::from_secs(30);
    while received < total && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => bail!("consume error: {e}"),
            Some(Ok(m)) => {
                let now_ns = origin.elapsed().as_nanos() as u64;
                let Some(p) = m.payload() else { continue };
                let (Some(sent), Some(seq)) = (le_u64(p, 0), le_u64(p, 8)) else {
                    bail!(
                        "message at {}/{} is not one of ours ({} bytes)",
                        m.partition(),
                        m.offset(),
                        p.len()
                    );
                };
                received += 1;
                if seq >= warmup {
                    samples.push(now_ns.saturating_sub(sent));
                }
            }
        }
    }
    match sender.join() {
        Ok(r) => r?,
        Err(_) => bail!("producer thread panicked"),
    }
    let failed = prod.context().failed.load(Ordering::Relaxed);
    if received < total {
        bail!("received {received} of {total} messages ({failed} delivery failures)");
    }
    samples.sort_unstable();
    let us = |q: f64| quantile(&samples, q).map(|ns| ns as f64 / 1000.0);
    let report = json!({
        "mode": "latency",
        "topic": a.topic,
        "rate": a.rate,
        "size": a.size,
        "acks": a.acks,
        "partitions": partitions,
        "samples": samples.len(),
        "p50_us": us(0.5),
        "p99_us": us(0.99),
        "p999_us": us(0.999),
        "max_us": us(1.0),
    });
    eprintln!(
        "latency at {} msg/s over {} samples: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
        a.rate,
        samples.len(),
        us(0.5).unwrap_or(f64::NAN),
        us(0.99).unwrap_or(f64::NAN),
        us(0.999).unwrap_or(f64::NAN),
        us(1.0).unwrap_or(f64::NAN)
    );
    Ok(report)
}

fn le_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}
