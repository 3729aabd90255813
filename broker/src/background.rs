//! Background schedulers: retention (log.retention.check.interval.ms) and time-based flushing
//! (log.flush.interval.ms / flush.ms) and segment rolling by age, and the log cleaner
//! (compaction of cleanup.policy=compact topics, every log.cleaner.backoff.ms).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;

pub fn spawn(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let b = broker.clone();
    let mut sd = shutdown.clone();
    tokio::spawn(async move {
        let period = Duration::from_millis(b.config.log_retention_check_interval_ms);
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sd.changed() => break,
            }
            let b2 = b.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let now = crate::now_ms();
                for p in b2.replicas.all() {
                    let before = p.log_start_offset();
                    if let Err(e) = p.enforce_retention(now) {
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
                    } else if p.log_start_offset() != before {
                        tracing::info!(topic = %p.topic, partition = p.index, log_start_offset = p.log_start_offset(), "retention deleted segments");
                    }
                }
            })
            .await;
        }
    });
    spawn_cleaner(broker.clone(), shutdown.clone());
    let b = broker;
    let mut sd = shutdown;
    tokio::spawn(async move {
        let period = Duration::from_millis(b.config.log_flush_scheduler_interval_ms);
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sd.changed() => break,
            }
            let b2 = b.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let now = crate::now_ms();
                for p in b2.replicas.all() {
                    if let Err(e) = p.maybe_flush(now) {
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
                    }
                }
            })
            .await;
        }
    });
}

/// The log cleaner: one pass over every partition per period, on a blocking thread (it reads
/// and rewrites whole segments). A pass that takes longer than the period delays the next.
fn spawn_cleaner(b: Arc<Broker>, mut sd: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let period = Duration::from_millis(b.config.log_cleaner_backoff_ms);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sd.changed() => break,
            }
            let b2 = b.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for p in b2.replicas.all() {
                    let started = std::time::Instant::now();
                    match p.compact(crate::now_ms()) {
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
            })
            .await;
        }
    });
}
