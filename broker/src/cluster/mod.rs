//! Cluster mode: the broker's metadata lives in the coordinator (ZooKeeper protocol), one broker
//! is the controller, and partitions are replicated between brokers.
//!
//! `zk_layout` is the tree's layout and JSON; `zk_store` implements [`crate::metadata::MetadataStore`]
//! on it (registration, watches → `ClusterView`, conditional writes); `controller` elects leaders
//! and carries out topic changes.

pub mod zk_layout;
