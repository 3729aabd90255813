//! Kafka's ACL authorizer (`AclAuthorizer`) as a pure decision: ACL bindings in, allow or deny
//! out. Resources are Topic, Group, Cluster and TransactionalId named LITERALly (`*` is the
//! wildcard) or by PREFIX; DENY wins over ALLOW; super users pass; a resource with no ACL at all
//! is open only with `allow.everyone.if.no.acl.found`. Operations imply others as in Kafka:
//! Read, Write, Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs; All
//! implies everything.

use std::collections::BTreeSet;

use super::principal::KafkaPrincipal;

pub const WILDCARD: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's `ResourceType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
        }
    }
    pub fn from_code(c: i8) -> Option<Self> {
        match c {
            2 => Some(Self::Topic),
            3 => Some(Self::Group),
            4 => Some(Self::Cluster),
            5 => Some(Self::TransactionalId),
            _ => None,
        }
    }
    /// The name Kafka uses in `/kafka-acl/<ResourceType>/...`.
    pub fn zk_name(self) -> &'static str {
        match self {
            Self::Topic => "Topic",
            Self::Group => "Group",
            Self::Cluster => "Cluster",
            Self::TransactionalId => "TransactionalId",
        }
    }
    pub fn from_zk_name(s: &str) -> Option<Self> {
        [
            Self::Topic,
            Self::Group,
            Self::Cluster,
            Self::TransactionalId,
        ]
        .into_iter()
        .find(|r| r.zk_name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }
}

/// Kafka's `AclOperation` (codes 2..=14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    pub const ALL: [Operation; 13] = [
        Self::All,
        Self::Read,
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Alter,
        Self::Describe,
        Self::ClusterAction,
        Self::DescribeConfigs,
        Self::AlterConfigs,
        Self::IdempotentWrite,
        Self::CreateTokens,
        Self::DescribeTokens,
    ];
    pub fn code(self) -> i8 {
        match self {
            Self::All => 2,
            Self::Read => 3,
            Self::Write => 4,
            Self::Create => 5,
            Self::Delete => 6,
            Self::Alter => 7,
            Self::Describe => 8,
            Self::ClusterAction => 9,
            Self::DescribeConfigs => 10,
            Self::AlterConfigs => 11,
            Self::IdempotentWrite => 12,
            Self::CreateTokens => 13,
            Self::DescribeTokens => 14,
        }
    }
    pub fn from_code(c: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.code() == c)
    }
    /// The name in Kafka's ZooKeeper ACL JSON.
    pub fn zk_name(self) -> &'static str {
        match self {
            Self::All => "All",
            Self::Read => "Read",
            Self::Write => "Write",
            Self::Create => "Create",
            Self::Delete => "Delete",
            Self::Alter => "Alter",
            Self::Describe => "Describe",
            Self::ClusterAction => "ClusterAction",
            Self::DescribeConfigs => "DescribeConfigs",
            Self::AlterConfigs => "AlterConfigs",
            Self::IdempotentWrite => "IdempotentWrite",
            Self::CreateTokens => "CreateTokens",
            Self::DescribeTokens => "DescribeTokens",
        }
    }
    pub fn from_zk_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.zk_name() == s)
    }
    /// ACL operations whose ALLOW grants `self` (Kafka's implied operations).
    fn granted_by(self) -> &'static [Operation] {
        match self {
            Self::Describe => &[
                Self::All,
                Self::Describe,
                Self::Read,
                Self::Write,
                Self::Delete,
                Self::Alter,
            ],
            Self::DescribeConfigs => &[Self::All, Self::DescribeConfigs, Self::AlterConfigs],
            Self::Read => &[Self::All, Self::Read],
            Self::Write => &[Self::All, Self::Write],
            Self::Create => &[Self::All, Self::Create],
            Self::Delete => &[Self::All, Self::Delete],
            Self::Alter => &[Self::All, Self::Alter],
            Self::ClusterAction => &[Self::All, Self::ClusterAction],
            Self::AlterConfigs => &[Self::All, Self::AlterConfigs],
            Self::IdempotentWrite => &[Self::All, Self::IdempotentWrite],
            Self::CreateTokens => &[Self::All, Self::CreateTokens],
            Self::DescribeTokens => &[Self::All, Self::DescribeTokens],
            Self::All => &[Self::All],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }
}

/// What an ACL applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
}

impl ResourcePattern {
    /// Whether this pattern covers the resource named `name` (of its type).
    pub fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.name == name || self.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.name),
        }
    }
}

/// Who may (not) do what from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessControlEntry {
    /// `User:alice` or `User:*`.
    pub principal: String,
    /// An IP address or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    pub entry: AccessControlEntry,
}

/// The authorizer's settings.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerConfig {
    /// `super.users`: principals that pass every check.
    pub super_users: BTreeSet<String>,
    /// `allow.everyone.if.no.acl.found` (false by default once an authorizer is on).
    pub allow_everyone_if_no_acl_found: bool,
}

/// One decision: may `principal` connecting from `host` do `op` on the named resource?
pub fn authorize<'a>(
    cfg: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    principal: &KafkaPrincipal,
    host: &str,
    op: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if cfg.super_users.iter().any(|u| principal.is(u)) {
        return true;
    }
    // Two passes over the bindings rather than a collected list: this runs per topic of every
    // produce and fetch when the authorizer is on.
    let applicable = || {
        acls.clone()
            .into_iter()
            .filter(|b| b.pattern.resource_type == resource_type && b.pattern.covers(name))
    };
    if applicable().next().is_none() {
        return cfg.allow_everyone_if_no_acl_found;
    }
    let matches_entry = |e: &AccessControlEntry, ops: &[Operation]| {
        (e.principal == WILDCARD_PRINCIPAL || principal.is(&e.principal))
            && (e.host == host || e.host == WILDCARD)
            && ops.contains(&e.operation)
    };
    // DENY wins: a DENY of the operation itself (or All) refuses.
    let denied = applicable().any(|b| {
        b.entry.permission == Permission::Deny && matches_entry(&b.entry, &[op, Operation::All])
    });
    if denied {
        return false;
    }
    applicable().any(|b| {
        b.entry.permission == Permission::Allow && matches_entry(&b.entry, op.granted_by())
    })
}

/// Kafka's `authorizeByResourceType` (KIP-679): may `principal` do `op` on at least one
/// resource of the type? True for super users, or when some ALLOW binding for the principal
/// (or `User:*`) and host grants it and no DENY of it covers every name (a LITERAL `*` or a
/// PREFIXED "" pattern).
pub fn authorize_any<'a>(
    cfg: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    principal: &KafkaPrincipal,
    host: &str,
    op: Operation,
    resource_type: ResourceType,
) -> bool {
    if cfg.super_users.iter().any(|u| principal.is(u)) {
        return true;
    }
    let applies = |e: &AccessControlEntry| {
        (e.principal == WILDCARD_PRINCIPAL || principal.is(&e.principal))
            && (e.host == host || e.host == WILDCARD)
    };
    let of_type: Vec<&AclBinding> = acls
        .into_iter()
        .filter(|b| b.pattern.resource_type == resource_type)
        .collect();
    let denied_everywhere = of_type.iter().any(|b| {
        b.entry.permission == Permission::Deny
            && applies(&b.entry)
            && [op, Operation::All].contains(&b.entry.operation)
            && match b.pattern.pattern_type {
                PatternType::Literal => b.pattern.name == WILDCARD,
                PatternType::Prefixed => b.pattern.name.is_empty(),
            }
    });
    if denied_everywhere {
        return false;
    }
    if of_type.is_empty() {
        return cfg.allow_everyone_if_no_acl_found;
    }
    of_type.iter().any(|b| {
        b.entry.permission == Permission::Allow
            && applies(&b.entry)
            && op.granted_by().contains(&b.entry.operation)
    })
}

/// A filter of DescribeAcls / DeleteAcls (`None` = any).
#[derive(Debug, Clone, Default)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    /// `None` = ANY; `Some(None)` = MATCH; `Some(Some(t))` = that pattern type.
    pub pattern: Option<Option<PatternType>>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Kafka's `AclBindingFilter.matches`: ANY matches exact names of any pattern type; MATCH
    /// matches every ACL that would apply to the named resource (literal, wildcard, prefixes).
    pub fn matches(&self, b: &AclBinding) -> bool {
        if self
            .resource_type
            .is_some_and(|t| t != b.pattern.resource_type)
        {
            return false;
        }
        let name_ok = match (&self.pattern, &self.name) {
            (Some(None), Some(n)) => b.pattern.covers(n),
            (Some(None), None) => true,
            (Some(Some(t)), n) => {
                *t == b.pattern.pattern_type && n.as_ref().is_none_or(|n| *n == b.pattern.name)
            }
            (None, n) => n.as_ref().is_none_or(|n| *n == b.pattern.name),
        };
        name_ok
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == b.entry.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.entry.host)
            && self.operation.is_none_or(|o| o == b.entry.operation)
            && self.permission.is_none_or(|p| p == b.entry.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Operation::*;
    use Permission::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        who: &str,
        host: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type: rt,
                name: name.into(),
                pattern_type: pt,
            },
            entry: AccessControlEntry {
                principal: who.into(),
                host: host.into(),
                operation: op,
                permission: perm,
            },
        }
    }

    fn user(n: &str) -> KafkaPrincipal {
        KafkaPrincipal::user(n.into())
    }

    #[test]
    fn decision_table() {
        use PatternType::*;
        use ResourceType::*;
        let acls = vec![
            acl(Topic, "orders", Literal, "User:alice", "*", Write, Allow),
            acl(Topic, "orders", Literal, "User:bob", "*", Read, Allow),
            acl(Topic, "orders", Literal, "User:bob", "10.0.0.9", Read, Deny),
            acl(Topic, "team-a.", Prefixed, "User:carol", "*", All, Allow),
            acl(
                Topic,
                "team-a.secret",
                Literal,
                "User:carol",
                "*",
                Read,
                Deny,
            ),
            acl(Topic, "*", Literal, "User:*", "*", Describe, Allow),
            acl(Group, "g1", Literal, "User:bob", "*", Read, Allow),
            acl(
                Cluster,
                "kafka-cluster",
                Literal,
                "User:ops",
                "*",
                AlterConfigs,
                Allow,
            ),
        ];
        let cfg = AuthorizerConfig {
            super_users: ["User:admin".to_string()].into(),
            allow_everyone_if_no_acl_found: false,
        };
        let rows: &[(&str, &str, Operation, ResourceType, &str, bool)] = &[
            ("alice", "1.1.1.1", Write, Topic, "orders", true),
            ("alice", "1.1.1.1", Describe, Topic, "orders", true), // implied by Write
            ("alice", "1.1.1.1", Read, Topic, "orders", false),
            ("bob", "1.1.1.1", Read, Topic, "orders", true),
            ("bob", "10.0.0.9", Read, Topic, "orders", false), // DENY from that host wins
            ("bob", "10.0.0.9", Describe, Topic, "orders", true), // deny Read does not deny Describe
            ("carol", "h", Write, Topic, "team-a.x", true),       // prefixed All
            ("carol", "h", Read, Topic, "team-a.secret", false), // literal DENY beats prefixed ALLOW
            ("carol", "h", Write, Topic, "team-a.secret", true),
            ("carol", "h", Write, Topic, "team-b.x", false),
            ("dave", "h", Describe, Topic, "anything", true), // wildcard topic, wildcard principal
            ("dave", "h", Read, Topic, "anything", false),
            ("bob", "h", Read, Group, "g1", true),
            ("bob", "h", Read, Group, "g2", false), // no ACL for g2, allow.everyone off
            ("ops", "h", DescribeConfigs, Cluster, "kafka-cluster", true), // implied by AlterConfigs
            ("ops", "h", Alter, Cluster, "kafka-cluster", false),
            ("admin", "h", Delete, Topic, "orders", true), // super user
            ("admin", "h", ClusterAction, Cluster, "kafka-cluster", true),
        ];
        for (who, host, op, rt, name, want) in rows {
            assert_eq!(
                authorize(&cfg, &acls, &user(who), host, *op, *rt, name),
                *want,
                "{who}@{host} {op:?} {rt:?}:{name}"
            );
        }
    }

    #[test]
    fn no_acl_found_follows_the_setting() {
        let open = AuthorizerConfig {
            allow_everyone_if_no_acl_found: true,
            ..Default::default()
        };
        let acls: Vec<AclBinding> = vec![];
        assert!(authorize(
            &open,
            &acls,
            &user("x"),
            "h",
            Operation::Write,
            ResourceType::Topic,
            "t"
        ));
        assert!(!authorize(
            &AuthorizerConfig::default(),
            &acls,
            &user("x"),
            "h",
            Operation::Write,
            ResourceType::Topic,
            "t"
        ));
    }

    #[test]
    fn filters_any_match_and_exact() {
        use PatternType::*;
        use ResourceType::*;
        let acls = [
            acl(Topic, "team-a.", Prefixed, "User:c", "*", Read, Allow),
            acl(Topic, "team-a.x", Literal, "User:c", "*", Read, Allow),
            acl(Topic, "*", Literal, "User:c", "*", Read, Allow),
            acl(Group, "team-a.x", Literal, "User:c", "*", Read, Allow),
        ];
        let count = |f: AclFilter| acls.iter().filter(|b| f.matches(b)).count();
        assert_eq!(count(AclFilter::default()), 4);
        assert_eq!(
            count(AclFilter {
                resource_type: Some(Topic),
                name: Some("team-a.x".into()),
                pattern: Some(None),
                ..Default::default()
            }),
            3
        );
        assert_eq!(
            count(AclFilter {
                resource_type: Some(Topic),
                name: Some("team-a.x".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(AclFilter {
                pattern: Some(Some(Prefixed)),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(AclFilter {
                operation: Some(Operation::Write),
                ..Default::default()
            }),
            0
        );
    }

    fn arb_acl() -> impl Strategy<Value = AclBinding> {
        (
            prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
            prop::sample::select(vec!["a", "ab", "abc", "*", "b"]),
            prop::sample::select(vec![PatternType::Literal, PatternType::Prefixed]),
            prop::sample::select(vec!["User:u", "User:v", "User:*"]),
            prop::sample::select(vec!["*", "h1"]),
            prop::sample::select(Operation::ALL.to_vec()),
            prop::sample::select(vec![Permission::Allow, Permission::Deny]),
        )
            .prop_map(|(rt, n, pt, who, host, op, perm)| acl(rt, n, pt, who, host, op, perm))
    }

    proptest! {
        /// Adding a DENY never grants anything; adding an ALLOW never takes anything away;
        /// super users always pass.
        #[test]
        fn monotone_in_allow_and_deny(
            acls in proptest::collection::vec(arb_acl(), 0..8),
            extra in arb_acl(),
            op in prop::sample::select(Operation::ALL.to_vec()),
            name in prop::sample::select(vec!["a", "ab", "abc", "b", "zz"]),
            host in prop::sample::select(vec!["h1", "h2"]),
        ) {
            let cfg = AuthorizerConfig { super_users: ["User:root".to_string()].into(), allow_everyone_if_no_acl_found: false };
            let u = user("u");
            let before = authorize(&cfg, &acls, &u, host, op, ResourceType::Topic, name);
            let mut more = acls.clone();
            more.push(extra.clone());
            let after = authorize(&cfg, &more, &u, host, op, ResourceType::Topic, name);
            if extra.entry.permission == Permission::Deny { prop_assert!(!after || before); }
            else { prop_assert!(after || !before); }
            prop_assert!(authorize(&cfg, &more, &user("root"), host, op, ResourceType::Topic, name));
        }
    }
}
