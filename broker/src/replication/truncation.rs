//! Where a follower cuts its log when it starts following a new leader epoch (KIP-101/KIP-279):
//! it asks the leader for the end offset of its own latest epoch and keeps only what the two
//! logs share. Pure: the caller does the OffsetForLeaderEpoch exchange and the truncation.

/// The leader's OffsetForLeaderEpoch answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderAnswer {
    /// (largest leader epoch <= the one asked, its end offset on the leader).
    EpochEnd { epoch: i32, end_offset: i64 },
    /// UNDEFINED_EPOCH, or the leader cannot answer (an old leader without the API).
    Unknown,
}

/// What the follower does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Cut the log here (a no-op when at or past its end).
    pub offset: i64,
    /// The logs agree up to `offset`; otherwise ask again with the new latest epoch.
    pub done: bool,
}

/// Kafka's `getOffsetTruncationState`. `asked_epoch` is the follower's latest epoch;
/// `own_end_for(e)` is the follower's own OffsetForLeaderEpoch answer for epoch `e`.
pub fn truncation_offset(
    asked_epoch: i32,
    answer: LeaderAnswer,
    leo: i64,
    hw: i64,
    own_end_for: impl Fn(i32) -> Option<(i32, i64)>,
) -> Truncation {
    match answer {
        // Nothing to compare: only what was committed is known to be shared.
        LeaderAnswer::Unknown => Truncation {
            offset: hw.min(leo),
            done: true,
        },
        LeaderAnswer::EpochEnd { epoch, end_offset } if epoch == asked_epoch => Truncation {
            offset: end_offset.min(leo),
            done: true,
        },
        // The leader never had our latest epoch: it answered with an older one.
        LeaderAnswer::EpochEnd { epoch, end_offset } => match own_end_for(epoch) {
            // We have that epoch too: the logs agree up to the smaller end.
            Some((own_epoch, own_end)) if own_epoch == epoch => Truncation {
                offset: end_offset.min(own_end).min(leo),
                done: true,
            },
            // We do not have it: cut to where our log passes the leader's epoch and ask again
            // with our new latest epoch.
            Some((_, own_end)) => Truncation {
                offset: own_end.min(leo),
                done: false,
            },
            // We kept no epochs that far back: the leader answered an epoch below ours, so
            // its end offset bounds what we share.
            None => Truncation {
                offset: end_offset.min(leo),
                done: true,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower log with epochs (epoch, start offset) and log end `leo`, answered Kafka's way.
    fn own(epochs: &'static [(i32, i64)], leo: i64) -> impl Fn(i32) -> Option<(i32, i64)> {
        move |e| {
            let i = epochs.iter().rposition(|(x, _)| *x <= e)?;
            let end = epochs.get(i + 1).map(|(_, s)| *s).unwrap_or(leo);
            Some((epochs[i].0, end))
        }
    }

    #[test]
    fn same_epoch_truncates_to_the_leaders_end() {
        // KIP-101: follower wrote 0..10 in epoch 1; the leader has epoch 1 only up to 8.
        let t = truncation_offset(
            1,
            LeaderAnswer::EpochEnd {
                epoch: 1,
                end_offset: 8,
            },
            10,
            5,
            own(&[(0, 0), (1, 4)], 10),
        );
        assert_eq!(
            t,
            Truncation {
                offset: 8,
                done: true
            }
        );
        // The leader has more: nothing to cut.
        let t = truncation_offset(
            1,
            LeaderAnswer::EpochEnd {
                epoch: 1,
                end_offset: 20,
            },
            10,
            5,
            own(&[(1, 0)], 10),
        );
        assert_eq!(t.offset, 10);
    }

    #[test]
    fn leader_without_our_epoch_kip279() {
        // Follower: epoch 0 at 0, epoch 2 at 6 (it led briefly), LEO 9. Leader never saw
        // epoch 2; it answers epoch 0 ends at 7 (its epoch 3 started at 7).
        let f = own(&[(0, 0), (2, 6)], 9);
        let t = truncation_offset(
            2,
            LeaderAnswer::EpochEnd {
                epoch: 0,
                end_offset: 7,
            },
            9,
            3,
            &f,
        );
        // We have epoch 0 up to 6: the logs agree to 6.
        assert_eq!(
            t,
            Truncation {
                offset: 6,
                done: true
            }
        );
        // Leader answers epoch 1, which we never had: cut to where our epoch 2 starts, ask again.
        let t = truncation_offset(
            2,
            LeaderAnswer::EpochEnd {
                epoch: 1,
                end_offset: 8,
            },
            9,
            3,
            &f,
        );
        assert_eq!(
            t,
            Truncation {
                offset: 6,
                done: false
            }
        );
    }

    #[test]
    fn unknown_falls_back_to_the_high_watermark() {
        let t = truncation_offset(3, LeaderAnswer::Unknown, 10, 7, own(&[(3, 0)], 10));
        assert_eq!(
            t,
            Truncation {
                offset: 7,
                done: true
            }
        );
        let t = truncation_offset(3, LeaderAnswer::Unknown, 5, 7, own(&[(3, 0)], 5));
        assert_eq!(t.offset, 5);
    }
}
