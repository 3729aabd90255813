//! Security parts of the API: a KafkaCluster's `spec.listeners` and `spec.authorization`, and
//! the `KafkaUser` resource (`rivulet.dev/v1alpha1`). Re-exported by `crate::crd`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::ClusterRef;

/// Port of the internal replication listener (inter-broker traffic and the operator's admin
/// connection); refused for `spec.listeners`.
pub const REPLICATION_PORT: i32 = 9091;
/// Name of the internal replication listener; refused for `spec.listeners`.
pub const REPLICATION_LISTENER: &str = "replication";

/// One client listener of every broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.authentication) || self.authentication != 'tls' || (has(self.tls) && self.tls)",
        "message": "authentication tls needs tls: true"
    },
    {
        "rule": "self.port != 9091 && self.port != 8092",
        "message": "ports 9091 (replication listener) and 8092 (broker admin) are reserved"
    },
    {
        "rule": "self.name != 'replication' && self.name != 'admin'",
        "message": "the listener names replication and admin are reserved"
    }
]))]
pub struct Listener {
    /// Listener name (lowercase letters, digits and `-`, at most 15 characters: it names the
    /// Service port too); the broker's Kafka listener name is its upper-case form (`-` becomes
    /// `_`). `replication` and `admin` are reserved.
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Container and Service port (1024-65535; 9091 and 8092 are reserved).
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,

    /// Encrypts the listener with TLS, the broker certificate signed by the cluster CA (Secret
    /// `<cluster>-cluster-ca-cert`, key `ca.crt`).
    #[serde(default)]
    pub tls: bool,

    /// How clients authenticate: `none`, `scram-sha-512` or `plain` (SASL; PLAIN checks the
    /// password against the user's SCRAM credential), or `tls` (client certificates signed by
    /// the cluster CA, needs `tls: true`; the principal is `User:CN=<user>`).
    #[serde(default)]
    pub authentication: ListenerAuthentication,
}

/// Client authentication of a listener.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ListenerAuthentication {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "tls")]
    Tls,
}

impl Listener {
    /// Kafka's security protocol of this listener.
    pub fn security_protocol(&self) -> &'static str {
        use ListenerAuthentication as A;
        match (self.tls, self.authentication) {
            (false, A::None | A::Tls) => "PLAINTEXT",
            (false, A::ScramSha512 | A::Plain) => "SASL_PLAINTEXT",
            (true, A::None | A::Tls) => "SSL",
            (true, A::ScramSha512 | A::Plain) => "SASL_SSL",
        }
    }

    /// The broker's listener name.
    pub fn kafka_name(&self) -> String {
        self.name.to_ascii_uppercase().replace('-', "_")
    }
}

/// Authorization of client requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// `simple`: Kafka's ACL authorizer (ACLs from KafkaUsers; DENY wins; nothing is allowed
    /// without an ACL).
    #[serde(rename = "type")]
    pub type_: AuthorizationType,

    /// Users allowed everything, without ACLs (user names, as in KafkaUser; the principal is
    /// `User:<name>`). The operator's own principal is added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub super_users: Vec<String>,
}

/// Authorizer kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AuthorizationType {
    #[default]
    #[serde(rename = "simple")]
    Simple,
}

/// Listener addresses for clients, in `status.listeners`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Kafka security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).
    pub security_protocol: String,
    /// `host:port` of the bootstrap Service for this listener.
    pub bootstrap_address: String,
}

/// A Kafka user of a KafkaCluster: its credential (a SCRAM-SHA-512 password or a client
/// certificate, in a Secret named after the user) and its ACLs.
// printcolumn(...) repeats `type_ = ...` by design; clippy reads that as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rivulet.dev",
    version = "v1alpha1",
    kind = "KafkaUser",
    plural = "kafkausers",
    singular = "kafkauser",
    shortname = "ku",
    namespaced,
    status = "KafkaUserStatus",
    doc = "A user of a Rivulet KafkaCluster in the same namespace: credential and ACLs.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name",
        description = "KafkaCluster"
    ),
    printcolumn(
        name = "Authentication",
        type_ = "string",
        json_path = ".spec.authentication.type",
        description = "Authentication"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserSpec {
    /// The KafkaCluster (same namespace) the user belongs to.
    pub cluster_ref: ClusterRef,

    /// How the user authenticates.
    pub authentication: UserAuthentication,

    /// ACLs of the user; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<UserAuthorization>,
}

/// A user's credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type == 'scram-sha-512' || !has(self.password)",
        "message": "password is only for scram-sha-512"
    }
]))]
pub struct UserAuthentication {
    /// `scram-sha-512`: a password (generated into the Secret `<user>`, key `password`, unless
    /// `password` names one) stored in the cluster as a salted SCRAM-SHA-512 credential.
    /// `tls`: a client certificate signed by the cluster CA (Secret `<user>`: `user.crt`,
    /// `user.key`, `ca.crt`), principal `User:CN=<user>`.
    #[serde(rename = "type")]
    pub type_: UserAuthenticationType,

    /// scram-sha-512 only: take the password from this Secret instead of generating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
}

/// User authentication kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UserAuthenticationType {
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "tls")]
    Tls,
}

/// A password kept in a Secret of the user's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSource {
    /// The Secret and key holding the password.
    pub value_from: SecretKeyRef,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A user's ACLs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthorization {
    /// `simple` (the cluster's `spec.authorization.type`).
    #[serde(rename = "type", default)]
    pub type_: AuthorizationType,

    /// ACL rules; the principal of each is the user's.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub acls: Vec<AclRule>,
}

/// One ACL rule: allow or deny operations on a resource from a host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclRule {
    /// The resource the rule applies to.
    pub resource: AclResource,

    /// Operations (Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All).
    #[schemars(length(min = 1, max = 11))]
    pub operations: Vec<AclOperation>,

    /// Host the rule applies to; `*` (every host) when absent.
    #[serde(default = "star")]
    #[schemars(length(min = 1, max = 253))]
    pub host: String,

    /// `allow` or `deny` (DENY wins over ALLOW).
    #[serde(rename = "type", default)]
    pub type_: AclType,
}

fn star() -> String {
    "*".to_string()
}

/// A resource an ACL names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type == 'cluster' || has(self.name)",
        "message": "name is required unless type is cluster"
    }
]))]
pub struct AclResource {
    /// `topic`, `group`, `cluster` or `transactionalId`.
    #[serde(rename = "type")]
    pub type_: AclResourceType,

    /// Resource name (`*` for every one); for `cluster` always `kafka-cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,

    /// `literal` (the exact name, or `*`) or `prefix` (names starting with `name`).
    #[serde(default)]
    pub pattern_type: AclPatternType,
}

/// Kafka resource types.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum AclResourceType {
    #[serde(rename = "topic")]
    Topic,
    #[serde(rename = "group")]
    Group,
    #[serde(rename = "cluster")]
    Cluster,
    #[serde(rename = "transactionalId")]
    TransactionalId,
}

/// Resource pattern types.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, JsonSchema,
)]
pub enum AclPatternType {
    #[default]
    #[serde(rename = "literal")]
    Literal,
    #[serde(rename = "prefix")]
    Prefix,
}

/// Kafka ACL operations.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum AclOperation {
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
}

/// Allow or deny.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, JsonSchema,
)]
pub enum AclType {
    #[default]
    #[serde(rename = "allow")]
    Allow,
    #[serde(rename = "deny")]
    Deny,
}

/// Observed state of a KafkaUser.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserStatus {
    /// `Ready`, with reasons (`Ready`, `ClusterNotFound`, `ClusterNotReady`,
    /// `PasswordSecretMissing`, `NoClusterCa`, `Error`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Kafka user name (`metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The principal ACLs name (`User:<name>` or `User:CN=<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The Secret with the user's credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Number of ACL bindings the user has in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls: Option<i32>,
}

impl KafkaUser {
    /// The principal the broker gives this user.
    pub fn principal(&self) -> String {
        let name = kube::ResourceExt::name_any(self);
        match self.spec.authentication.type_ {
            UserAuthenticationType::ScramSha512 => format!("User:{name}"),
            UserAuthenticationType::Tls => format!("User:CN={name}"),
        }
    }
}
