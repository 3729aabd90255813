//! What `/readyz` means. A broker is ready when it serves requests and, in cluster mode, is
//! registered in the coordinator and caught up: in the in-sync replica set of every partition
//! it replicates that it can catch up on. Liveness (`/healthz`) only says the process answers.
//!
//! Edge cases (docs/broker.md, "Readiness"):
//! - a new or empty cluster, and a broker that hosts nothing, is ready once registered;
//! - a replication-factor-1 partition has this broker as its whole ISR: it never holds
//!   readiness;
//! - a partition with no live leader (every other in-sync replica is down) has nothing to
//!   catch up from: it does not hold readiness, or a restart of the last survivors would
//!   deadlock;
//! - a partition this broker is being moved off (reassignment `removing`) does not hold it;
//! - a standalone broker (no coordinator) is ready once it serves.

use crate::metadata::ClusterView;

/// Readiness of a broker, with the reason when not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Recovering logs, binding listeners, or shutting down.
    NotServing,
    /// Not (yet) registered in the coordinator.
    NotRegistered,
    /// Out of the ISR of these partitions (`topic-partition`), which have a live leader.
    CatchingUp {
        count: usize,
        sample: Vec<String>,
    },
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        *self == Readiness::Ready
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Ready => write!(f, "ready"),
            Readiness::NotServing => write!(f, "not ready: not serving"),
            Readiness::NotRegistered => write!(f, "not ready: not registered in the coordinator"),
            Readiness::CatchingUp { count, sample } => write!(
                f,
                "not ready: catching up on {count} partition(s): {}",
                sample.join(", ")
            ),
        }
    }
}

/// Readiness of broker `me` in cluster mode, from the cluster view (pure).
pub fn cluster_readiness(view: &ClusterView, me: i32) -> Readiness {
    if !view.brokers.iter().any(|b| b.id == me) {
        return Readiness::NotRegistered;
    }
    let live = |id: i32| view.brokers.iter().any(|b| b.id == id);
    let mut lagging = Vec::new();
    for t in view.topics.values() {
        for p in &t.partitions {
            if !p.replicas.contains(&me) || p.isr.contains(&me) {
                continue;
            }
            let leaving = view
                .reassignments
                .get(&(t.name.clone(), p.index))
                .is_some_and(|r| r.removing.contains(&me));
            let has_leader = p.leader >= 0 && p.leader != me && live(p.leader);
            if has_leader && !leaving {
                lagging.push(format!("{}-{}", t.name, p.index));
            }
        }
    }
    if lagging.is_empty() {
        Readiness::Ready
    } else {
        Readiness::CatchingUp {
            count: lagging.len(),
            sample: lagging.into_iter().take(5).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::metadata::{BrokerMeta, PartitionMeta, Reassigning, TopicMeta};

    fn broker(id: i32) -> BrokerMeta {
        BrokerMeta {
            id,
            host: "h".into(),
            port: 9092,
            rack: None,
            endpoints: vec![],
        }
    }

    fn view(live: &[i32], parts: &[(i32, &[i32], &[i32])]) -> ClusterView {
        let partitions = parts
            .iter()
            .enumerate()
            .map(|(i, (leader, replicas, isr))| PartitionMeta {
                index: i as i32,
                leader: *leader,
                leader_epoch: 0,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                partition_epoch: 0,
            })
            .collect();
        let mut topics = BTreeMap::new();
        topics.insert(
            "t".to_string(),
            Arc::new(TopicMeta {
                name: "t".into(),
                id: Default::default(),
                partitions,
                configs: Default::default(),
                internal: false,
            }),
        );
        ClusterView {
            version: 1,
            cluster_id: "c".into(),
            controller_id: live.first().copied().unwrap_or(-1),
            brokers: live.iter().map(|i| broker(*i)).collect(),
            topics,
            default_broker_configs: Default::default(),
            broker_configs: Default::default(),
            shutting_down: Default::default(),
            reassignments: Default::default(),
        }
    }

    #[test]
    fn table() {
        let rows: Vec<(&str, ClusterView, i32, bool)> = vec![
            ("empty cluster", view(&[1], &[]), 1, true),
            ("not registered", view(&[2], &[]), 1, false),
            (
                "in every ISR",
                view(&[1, 2], &[(2, &[1, 2], &[1, 2])]),
                1,
                true,
            ),
            (
                "out of an ISR",
                view(&[1, 2], &[(2, &[1, 2], &[2])]),
                1,
                false,
            ),
            ("hosts nothing", view(&[1, 2], &[(2, &[2], &[2])]), 1, true),
            ("RF=1, its own", view(&[1], &[(1, &[1], &[1])]), 1, true),
            ("RF=1 offline", view(&[1], &[(-1, &[1], &[1])]), 1, true),
            (
                "no live leader",
                view(&[1], &[(-1, &[1, 2], &[2])]),
                1,
                true,
            ),
            (
                "leader not registered",
                view(&[1], &[(2, &[1, 2], &[2])]),
                1,
                true,
            ),
        ];
        for (name, v, me, ready) in rows {
            assert_eq!(cluster_readiness(&v, me).is_ready(), ready, "{name}");
        }
    }

    #[test]
    fn a_replica_being_moved_off_does_not_hold_readiness() {
        let mut v = view(&[1, 2], &[(2, &[2, 1], &[2])]);
        assert!(!cluster_readiness(&v, 1).is_ready());
        v.reassignments.insert(
            ("t".into(), 0),
            Reassigning {
                adding: vec![],
                removing: vec![1],
            },
        );
        assert!(cluster_readiness(&v, 1).is_ready());
    }

    #[test]
    fn the_message_names_the_partitions() {
        let v = view(&[1, 2], &[(2, &[1, 2], &[2]), (2, &[1, 2], &[2])]);
        let r = cluster_readiness(&v, 1);
        assert_eq!(
            r.to_string(),
            "not ready: catching up on 2 partition(s): t-0, t-1"
        );
    }
}
