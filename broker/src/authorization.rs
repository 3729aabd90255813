//! Which operations a principal may perform on a resource, as the `authorized_operations`
//! bitfields of Metadata, DescribeCluster and DescribeGroups report them (KIP-430).
//!
//! Kafka answers with the operations the authorizer allows out of those that apply to the
//! resource type (`AclEntry.supportedOperations`), one bit per `AclOperation` code. This broker
//! has no authorizer yet, and Kafka without one allows everything, so [`authorized_operations`]
//! returns every operation that applies. An ACL authorizer plugs in here: it filters
//! [`supported_operations`] by what the principal's ACLs allow on the named resource.

/// Kafka's `AclOperation` codes (the bit positions in an `authorized_operations` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

/// Kafka's concrete ACL resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

/// Who is asking. Every connection is anonymous until SASL/TLS authentication exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: &'static str,
    pub name: String,
}

impl Principal {
    /// Kafka's `User:ANONYMOUS`, the principal of an unauthenticated connection.
    pub fn anonymous() -> Principal {
        Principal {
            kind: "User",
            name: "ANONYMOUS".into(),
        }
    }
}

/// The operations that apply to a resource type. Group: READ, DESCRIBE, DELETE, as Kafka up
/// to 3.7 has it — Kafka 3.8+ adds DESCRIBE_CONFIGS and ALTER_CONFIGS for KIP-848 group
/// configs, which this broker does not have, so a client is not told it may use them.
pub fn supported_operations(resource: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// The `authorized_operations` bitfield for `principal` on the resource `name` of type
/// `resource`. Without an authorizer: every operation that applies.
pub fn authorized_operations(resource: ResourceType, _name: &str, _principal: &Principal) -> i32 {
    to_bitfield(supported_operations(resource))
}

/// Kafka's `Utils.to32BitField`: bit `code` set for each operation.
pub fn to_bitfield(ops: &[AclOperation]) -> i32 {
    ops.iter().fold(0i32, |acc, op| acc | (1i32 << (*op as u8)))
}

/// The operations a bitfield names (the inverse of [`to_bitfield`]), for tests and logs.
pub fn from_bitfield(bits: i32) -> Vec<u8> {
    (0..32u8).filter(|b| bits & (1i32 << b) != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_match_kafkas_codes() {
        let p = Principal::anonymous();
        // READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
        // ALTER_CONFIGS 11.
        let topic = authorized_operations(ResourceType::Topic, "t", &p);
        assert_eq!(from_bitfield(topic), [3, 4, 5, 6, 7, 8, 10, 11]);
        assert_eq!(topic, 0b1101_1111_1000);
        // CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10,
        // ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
        let cluster = authorized_operations(ResourceType::Cluster, "kafka-cluster", &p);
        assert_eq!(from_bitfield(cluster), [5, 7, 8, 9, 10, 11, 12]);
        assert_eq!(
            from_bitfield(authorized_operations(ResourceType::Group, "g", &p)),
            [3, 6, 8]
        );
        assert_eq!(
            from_bitfield(authorized_operations(
                ResourceType::TransactionalId,
                "x",
                &p
            )),
            [4, 8]
        );
        assert_eq!(
            from_bitfield(authorized_operations(
                ResourceType::DelegationToken,
                "x",
                &p
            )),
            [8]
        );
        assert_eq!(
            from_bitfield(authorized_operations(ResourceType::User, "x", &p)),
            [13, 14]
        );
    }

    #[test]
    fn no_resource_type_claims_unknown_any_or_all() {
        for rt in [
            ResourceType::Topic,
            ResourceType::Group,
            ResourceType::Cluster,
            ResourceType::TransactionalId,
            ResourceType::DelegationToken,
            ResourceType::User,
        ] {
            let bits = to_bitfield(supported_operations(rt));
            assert_eq!(bits & 0b111, 0, "{rt:?}");
            assert!(bits > 0 && bits != i32::MIN);
        }
    }
}
