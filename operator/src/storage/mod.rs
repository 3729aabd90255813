//! Storage: the autoscaler's pure decision ([`decide`]) and the I/O around it ([`reconcile`]).

pub mod decide;
pub mod reconcile;
