//! Parts of the coordinator-backed store ([`super::zk_store`]): the `--coordinator` value and
//! the broker's decoded copy of the tree.

pub mod addr;
pub mod tree;
