//! Background schedulers: retention (log.retention.check.interval.ms) and segment rolling by
//! age, time-based flushing (log.flush.interval.ms / flush.ms), and the log cleaner (compaction
//! of cleanup.policy=compact topics, every log.cleaner.backoff.ms). Each pass walks every hosted
//! partition on a blocking thread (they do file I/O); a pass longer than its period delays the next.
//! In cluster mode also the replication tasks (`crate::replication::spawn`): follower fetchers,
//! the leader's ISR checks and the high-watermark checkpoints.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::partition::Partition;

/// Runs `pass` on every hosted partition each `period_ms`, until shutdown.
fn every(
    b: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    period_ms: u64,
    pass: fn(&Partition, i64),
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(period_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let b2 = b.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for p in b2.replicas.all() {
                    pass(&p, crate::now_ms());
                }
            })
            .await;
        }
    });
}

fn retention(p: &Partition, now: i64) {
    let before = p.log_start_offset();
    if let Err(e) = p.enforce_retention(now) {
        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
    } else if p.log_start_offset() != before {
        tracing::info!(topic = %p.topic, partition = p.index, log_start_offset = p.log_start_offset(), "retention deleted segments");
    }
}

fn flush(p: &Partition, now: i64) {
    if let Err(e) = p.maybe_flush(now) {
        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
    }
}

fn clean(p: &Partition, now: i64) {
    let started = std::time::Instant::now();
    match p.compact(now) {
        Ok(Some(s)) if s.segments_cleaned > 0 => {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(topic = %p.topic, partition = p.index, segments = s.segments_cleaned, bytes_before = s.bytes_before, bytes_after = s.bytes_after, records_removed = s.records_removed, tombstones_removed = s.tombstones_removed, elapsed_ms, "log cleaner compacted partition");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "log cleaner failed");
        }
    }
}

pub fn spawn(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let c = &broker.config;
    let (retention_ms, flush_ms, cleaner_ms) = (
        c.log_retention_check_interval_ms,
        c.log_flush_scheduler_interval_ms,
        c.log_cleaner_backoff_ms,
    );
    every(broker.clone(), shutdown.clone(), retention_ms, retention);
    every(broker.clone(), shutdown.clone(), flush_ms, flush);
    every(broker.clone(), shutdown.clone(), cleaner_ms, clean);
    crate::replication::spawn(broker, shutdown);
}
