//! Replication, Kafka's model: the leader's ISR and high-watermark decisions (`isr`, pure), the
//! follower's truncation point (`truncation`, pure), the follower fetchers (`fetcher`), and the
//! leader's ISR task and high-watermark checkpoints here.

pub mod fetcher;
pub mod isr;
pub mod throttle;
pub mod truncation;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::metadata::MetadataError;
use crate::metrics::ReplicationRow;

/// Cluster mode only: follower fetchers, the ISR task and HW checkpoints. A standalone broker
/// leads every partition alone, so none of it has work to do there.
pub fn spawn(b: Arc<Broker>, stop: watch::Receiver<bool>) {
    if b.config.coordinator.is_none() {
        return;
    }
    fetcher::spawn_manager(b.clone(), stop.clone());
    spawn_isr_task(b.clone(), stop.clone());
    spawn_hw_checkpoints(b, stop);
}

/// Leader side: every replica.lag.time.max.ms / 2 (Kafka's schedule), and when a follower's
/// fetch suggests it, writes due ISR shrinks/expands through the metadata store
/// (compare-and-set) and refreshes the replication gauges.
fn spawn_isr_task(b: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let lag_max = b.config.replica_lag_time_max_ms as i64;
        let period = Duration::from_millis((b.config.replica_lag_time_max_ms / 2).max(50));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = b.replicas.isr_work.notified() => {}
                _ = stop.changed() => break,
            }
            update_isrs(&b, lag_max).await;
            refresh_gauges(&b);
        }
    });
}

async fn update_isrs(b: &Arc<Broker>, lag_max: i64) {
    // A fenced leader (coordinator session lost) must not write: a newer leader may exist.
    if b.metadata.is_fenced() {
        return;
    }
    let shutting_down = b.metadata.view().shutting_down.clone();
    for p in b.replicas.all() {
        let Some(change) = p.isr_change_due_excluding(crate::now_ms(), lag_max, &shutting_down)
        else {
            continue;
        };
        let result = b
            .metadata
            .alter_isr(
                &p.topic,
                p.index,
                change.leader_epoch,
                change.partition_epoch,
                change.new_isr.clone(),
            )
            .await;
        match result {
            Ok(pm) => {
                tracing::info!(topic = %p.topic, partition = p.index, isr = ?pm.isr, shrink = change.shrink, "ISR changed");
                if change.shrink {
                    b.metrics.isr_shrink();
                } else {
                    b.metrics.isr_expand();
                }
                p.apply_isr(&pm);
            }
            Err(MetadataError::Fenced(why)) => {
                // The state moved on (a new leader or controller write): re-read it.
                tracing::info!(topic = %p.topic, partition = p.index, %why, "ISR change fenced; re-reading metadata");
                let b2 = b.clone();
                let _ = tokio::task::spawn_blocking(move || b2.sync_partitions()).await;
            }
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "ISR change failed");
            }
        }
    }
}

fn refresh_gauges(b: &Broker) {
    let mut under = 0;
    let mut rows = Vec::new();
    for p in b.replicas.all() {
        if p.is_under_replicated() {
            under += 1;
        }
        let lags = if p.is_leader() {
            p.follower_lags()
        } else {
            Vec::new()
        };
        rows.push(ReplicationRow {
            topic: p.topic.clone(),
            partition: p.index,
            high_watermark: p.high_watermark(),
            follower_lags: lags,
        });
    }
    b.metrics.set_replication(under, &rows);
}

/// replica.high.watermark.checkpoint.interval.ms: the HW survives a crash (on start HW =
/// min(checkpoint, log end)). Clean shutdown writes it too (`ReplicaManager::shutdown`).
fn spawn_hw_checkpoints(b: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let period = Duration::from_millis(
            b.config
                .replica_high_watermark_checkpoint_interval_ms
                .max(100),
        );
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let b2 = b.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for p in b2.replicas.all() {
                    if let Err(e) = p.checkpoint_hw() {
                        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "high watermark checkpoint failed");
                    }
                }
            })
            .await;
        }
    });
}
