//! Pure replication decisions of a partition leader (Kafka's `Partition`/`Replica` logic): how a
//! follower's fetch moves its caught-up time, the high watermark, and when the in-sync replica set
//! expands or shrinks. No I/O and no clock: callers pass `now_ms`.

use std::collections::HashMap;

/// What the leader knows about one follower, from its fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end offset (= the offset it last fetched from).
    pub leo: i64,
    /// Last time the follower was known to have everything the leader had.
    pub last_caught_up_ms: i64,
    /// Leader's log end offset at the follower's previous fetch, and that fetch's time.
    pub last_fetch_leader_leo: i64,
    pub last_fetch_ms: i64,
}

impl FollowerState {
    /// A follower the leader has not heard from yet: counts as caught up "now" so that a new
    /// leader does not shrink the ISR before followers had a chance to fetch (Kafka does the same).
    pub fn new(now_ms: i64) -> Self {
        Self {
            leo: -1,
            last_caught_up_ms: now_ms,
            last_fetch_leader_leo: -1,
            last_fetch_ms: now_ms,
        }
    }

    /// Records a fetch from `fetch_offset` when the leader's log ends at `leader_leo`.
    /// Caught up if it asked for the leader's end; or if it reached what the leader had at its
    /// previous fetch, then it was caught up as of that previous fetch.
    pub fn on_fetch(&mut self, fetch_offset: i64, leader_leo: i64, now_ms: i64) {
        if fetch_offset >= leader_leo {
            self.last_caught_up_ms = self.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= self.last_fetch_leader_leo && self.last_fetch_leader_leo >= 0 {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.leo = fetch_offset;
        self.last_fetch_leader_leo = leader_leo;
        self.last_fetch_ms = now_ms;
    }
}

/// High watermark: the smallest log end offset over the ISR (the leader's own for `me`). A
/// member not heard from since this leadership began holds it where it is. Never moves back.
pub fn high_watermark(
    me: i32,
    leader_leo: i64,
    isr: &[i32],
    followers: &HashMap<i32, FollowerState>,
    current_hw: i64,
) -> i64 {
    let mut hw = leader_leo;
    for r in isr.iter().filter(|r| **r != me) {
        match followers.get(r) {
            Some(f) if f.leo >= 0 => hw = hw.min(f.leo),
            _ => return current_hw,
        }
    }
    hw.max(current_hw)
}

/// ISR expansion: replicas outside the ISR whose log reached the high watermark and the start of
/// the current leader epoch (so they hold no divergent tail of an older leader), and that fetched
/// within `lag_max_ms` — a follower that caught up and then died must not be re-added on the
/// strength of its last fetch (Kafka expands only while serving that follower's fetch).
/// `None` = no change.
pub fn expand_isr(
    isr: &[i32],
    replicas: &[i32],
    followers: &HashMap<i32, FollowerState>,
    hw: i64,
    epoch_start_offset: i64,
    now_ms: i64,
    lag_max_ms: i64,
) -> Option<Vec<i32>> {
    let mut new_isr = isr.to_vec();
    for r in replicas.iter().filter(|r| !isr.contains(r)) {
        if let Some(f) = followers.get(r) {
            let recent = now_ms.saturating_sub(f.last_fetch_ms) <= lag_max_ms;
            if recent && f.leo >= 0 && f.leo >= hw && f.leo >= epoch_start_offset {
                new_isr.push(*r);
            }
        }
    }
    (new_isr.len() != isr.len()).then_some(new_isr)
}

/// ISR shrink: followers in the ISR not caught up for longer than `lag_max_ms` (stuck or too
/// slow). The leader never removes itself. `None` = no change.
pub fn shrink_isr(
    me: i32,
    isr: &[i32],
    followers: &HashMap<i32, FollowerState>,
    now_ms: i64,
    lag_max_ms: i64,
) -> Option<Vec<i32>> {
    let new_isr: Vec<i32> = isr
        .iter()
        .copied()
        .filter(|r| {
            *r == me
                || followers
                    .get(r)
                    .is_some_and(|f| now_ms.saturating_sub(f.last_caught_up_ms) <= lag_max_ms)
        })
        .collect();
    (new_isr.len() != isr.len()).then_some(new_isr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(leo: i64, caught_up: i64) -> FollowerState {
        FollowerState {
            leo,
            last_caught_up_ms: caught_up,
            last_fetch_leader_leo: leo,
            last_fetch_ms: caught_up,
        }
    }

    #[test]
    fn hw_is_min_leo_over_isr_and_never_moves_back() {
        let mut fs = HashMap::new();
        fs.insert(2, f(7, 0));
        fs.insert(3, f(4, 0));
        assert_eq!(high_watermark(1, 10, &[1, 2, 3], &fs, 0), 4);
        // Out-of-ISR replicas do not hold it back.
        assert_eq!(high_watermark(1, 10, &[1, 2], &fs, 0), 7);
        // Alone in the ISR: everything appended is committed (standalone).
        assert_eq!(high_watermark(1, 10, &[1], &fs, 3), 10);
        // Never backwards, e.g. after a new ISR member with a shorter log.
        assert_eq!(high_watermark(1, 10, &[1, 3], &fs, 6), 6);
    }

    #[test]
    fn unheard_isr_member_holds_hw() {
        let mut fs = HashMap::new();
        fs.insert(2, FollowerState::new(0));
        assert_eq!(high_watermark(1, 10, &[1, 2], &fs, 5), 5);
        assert_eq!(high_watermark(1, 10, &[1, 3], &fs, 5), 5);
    }

    #[test]
    fn caught_up_time_follows_kafka() {
        let mut s = FollowerState::new(0);
        // Behind with no previous fetch: not caught up.
        s.on_fetch(5, 10, 100);
        assert_eq!(s.last_caught_up_ms, 0);
        // Reached what the leader had at the previous fetch: caught up as of then.
        s.on_fetch(10, 15, 200);
        assert_eq!(s.last_caught_up_ms, 100);
        // At the leader's end: caught up now.
        s.on_fetch(15, 15, 300);
        assert_eq!(s.last_caught_up_ms, 300);
        assert_eq!(s.leo, 15);
    }

    #[test]
    fn expand_needs_hw_and_epoch_start() {
        let mut fs = HashMap::new();
        fs.insert(2, f(10, 0));
        fs.insert(3, f(8, 0));
        assert_eq!(
            expand_isr(&[1], &[1, 2, 3], &fs, 9, 0, 0, 1_000),
            Some(vec![1, 2])
        );
        assert_eq!(
            expand_isr(&[1], &[1, 2, 3], &fs, 8, 0, 0, 1_000),
            Some(vec![1, 2, 3])
        );
        // Caught up with the HW but not past the start of this leader epoch.
        assert_eq!(expand_isr(&[1], &[1, 2, 3], &fs, 8, 11, 0, 1_000), None);
        assert_eq!(
            expand_isr(&[1, 2, 3], &[1, 2, 3], &fs, 0, 0, 0, 1_000),
            None
        );
        // Never heard from.
        fs.insert(3, FollowerState::new(0));
        assert_eq!(expand_isr(&[1, 2], &[1, 2, 3], &fs, 0, 0, 0, 1_000), None);
    }

    #[test]
    fn a_caught_up_follower_that_stopped_fetching_is_not_re_added() {
        let mut fs = HashMap::new();
        // Caught up at its last fetch (t=0), then silent: a dead broker.
        fs.insert(2, f(10, 0));
        assert_eq!(
            expand_isr(&[1], &[1, 2], &fs, 10, 0, 500, 1_000),
            Some(vec![1, 2])
        );
        assert_eq!(expand_isr(&[1], &[1, 2], &fs, 10, 0, 5_000, 1_000), None);
    }

    #[test]
    fn shrink_drops_lagging_followers_never_the_leader() {
        let mut fs = HashMap::new();
        fs.insert(2, f(10, 1_000));
        fs.insert(3, f(10, 9_500));
        assert_eq!(
            shrink_isr(1, &[1, 2, 3], &fs, 10_000, 2_000),
            Some(vec![1, 3])
        );
        assert_eq!(shrink_isr(1, &[1, 3], &fs, 10_000, 2_000), None);
        // An ISR member the leader knows nothing about is dropped.
        assert_eq!(shrink_isr(1, &[1, 4], &fs, 10_000, 2_000), Some(vec![1]));
        assert_eq!(shrink_isr(1, &[1], &fs, 10_000, 2_000), None);
    }
}
