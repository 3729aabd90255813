//! Background schedulers: retention (log.retention.check.interval.ms) and time-based flushing
//! (log.flush.interval.ms / flush.ms) and segment rolling by age.

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
