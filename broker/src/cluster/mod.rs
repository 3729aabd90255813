//! Cluster mode: the broker's metadata lives in the coordinator (ZooKeeper protocol), one broker
//! is the controller, and partitions are replicated between brokers.
//!
//! `zk_layout` is the tree's layout and JSON; `zk_store` implements [`crate::metadata::MetadataStore`]
//! on it (registration, watches → `ClusterView`, conditional writes; its parts live in `store`);
//! `controller` elects leaders and carries out topic changes.

pub mod controller;
pub mod store;
pub mod zk_acl;
pub mod zk_layout;
pub mod zk_store;
