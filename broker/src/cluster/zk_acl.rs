//! The ACLs brokers put on the znodes they create (Kafka's `zookeeper.set.acl`). Off (the
//! default), every znode is open to anyone, as Kafka without it. On, brokers authenticate to
//! the coordinator with a digest user and create znodes the creator may change and everyone
//! may read, except the sensitive ones — SCRAM credentials under `/config/users` and the ACLs —
//! which only the creator may read.

use std::sync::{LazyLock, OnceLock};

use zookeeper_client as zk;

static SECURE: OnceLock<bool> = OnceLock::new();

static CREATOR_ALL_ANYONE_READ: LazyLock<Vec<zk::Acl>> = LazyLock::new(|| {
    let mut v: Vec<zk::Acl> = zk::Acls::creator_all().to_vec();
    v.extend(zk::Acls::anyone_read().iter().cloned());
    v
});

/// Turns secure ACLs on for this process (once, at start, before any znode is written).
pub fn enable() {
    let _ = SECURE.set(true);
}

pub fn enabled() -> bool {
    SECURE.get().copied().unwrap_or(false)
}

/// ACLs of cluster metadata znodes: world-readable, writable by the brokers' user.
pub fn default_acls() -> zk::Acls<'static> {
    if enabled() {
        zk::Acls::new(&CREATOR_ALL_ANYONE_READ)
    } else {
        zk::Acls::anyone_all()
    }
}

/// ACLs of credential and ACL znodes: the brokers' user only.
pub fn sensitive_acls() -> zk::Acls<'static> {
    if enabled() {
        zk::Acls::creator_all()
    } else {
        zk::Acls::anyone_all()
    }
}
