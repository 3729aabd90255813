//! The broker roller: brokers run with `updateStrategy: OnDelete`, and the operator deletes one
//! broker pod at a time, gated on in-sync replicas — the pure decision in [`decide`], the I/O
//! around it in [`reconcile`].

pub mod decide;
pub mod reconcile;
