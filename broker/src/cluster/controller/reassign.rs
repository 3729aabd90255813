//! Partition reassignment decisions (KIP-455 on the ZooKeeper-mode layout), as pure functions.
//!
//! A partition's assignment carries, while it is being moved, the replicas being added and the
//! replicas being removed (Kafka's `adding_replicas`/`removing_replicas` in the topic znode):
//! - phase 1 ([`begin`]): the assignment becomes TRS followed by ORS−TRS, with adding = TRS−ORS
//!   and removing = ORS−TRS; the new replicas start fetching from the leader;
//! - phase 2 ([`complete`]): once every TRS member is in the ISR, a leader outside TRS (or dead)
//!   hands over to a live in-sync TRS member (epoch + 1), the ISR becomes ISR∩TRS, the assignment
//!   becomes TRS and adding/removing are cleared; the removed replicas' brokers delete their logs.
//!
//! A new target for a partition already being moved replaces the old one (the original replicas
//! stay those from before the first move), and cancelling reverts to the original replicas the
//! same way (phase 1 towards ORS, which has nothing to add and so completes at once).

use super::decisions::{LeaderAndIsr, Liveness};

/// One partition's assignment with its reassignment bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The full replica list (TRS then ORS−TRS while a reassignment is in progress).
    pub replicas: Vec<i32>,
    /// TRS − ORS: replicas being added.
    pub adding: Vec<i32>,
    /// ORS − TRS: replicas being removed.
    pub removing: Vec<i32>,
}

impl Assignment {
    pub fn idle(replicas: Vec<i32>) -> Self {
        Assignment {
            replicas,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub fn in_progress(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// ORS: the replicas before the reassignment began.
    pub fn original(&self) -> Vec<i32> {
        minus(&self.replicas, &self.adding)
    }

    /// TRS: where the reassignment goes.
    pub fn target(&self) -> Vec<i32> {
        minus(&self.replicas, &self.removing)
    }
}

/// Why a reassignment request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the target replica list is empty")]
    Empty,
    #[error("broker {0} appears twice in the target replicas")]
    Duplicate(i32),
    #[error("broker {0} is not a registered broker")]
    UnknownBroker(i32),
}

/// Checks a target replica list against the registered brokers (Kafka's
/// INVALID_REPLICA_ASSIGNMENT cases).
pub fn validate(
    target: &[i32],
    registered: &std::collections::BTreeSet<i32>,
) -> Result<(), Invalid> {
    if target.is_empty() {
        return Err(Invalid::Empty);
    }
    for (i, r) in target.iter().enumerate() {
        if target[..i].contains(r) {
            return Err(Invalid::Duplicate(*r));
        }
        if !registered.contains(r) {
            return Err(Invalid::UnknownBroker(*r));
        }
    }
    Ok(())
}

/// The leader or ISR cannot follow the new assignment without losing the last in-sync copy or
/// leaving no live leader: the request waits until that changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no live in-sync replica of the new assignment {replicas:?} could lead (ISR {isr:?})")]
pub struct Stuck {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Phase 1: the assignment that moves `current` towards `target` (Kafka's `reassignTo`). The
/// original replicas are those of `current` before any reassignment in progress.
pub fn begin(current: &Assignment, target: &[i32]) -> Assignment {
    let original = current.original();
    let mut full: Vec<i32> = Vec::with_capacity(target.len() + original.len());
    for r in target.iter().chain(original.iter()) {
        if !full.contains(r) {
            full.push(*r);
        }
    }
    Assignment {
        adding: minus(&full, &original),
        removing: minus(&full, target),
        replicas: full,
    }
}

/// Fits the leader and ISR to a replica list that may have lost members (a replaced or
/// cancelled reassignment drops replicas it had been adding): the ISR keeps only `replicas`, and
/// a leader outside them hands over to the first live in-sync one (epoch + 1). `Ok(None)` when
/// nothing changes; `Err` when it cannot be done without losing the last in-sync copy or the
/// live leader.
pub fn fit_state(
    replicas: &[i32],
    current: &LeaderAndIsr,
    alive: Liveness<'_>,
) -> Result<Option<LeaderAndIsr>, Stuck> {
    let isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    let stuck = || Stuck {
        replicas: replicas.to_vec(),
        isr: current.isr.clone(),
    };
    if isr.is_empty() {
        return Err(stuck());
    }
    let leader = if current.leader >= 0 && replicas.contains(&current.leader) {
        current.leader
    } else {
        match elect(replicas, &isr, alive) {
            Some(l) => l,
            // Already offline: it stays so, with the narrowed ISR.
            None if current.leader < 0 => -1,
            None => return Err(stuck()),
        }
    };
    let next = LeaderAndIsr {
        leader,
        leader_epoch: if leader == current.leader {
            current.leader_epoch
        } else {
            current.leader_epoch.saturating_add(1)
        },
        isr,
    };
    Ok((next != *current).then_some(next))
}

/// Phase 2, once due: every TRS member is in the ISR. Returns the final assignment (TRS, nothing
/// adding or removing) and the partition's new state; `None` while not due, or while no live
/// in-sync TRS member can take over from a leader that must go.
pub fn complete(
    current: &Assignment,
    state: &LeaderAndIsr,
    alive: Liveness<'_>,
) -> Option<(Assignment, LeaderAndIsr)> {
    if !current.in_progress() {
        return None;
    }
    let target = current.target();
    if target.is_empty() || !target.iter().all(|r| state.isr.contains(r)) {
        return None;
    }
    let isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|r| target.contains(r))
        .collect();
    let leader_stays =
        state.leader >= 0 && target.contains(&state.leader) && alive.live.contains(&state.leader);
    let leader = if leader_stays {
        state.leader
    } else {
        elect(&target, &isr, alive)?
    };
    let epoch = if leader == state.leader {
        state.leader_epoch
    } else {
        state.leader_epoch.saturating_add(1)
    };
    Some((
        Assignment::idle(target),
        LeaderAndIsr {
            leader,
            leader_epoch: epoch,
            isr,
        },
    ))
}

/// First replica (assignment order) that is live and in `isr`, one not shutting down preferred.
fn elect(replicas: &[i32], isr: &[i32], alive: Liveness<'_>) -> Option<i32> {
    let in_sync_live = |r: &i32| isr.contains(r) && alive.live.contains(r);
    replicas
        .iter()
        .copied()
        .find(|r| in_sync_live(r) && !alive.shutting_down.contains(r))
        .or_else(|| replicas.iter().copied().find(in_sync_live))
}

fn minus(a: &[i32], b: &[i32]) -> Vec<i32> {
    a.iter().copied().filter(|r| !b.contains(r)).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use proptest::prelude::*;

    fn set(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    fn st(leader: i32, epoch: i32, isr: &[i32]) -> LeaderAndIsr {
        LeaderAndIsr {
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
        }
    }

    fn asg(replicas: &[i32], adding: &[i32], removing: &[i32]) -> Assignment {
        Assignment {
            replicas: replicas.to_vec(),
            adding: adding.to_vec(),
            removing: removing.to_vec(),
        }
    }

    #[test]
    fn begin_table() {
        // (current, target, expected)
        type Ids = &'static [i32];
        type A = (Ids, Ids, Ids);
        let cases: &[(A, Ids, A)] = &[
            // Move one replica: TRS then ORS−TRS.
            ((&[0, 1], &[], &[]), &[1, 2], (&[1, 2, 0], &[2], &[0])),
            ((&[0, 1], &[], &[]), &[2, 1], (&[2, 1, 0], &[2], &[0])),
            // Move everything.
            (
                (&[0, 1], &[], &[]),
                &[2, 3],
                (&[2, 3, 0, 1], &[2, 3], &[0, 1]),
            ),
            // Reorder only: nothing to add or remove.
            ((&[0, 1, 2], &[], &[]), &[2, 0, 1], (&[2, 0, 1], &[], &[])),
            // Grow the replication factor.
            ((&[0], &[], &[]), &[0, 1], (&[0, 1], &[1], &[])),
            // A new target replaces one in progress; ORS stays [0, 1] and 2 is dropped.
            ((&[1, 2, 0], &[2], &[0]), &[1, 3], (&[1, 3, 0], &[3], &[0])),
            // Cancel = back to ORS: the adding replica goes, nothing left in progress.
            ((&[1, 2, 0], &[2], &[0]), &[0, 1], (&[0, 1], &[], &[])),
        ];
        for ((r, a, rm), target, (wr, wa, wrm)) in cases {
            let got = begin(&asg(r, a, rm), target);
            assert_eq!(
                got,
                asg(wr, wa, wrm),
                "from {r:?}+{a:?}-{rm:?} to {target:?}"
            );
            assert_eq!(got.target(), target.to_vec());
        }
        let cur = asg(&[1, 2, 0], &[2], &[0]);
        assert_eq!(cur.original(), vec![1, 0]);
        assert_eq!(cur.target(), vec![1, 2]);
    }

    #[test]
    fn validate_table() {
        let reg = set(&[0, 1, 2]);
        assert_eq!(validate(&[1, 2], &reg), Ok(()));
        assert_eq!(validate(&[], &reg), Err(Invalid::Empty));
        assert_eq!(validate(&[1, 1], &reg), Err(Invalid::Duplicate(1)));
        assert_eq!(validate(&[1, 7], &reg), Err(Invalid::UnknownBroker(7)));
    }

    #[test]
    fn complete_table() {
        let live = set(&[0, 1, 2]);
        let none = set(&[]);
        let alive = Liveness {
            live: &live,
            shutting_down: &none,
        };
        let moving = asg(&[1, 2, 0], &[2], &[0]);
        // Not due: 2 has not caught up.
        assert_eq!(complete(&moving, &st(0, 3, &[0, 1]), alive), None);
        // Due: the leader (0) leaves, 1 takes over with epoch + 1; ISR = ISR ∩ TRS.
        assert_eq!(
            complete(&moving, &st(0, 3, &[0, 1, 2]), alive),
            Some((Assignment::idle(vec![1, 2]), st(1, 4, &[1, 2])))
        );
        // Due with the leader in TRS: it stays, same epoch.
        assert_eq!(
            complete(&moving, &st(2, 3, &[2, 0, 1]), alive),
            Some((Assignment::idle(vec![1, 2]), st(2, 3, &[2, 1])))
        );
        // TRS leader dead: the next live in-sync TRS member leads.
        let live12 = set(&[0, 2]);
        let alive2 = Liveness {
            live: &live12,
            shutting_down: &none,
        };
        assert_eq!(
            complete(&moving, &st(1, 3, &[0, 1, 2]), alive2),
            Some((Assignment::idle(vec![1, 2]), st(2, 4, &[1, 2])))
        );
        // Nothing in progress: nothing to complete.
        assert_eq!(
            complete(&Assignment::idle(vec![0, 1]), &st(0, 1, &[0, 1]), alive),
            None
        );
        // Growing the replication factor keeps the leader.
        assert_eq!(
            complete(&asg(&[0, 1], &[1], &[]), &st(0, 1, &[0, 1]), alive),
            Some((Assignment::idle(vec![0, 1]), st(0, 1, &[0, 1])))
        );
    }

    #[test]
    fn fit_state_table() {
        let live = set(&[0, 1, 2, 3]);
        let none = set(&[]);
        let alive = Liveness {
            live: &live,
            shutting_down: &none,
        };
        // Nothing dropped: nothing to do.
        assert_eq!(fit_state(&[1, 2, 0], &st(0, 3, &[0, 1]), alive), Ok(None));
        // The dropped adding replica leaves the ISR.
        assert_eq!(
            fit_state(&[1, 3, 0], &st(0, 3, &[0, 1, 2]), alive),
            Ok(Some(st(0, 3, &[0, 1])))
        );
        // ... and hands leadership over when it led.
        assert_eq!(
            fit_state(&[0, 1], &st(2, 3, &[2, 1]), alive),
            Ok(Some(st(1, 4, &[1])))
        );
        // Only the dropped replica is in sync: refused.
        assert!(fit_state(&[0, 1], &st(2, 3, &[2]), alive).is_err());
        // Offline partition stays offline with the narrowed ISR.
        let only3 = set(&[3]);
        let alive3 = Liveness {
            live: &only3,
            shutting_down: &none,
        };
        assert_eq!(
            fit_state(&[0, 1], &st(-1, 3, &[1, 2]), alive3),
            Ok(Some(st(-1, 3, &[1])))
        );
    }

    /// ORS and TRS: distinct brokers out of 0..6; a state whose ISR is a non-empty subset of the
    /// full assignment with a leader in it; a live set.
    fn scenario() -> impl Strategy<Value = (Vec<i32>, Vec<i32>, Vec<bool>, usize, BTreeSet<i32>)> {
        (
            Just((0..6).collect::<Vec<i32>>()).prop_shuffle(),
            1usize..=3,
            Just((0..6).collect::<Vec<i32>>()).prop_shuffle(),
            1usize..=3,
            proptest::collection::vec(any::<bool>(), 6),
            0usize..6,
            proptest::collection::btree_set(0..6i32, 0..=6),
        )
            .prop_map(|(o, n, t, m, in_isr, leader, live)| {
                (o[..n].to_vec(), t[..m].to_vec(), in_isr, leader, live)
            })
    }

    proptest! {
        #[test]
        fn reassignment_invariants((ors, trs, in_isr, leader_pick, live) in scenario()) {
            let none = BTreeSet::new();
            let alive = Liveness { live: &live, shutting_down: &none };
            let moving = begin(&Assignment::idle(ors.clone()), &trs);
            // Phase 1: TRS first, every ORS member kept, bookkeeping consistent.
            prop_assert_eq!(&moving.replicas[..trs.len()], &trs[..]);
            prop_assert!(ors.iter().all(|r| moving.replicas.contains(r)));
            prop_assert_eq!(moving.original().iter().copied().collect::<BTreeSet<_>>(),
                ors.iter().copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(moving.target(), trs.clone());
            // A state during the move: ISR ⊆ replicas, non-empty, leader in it.
            let mut isr: Vec<i32> = moving.replicas.iter().zip(&in_isr).filter(|(_, k)| **k).map(|(r, _)| *r).collect();
            if isr.is_empty() {
                isr.push(moving.replicas[0]);
            }
            let state = st(isr[leader_pick % isr.len()], 5, &isr);
            match complete(&moving, &state, alive) {
                Some((done, new)) => {
                    // Only when TRS ⊆ ISR; the result is TRS with a leader in the ISR.
                    prop_assert!(trs.iter().all(|r| state.isr.contains(r)));
                    prop_assert_eq!(&done, &Assignment::idle(trs.clone()));
                    prop_assert!(!new.isr.is_empty());
                    prop_assert!(new.isr.contains(&new.leader));
                    prop_assert!(trs.contains(&new.leader));
                    prop_assert!(new.isr.iter().all(|r| trs.contains(r) && state.isr.contains(r)));
                    if new.leader != state.leader {
                        prop_assert!(live.contains(&new.leader));
                        prop_assert_eq!(new.leader_epoch, state.leader_epoch + 1);
                    } else {
                        prop_assert_eq!(new.leader_epoch, state.leader_epoch);
                    }
                    // Nothing more to complete.
                    prop_assert_eq!(complete(&done, &new, alive), None);
                }
                None => prop_assert!(
                    !moving.in_progress()
                        || !trs.iter().all(|r| state.isr.contains(r))
                        || !trs.iter().any(|r| live.contains(r))
                ),
            }
            // Cancelling reverts to ORS at once, never leaving a leader outside the ISR or an
            // empty ISR.
            let back = begin(&moving, &moving.original());
            prop_assert!(!back.in_progress());
            prop_assert_eq!(back.replicas.iter().copied().collect::<BTreeSet<_>>(),
                ors.iter().copied().collect::<BTreeSet<_>>());
            match fit_state(&back.replicas, &state, alive) {
                Ok(Some(new)) => {
                    prop_assert!(!new.isr.is_empty());
                    prop_assert!(new.isr.iter().all(|r| ors.contains(r)));
                    prop_assert!(new.leader == -1 || new.isr.contains(&new.leader));
                    prop_assert!(new.leader == -1 || ors.contains(&new.leader));
                }
                Ok(None) => {
                    prop_assert!(state.isr.iter().all(|r| ors.contains(r)));
                }
                Err(_) => prop_assert!(
                    !state.isr.iter().any(|r| ors.contains(r))
                        || !state.isr.iter().any(|r| ors.contains(r) && live.contains(r))
                ),
            }
        }
    }
}
