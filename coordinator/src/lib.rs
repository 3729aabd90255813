//! rivulet-coordinator: a ZooKeeper-wire-compatible metadata service.

pub mod admin;
pub mod core;
pub mod jute;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod tree;
pub mod wal;
pub mod watch;
