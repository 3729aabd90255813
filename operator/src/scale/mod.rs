//! Scaling brokers in and out safely: the pure replica-movement plans ([`plan`]) and the I/O
//! that drains brokers before the StatefulSets shrink and rebalances onto new brokers
//! ([`reconcile`]).

pub mod plan;
pub mod reconcile;
