//! Idempotent-producer bookkeeping per partition: the last five batches of each producer id, so a
//! retried batch is recognised as a duplicate and a gap in sequence numbers is refused (Kafka's
//! `max.in.flight.requests.per.connection <= 5` guarantee). Pure: no I/O.

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer, as in Kafka.
pub const CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already written: answer with the original offsets, write nothing.
    Duplicate(BatchRecord),
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    /// Older epoch than the producer's current one: a zombie.
    FencedEpoch {
        current: i16,
        got: i16,
    },
    /// No state for this producer and the batch does not start a sequence.
    UnknownProducer,
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStateTable {
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> SequenceCheck {
        let Some(entry) = self.producers.get(&producer_id) else {
            return if first_seq == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::UnknownProducer
            };
        };
        if epoch < entry.epoch {
            return SequenceCheck::FencedEpoch {
                current: entry.epoch,
                got: epoch,
            };
        }
        if epoch > entry.epoch {
            // A bumped epoch restarts the sequence.
            return if first_seq == 0 {
                SequenceCheck::Accept
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: first_seq,
                }
            };
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate(*b);
        }
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(0);
        if first_seq == expected {
            SequenceCheck::Accept
        } else {
            SequenceCheck::OutOfOrder {
                expected,
                got: first_seq,
            }
        }
    }

    /// Records an appended batch (also used when rebuilding state from the log).
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: BatchRecord) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchRecord {
        BatchRecord {
            first_seq,
            last_seq,
            first_offset,
            last_offset: first_offset + (last_seq - first_seq) as i64,
        }
    }

    #[test]
    fn sequences_duplicates_and_gaps() {
        let mut t = ProducerStateTable::default();
        assert_eq!(t.check(7, 0, 0, 9), SequenceCheck::Accept);
        t.record(7, 0, rec(0, 9, 100));
        assert_eq!(t.check(7, 0, 10, 19), SequenceCheck::Accept);
        t.record(7, 0, rec(10, 19, 110));
        assert_eq!(
            t.check(7, 0, 0, 9),
            SequenceCheck::Duplicate(rec(0, 9, 100))
        );
        assert_eq!(
            t.check(7, 0, 25, 30),
            SequenceCheck::OutOfOrder {
                expected: 20,
                got: 25
            }
        );
        assert_eq!(t.check(8, 0, 5, 6), SequenceCheck::UnknownProducer);
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut t = ProducerStateTable::default();
        t.record(1, 3, rec(0, 0, 0));
        assert_eq!(
            t.check(1, 2, 1, 1),
            SequenceCheck::FencedEpoch { current: 3, got: 2 }
        );
        assert_eq!(t.check(1, 4, 0, 0), SequenceCheck::Accept);
        assert!(matches!(
            t.check(1, 4, 5, 5),
            SequenceCheck::OutOfOrder { .. }
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequence_wraps() {
        let mut t = ProducerStateTable::default();
        for i in 0..7 {
            t.record(1, 0, rec(i, i, i as i64));
        }
        assert_eq!(
            t.check(1, 0, 0, 0),
            SequenceCheck::OutOfOrder {
                expected: 7,
                got: 0
            }
        );
        assert!(matches!(t.check(1, 0, 6, 6), SequenceCheck::Duplicate(_)));
        t.record(2, 0, rec(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(t.check(2, 0, 0, 3), SequenceCheck::Accept);
    }
}
