//! Security admin APIs: SCRAM credentials (KIP-554 Describe/AlterUserScramCredentials, the
//! salted password computed here so the password never leaves the client) and ACLs
//! (CreateAcls, DescribeAcls, DeleteAcls).

use bytes::Bytes;
use hmac::Hmac;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use sha2::{Sha256, Sha512};

use crate::{check, sb, AdminClient, Error, Result};

/// KIP-554 mechanism codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }
    pub fn from_code(c: i8) -> Option<Self> {
        match c {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// Smallest iteration count Kafka accepts (and the one we use).
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;

/// RFC 5802 `SaltedPassword := Hi(Normalize(password), salt, i)`: PBKDF2 with the mechanism's
/// HMAC. (SASLprep is the identity for the ASCII passwords the operator generates.)
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            let mut out = vec![0u8; 32];
            pbkdf2::pbkdf2::<Hmac<Sha256>>(password.as_bytes(), salt, iterations, &mut out)
                .expect("HMAC accepts keys of any length");
            out
        }
        ScramMechanism::Sha512 => {
            let mut out = vec![0u8; 64];
            pbkdf2::pbkdf2::<Hmac<Sha512>>(password.as_bytes(), salt, iterations, &mut out)
                .expect("HMAC accepts keys of any length");
            out
        }
    }
}

/// A user's SCRAM credential as DescribeUserScramCredentials shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    pub mechanism: Option<ScramMechanism>,
    pub iterations: i32,
}

/// Kafka's ACL codes (`ResourceType`, `PatternType`, `AclOperation`, `AclPermissionType`).
pub mod acl {
    pub const RESOURCE_ANY: i8 = 1;
    pub const RESOURCE_TOPIC: i8 = 2;
    pub const RESOURCE_GROUP: i8 = 3;
    pub const RESOURCE_CLUSTER: i8 = 4;
    pub const RESOURCE_TRANSACTIONAL_ID: i8 = 5;
    pub const PATTERN_ANY: i8 = 1;
    pub const PATTERN_MATCH: i8 = 2;
    pub const PATTERN_LITERAL: i8 = 3;
    pub const PATTERN_PREFIXED: i8 = 4;
    pub const OP_ANY: i8 = 1;
    pub const OP_ALL: i8 = 2;
    pub const OP_READ: i8 = 3;
    pub const OP_WRITE: i8 = 4;
    pub const OP_CREATE: i8 = 5;
    pub const OP_DELETE: i8 = 6;
    pub const OP_ALTER: i8 = 7;
    pub const OP_DESCRIBE: i8 = 8;
    pub const OP_CLUSTER_ACTION: i8 = 9;
    pub const OP_DESCRIBE_CONFIGS: i8 = 10;
    pub const OP_ALTER_CONFIGS: i8 = 11;
    pub const OP_IDEMPOTENT_WRITE: i8 = 12;
    pub const PERMISSION_ANY: i8 = 1;
    pub const PERMISSION_DENY: i8 = 2;
    pub const PERMISSION_ALLOW: i8 = 3;
    /// The name of the one Cluster resource.
    pub const CLUSTER_NAME: &str = "kafka-cluster";
}

/// One ACL binding: a resource pattern and an access control entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// A filter over ACL bindings: `None` strings and the ANY codes match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    /// Every binding of `principal`.
    pub fn principal(principal: &str) -> Self {
        Self {
            resource_type: acl::RESOURCE_ANY,
            resource_name: None,
            pattern_type: acl::PATTERN_ANY,
            principal: Some(principal.to_string()),
            host: None,
            operation: acl::OP_ANY,
            permission_type: acl::PERMISSION_ANY,
        }
    }

    /// Exactly `b`.
    pub fn exact(b: &AclBinding) -> Self {
        Self {
            resource_type: b.resource_type,
            resource_name: Some(b.resource_name.clone()),
            pattern_type: b.pattern_type,
            principal: Some(b.principal.clone()),
            host: Some(b.host.clone()),
            operation: b.operation,
            permission_type: b.permission_type,
        }
    }
}

fn random_salt() -> Result<Vec<u8>> {
    let mut salt = vec![0u8; 32];
    getrandom::fill(&mut salt).map_err(|e| Error::Protocol(format!("randomness: {e}")))?;
    Ok(salt)
}

impl AdminClient {
    /// The SCRAM credentials of `users` (every user when empty). A user without credentials is
    /// left out.
    pub async fn describe_user_scram_credentials(
        &mut self,
        users: &[&str],
    ) -> Result<Vec<(String, Vec<ScramCredentialInfo>)>> {
        let req = DescribeUserScramCredentialsRequest::default().with_users(if users.is_empty() {
            None
        } else {
            Some(
                users
                    .iter()
                    .map(|u| UserName::default().with_name(sb(u)))
                    .collect(),
            )
        });
        let resp = self.any.send(req).await?;
        check(
            "DescribeUserScramCredentials",
            "*",
            resp.error_code,
            resp.error_message.as_ref(),
        )?;
        let mut out = Vec::new();
        for r in resp.results {
            // RESOURCE_NOT_FOUND: the user has no credential.
            if r.error_code == 91 {
                continue;
            }
            check(
                "DescribeUserScramCredentials",
                &r.user,
                r.error_code,
                r.error_message.as_ref(),
            )?;
            out.push((
                r.user.to_string(),
                r.credential_infos
                    .iter()
                    .map(|c| ScramCredentialInfo {
                        mechanism: ScramMechanism::from_code(c.mechanism),
                        iterations: c.iterations,
                    })
                    .collect(),
            ));
        }
        Ok(out)
    }

    /// Sets `user`'s credential for `mechanism` to `password` (a fresh random salt; only the
    /// salted password is sent).
    pub async fn upsert_scram_credential(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<()> {
        let salt = random_salt()?;
        let salted = salted_password(mechanism, password, &salt, iterations);
        let up = ScramCredentialUpsertion::default()
            .with_name(sb(user))
            .with_mechanism(mechanism.code())
            .with_iterations(iterations as i32)
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted));
        self.alter_scram(user, vec![], vec![up]).await
    }

    /// Removes `user`'s credential for `mechanism`; Ok when it had none.
    pub async fn delete_scram_credential(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<()> {
        let del = ScramCredentialDeletion::default()
            .with_name(sb(user))
            .with_mechanism(mechanism.code());
        match self.alter_scram(user, vec![del], vec![]).await {
            // RESOURCE_NOT_FOUND: nothing to delete.
            Err(Error::Kafka {
                error: kafka_protocol::ResponseError::ResourceNotFound,
                ..
            }) => Ok(()),
            r => r,
        }
    }

    async fn alter_scram(
        &mut self,
        user: &str,
        deletions: Vec<ScramCredentialDeletion>,
        upsertions: Vec<ScramCredentialUpsertion>,
    ) -> Result<()> {
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(deletions)
            .with_upsertions(upsertions);
        let resp = self.controller().await?.send(req).await?;
        for r in resp.results {
            check(
                "AlterUserScramCredentials",
                user,
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Creates ACL bindings.
    pub async fn create_acls(&mut self, bindings: &[AclBinding]) -> Result<()> {
        if bindings.is_empty() {
            return Ok(());
        }
        let req = CreateAclsRequest::default().with_creations(
            bindings
                .iter()
                .map(|b| {
                    AclCreation::default()
                        .with_resource_type(b.resource_type)
                        .with_resource_name(sb(&b.resource_name))
                        .with_resource_pattern_type(b.pattern_type)
                        .with_principal(sb(&b.principal))
                        .with_host(sb(&b.host))
                        .with_operation(b.operation)
                        .with_permission_type(b.permission_type)
                })
                .collect(),
        );
        let resp = self.any.send(req).await?;
        for (r, b) in resp.results.iter().zip(bindings) {
            check(
                "CreateAcls",
                &format!("{}/{}", b.principal, b.resource_name),
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// The ACL bindings matching `filter`.
    pub async fn describe_acls(&mut self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type)
            .with_resource_name_filter(filter.resource_name.as_deref().map(sb))
            .with_pattern_type_filter(filter.pattern_type)
            .with_principal_filter(filter.principal.as_deref().map(sb))
            .with_host_filter(filter.host.as_deref().map(sb))
            .with_operation(filter.operation)
            .with_permission_type(filter.permission_type);
        let resp = self.any.send(req).await?;
        check(
            "DescribeAcls",
            filter.principal.as_deref().unwrap_or("*"),
            resp.error_code,
            resp.error_message.as_ref(),
        )?;
        let mut out = Vec::new();
        for r in resp.resources {
            for a in r.acls {
                out.push(AclBinding {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission_type: a.permission_type,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the bindings matching each filter; returns how many were deleted.
    pub async fn delete_acls(&mut self, filters: &[AclFilter]) -> Result<usize> {
        if filters.is_empty() {
            return Ok(0);
        }
        let req = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type)
                        .with_resource_name_filter(f.resource_name.as_deref().map(sb))
                        .with_pattern_type_filter(f.pattern_type)
                        .with_principal_filter(f.principal.as_deref().map(sb))
                        .with_host_filter(f.host.as_deref().map(sb))
                        .with_operation(f.operation)
                        .with_permission_type(f.permission_type)
                })
                .collect(),
        );
        let resp = self.any.send(req).await?;
        let mut n = 0;
        for r in resp.filter_results {
            check(
                "DeleteAcls",
                "filter",
                r.error_code,
                r.error_message.as_ref(),
            )?;
            n += r.matching_acls.len();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salted_password_is_pbkdf2_of_the_mechanism() {
        // The published PBKDF2-HMAC-SHA256 vector ("password", "salt", 4096 iterations, 32 bytes).
        let got = salted_password(ScramMechanism::Sha256, "password", b"salt", 4096);
        let want = "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a";
        let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
        assert_eq!(
            salted_password(ScramMechanism::Sha512, "password", b"salt", 4096).len(),
            64
        );
    }
}
