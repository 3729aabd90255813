//! Pure parts of a KafkaUser: the ACL bindings its spec means, what to create and delete to get
//! there, and its generated password.

use std::collections::BTreeSet;

use rivulet_admin_client::{acl, AclBinding};

use crate::crd::{AclOperation, AclPatternType, AclResourceType, AclType, KafkaUserSpec};

/// Length of generated passwords (alphanumeric: about 190 bits).
pub const PASSWORD_LEN: usize = 32;

fn resource_code(t: AclResourceType) -> i8 {
    match t {
        AclResourceType::Topic => acl::RESOURCE_TOPIC,
        AclResourceType::Group => acl::RESOURCE_GROUP,
        AclResourceType::Cluster => acl::RESOURCE_CLUSTER,
        AclResourceType::TransactionalId => acl::RESOURCE_TRANSACTIONAL_ID,
    }
}

fn operation_code(o: AclOperation) -> i8 {
    match o {
        AclOperation::All => acl::OP_ALL,
        AclOperation::Read => acl::OP_READ,
        AclOperation::Write => acl::OP_WRITE,
        AclOperation::Create => acl::OP_CREATE,
        AclOperation::Delete => acl::OP_DELETE,
        AclOperation::Alter => acl::OP_ALTER,
        AclOperation::Describe => acl::OP_DESCRIBE,
        AclOperation::ClusterAction => acl::OP_CLUSTER_ACTION,
        AclOperation::DescribeConfigs => acl::OP_DESCRIBE_CONFIGS,
        AclOperation::AlterConfigs => acl::OP_ALTER_CONFIGS,
        AclOperation::IdempotentWrite => acl::OP_IDEMPOTENT_WRITE,
    }
}

/// The ACL bindings of a user spec, for `principal` (one per rule and operation).
pub fn desired_bindings(spec: &KafkaUserSpec, principal: &str) -> BTreeSet<AclBinding> {
    let mut out = BTreeSet::new();
    let Some(a) = &spec.authorization else {
        return out;
    };
    for rule in &a.acls {
        let name = match rule.resource.type_ {
            AclResourceType::Cluster => acl::CLUSTER_NAME.to_string(),
            _ => rule.resource.name.clone().unwrap_or_default(),
        };
        let pattern = match rule.resource.pattern_type {
            AclPatternType::Literal => acl::PATTERN_LITERAL,
            AclPatternType::Prefix => acl::PATTERN_PREFIXED,
        };
        let permission = match rule.type_ {
            AclType::Allow => acl::PERMISSION_ALLOW,
            AclType::Deny => acl::PERMISSION_DENY,
        };
        for op in &rule.operations {
            out.insert(AclBinding {
                resource_type: resource_code(rule.resource.type_),
                resource_name: name.clone(),
                pattern_type: pattern,
                principal: principal.to_string(),
                host: rule.host.clone(),
                operation: operation_code(*op),
                permission_type: permission,
            });
        }
    }
    out
}

/// What to create and what to delete so the principal's bindings in the cluster (`current`)
/// become `desired`.
pub fn acl_diff(
    desired: &BTreeSet<AclBinding>,
    current: &[AclBinding],
) -> (Vec<AclBinding>, Vec<AclBinding>) {
    let current: BTreeSet<AclBinding> = current.iter().cloned().collect();
    (
        desired.difference(&current).cloned().collect(),
        current.difference(desired).cloned().collect(),
    )
}

/// Problems of a user spec the schema doesn't catch. Empty means valid.
pub fn validate(spec: &KafkaUserSpec) -> Vec<String> {
    let mut errs = Vec::new();
    for (i, rule) in spec
        .authorization
        .iter()
        .flat_map(|a| a.acls.iter())
        .enumerate()
    {
        let f = format!("spec.authorization.acls[{i}]");
        if rule.operations.is_empty() {
            errs.push(format!("{f}.operations must list at least one operation"));
        }
        match (&rule.resource.type_, &rule.resource.name) {
            (AclResourceType::Cluster, _) => {}
            (_, None) => errs.push(format!("{f}.resource.name is required")),
            (_, Some(n)) if n.is_empty() => errs.push(format!("{f}.resource.name is empty")),
            (_, Some(n)) if n == "*" && rule.resource.pattern_type == AclPatternType::Prefix => {
                errs.push(format!(
                    "{f}.resource: name * with patternType prefix matches nothing; use literal"
                ))
            }
            _ => {}
        }
    }
    if spec.authentication.password.is_some()
        && spec.authentication.type_ != crate::crd::UserAuthenticationType::ScramSha512
    {
        errs.push("spec.authentication.password is only for scram-sha-512".into());
    }
    errs
}

/// A password from `PASSWORD_LEN` random alphanumeric characters.
pub fn generate_password() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(PASSWORD_LEN);
    while out.len() < PASSWORD_LEN {
        let mut b = [0u8; 64];
        getrandom::fill(&mut b)?;
        // Rejection sampling keeps every character equally likely (248 = 4 * 62).
        for x in b {
            if (x as usize) < 4 * ALPHABET.len() && out.len() < PASSWORD_LEN {
                out.push(ALPHABET[x as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// Fingerprint of the password a credential was last set from (an annotation on the user's
/// own Secret, which holds the password anyway): a change of password re-sets the credential.
pub fn password_fingerprint(user: &str, password: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{user}\0{password}").as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> KafkaUserSpec {
        serde_json::from_value(v).expect("spec")
    }

    #[test]
    fn rules_become_one_binding_per_operation() {
        let s = spec(json!({
            "clusterRef": {"name": "demo"},
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": [
                {"resource": {"type": "topic", "name": "orders"}, "operations": ["Read", "Write"]},
                {"resource": {"type": "group", "name": "app-", "patternType": "prefix"},
                 "operations": ["Read"], "type": "deny", "host": "10.0.0.1"},
                {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]},
            ]}
        }));
        let b = desired_bindings(&s, "User:alice");
        assert_eq!(b.len(), 4);
        assert!(b.contains(&AclBinding {
            resource_type: acl::RESOURCE_GROUP,
            resource_name: "app-".into(),
            pattern_type: acl::PATTERN_PREFIXED,
            principal: "User:alice".into(),
            host: "10.0.0.1".into(),
            operation: acl::OP_READ,
            permission_type: acl::PERMISSION_DENY,
        }));
        assert!(b.iter().any(|x| x.resource_type == acl::RESOURCE_CLUSTER
            && x.resource_name == "kafka-cluster"
            && x.host == "*"
            && x.operation == acl::OP_IDEMPOTENT_WRITE));
        assert!(validate(&s).is_empty());
    }

    #[test]
    fn bad_specs_are_refused() {
        let s = spec(json!({
            "clusterRef": {"name": "demo"},
            "authentication": {"type": "tls", "password": {"valueFrom": {"name": "s", "key": "k"}}},
            "authorization": {"acls": [
                {"resource": {"type": "topic"}, "operations": ["Read"]},
                {"resource": {"type": "topic", "name": "*", "patternType": "prefix"}, "operations": []},
            ]}
        }));
        let errs = validate(&s);
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    #[test]
    fn passwords_are_long_alphanumeric_and_differ() {
        let a = generate_password().expect("random");
        let b = generate_password().expect("random");
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_ne!(password_fingerprint("u", &a), password_fingerprint("u", &b));
    }

    fn binding() -> impl Strategy<Value = AclBinding> {
        (2i8..6, "[a-c]{1,2}", 3i8..5, 2i8..13, 2i8..4).prop_map(|(t, n, p, o, perm)| AclBinding {
            resource_type: t,
            resource_name: n,
            pattern_type: p,
            principal: "User:u".into(),
            host: "*".into(),
            operation: o,
            permission_type: perm,
        })
    }

    proptest! {
        #[test]
        fn applying_the_diff_reaches_the_desired_set(
            desired in proptest::collection::btree_set(binding(), 0..12),
            current in proptest::collection::vec(binding(), 0..12),
        ) {
            let (create, delete) = acl_diff(&desired, &current);
            let mut after: BTreeSet<AclBinding> = current.iter().cloned().collect();
            for d in &delete { prop_assert!(after.remove(d)); }
            for c in &create { prop_assert!(after.insert(c.clone())); }
            prop_assert_eq!(&after, &desired);
            // Nothing to do once there.
            let now: Vec<AclBinding> = after.into_iter().collect();
            let (c2, d2) = acl_diff(&desired, &now);
            prop_assert!(c2.is_empty() && d2.is_empty());
        }
    }
}
