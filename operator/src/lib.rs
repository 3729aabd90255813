//! Rivulet's Kubernetes operator: CRD types, pure validation and builders, and the
//! controllers that apply them.

pub mod builders;
pub mod cluster_controller;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod crd_security;
pub mod crdgen;
pub mod drift;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod patches;
pub mod presets;
pub mod quantity;
pub mod roll;
pub mod scale;
pub mod security;
pub mod storage;
pub mod topic_controller;
pub mod user_controller;
pub mod validate;
