//! Which operations a principal may perform on a resource, as the `authorized_operations`
//! bitfields of Metadata, DescribeCluster and DescribeGroups report them (KIP-430).
//!
//! Kafka answers with the operations the authorizer allows out of those that apply to the
//! resource type (`AclEntry.supportedOperations`), one bit per `AclOperation` code. Without an
//! authorizer Kafka allows everything, and so does [`BrokerSecurity::allows`]; with one,
//! [`authorized_operations`] keeps the operations the caller's ACLs allow.

use crate::security::authorizer::{self, Operation};
use crate::security::{BrokerSecurity, Caller};

/// Kafka's `AclOperation` codes (the bit positions in an `authorized_operations` field).
pub type AclOperation = Operation;

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

impl ResourceType {
    /// The authorizer's resource type; delegation tokens and users have no ACLs here.
    fn acl_type(self) -> Option<authorizer::ResourceType> {
        match self {
            Self::Topic => Some(authorizer::ResourceType::Topic),
            Self::Group => Some(authorizer::ResourceType::Group),
            Self::Cluster => Some(authorizer::ResourceType::Cluster),
            Self::TransactionalId => Some(authorizer::ResourceType::TransactionalId),
            Self::DelegationToken | Self::User => None,
        }
    }
}

/// The operations that apply to a resource type. Group: READ, DESCRIBE, DELETE, as Kafka up
/// to 3.7 has it — Kafka 3.8+ adds DESCRIBE_CONFIGS and ALTER_CONFIGS for KIP-848 group
/// configs, which this broker does not have, so a client is not told it may use them.
pub fn supported_operations(resource: ResourceType) -> &'static [AclOperation] {
    use Operation::*;
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

/// The `authorized_operations` bitfield for `caller` on the resource `name` of type
/// `resource`: the operations that apply and that the authorizer allows.
pub fn authorized_operations(
    sec: &BrokerSecurity,
    caller: Caller<'_>,
    resource: ResourceType,
    name: &str,
) -> i32 {
    let ops: Vec<AclOperation> = supported_operations(resource)
        .iter()
        .copied()
        .filter(|op| match resource.acl_type() {
            Some(rt) => sec.allows(caller, *op, rt, name),
            None => !sec.authorizer_enabled(),
        })
        .collect();
    to_bitfield(&ops)
}

/// Kafka's `Utils.to32BitField`: bit `code` set for each operation.
pub fn to_bitfield(ops: &[AclOperation]) -> i32 {
    ops.iter().fold(0i32, |acc, op| acc | (1i32 << op.code()))
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
        let sec = BrokerSecurity::default();
        let who = crate::security::principal::KafkaPrincipal::anonymous();
        let c = Caller {
            principal: &who,
            host: "127.0.0.1",
        };
        let authorized_operations =
            |rt: ResourceType, n: &str, _: &()| authorized_operations(&sec, c, rt, n);
        let p = ();
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
