//! CreateAcls, DescribeAcls and DeleteAcls (versions 1–3). As in Kafka, they need an
//! authorizer (`SECURITY_DISABLED` without one); Describe needs Describe on the cluster, Create
//! and Delete need Alter on it. Filters have Kafka's semantics: ANY matches exact names of any
//! pattern type, MATCH every pattern that applies to the named resource, a null name, principal
//! or host anything.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::acls::AclStoreError;
use super::authorizer::{
    AccessControlEntry, AclBinding, AclFilter, Operation, PatternType, Permission, ResourcePattern,
    ResourceType,
};
use super::principal::KafkaPrincipal;
use super::{BrokerSecurity, Caller, CLUSTER_NAME};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Kafka's wire codes that are not one concrete value.
const UNKNOWN: i8 = 0;
const ANY: i8 = 1;
const MATCH: i8 = 2;
/// DELEGATION_TOKEN and USER: valid resource types this broker keeps no ACLs for.
const OTHER_RESOURCE_TYPES: [i8; 2] = [6, 7];

/// A wire ACL binding, checked as Kafka checks a creation.
pub fn binding_from_wire(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(resource_type).ok_or_else(|| {
        if OTHER_RESOURCE_TYPES.contains(&resource_type) {
            format!("ACLs on resource type {resource_type} are not supported")
        } else {
            format!("Invalid resource type {resource_type}")
        }
    })?;
    let pattern_type = match pattern_type {
        3 => PatternType::Literal,
        4 => PatternType::Prefixed,
        p => return Err(format!("Invalid pattern type {p}")),
    };
    let operation =
        Operation::from_code(operation).ok_or_else(|| format!("Invalid operation {operation}"))?;
    let permission = match permission {
        2 => Permission::Deny,
        3 => Permission::Allow,
        p => return Err(format!("Invalid permission type {p}")),
    };
    if name.is_empty() {
        return Err("Resource name should not be empty".into());
    }
    if name.contains('/') || name == "." || name == ".." {
        return Err(format!("Invalid resource name {name:?}"));
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    if KafkaPrincipal::parse(principal).is_none() {
        return Err(format!(
            "Invalid principal {principal:?}: expected Type:name"
        ));
    }
    if host.is_empty() {
        return Err("Host should not be empty".into());
    }
    Ok(AclBinding {
        pattern: ResourcePattern {
            resource_type,
            name: name.to_string(),
            pattern_type,
        },
        entry: AccessControlEntry {
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        },
    })
}

/// A wire filter. `Ok(None)`: a valid filter that matches nothing this broker stores
/// (a delegation-token or user resource, or a token operation).
pub fn filter_from_wire(
    resource_type: i8,
    name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<Option<AclFilter>, String> {
    let resource_type = match resource_type {
        ANY => None,
        t if OTHER_RESOURCE_TYPES.contains(&t) => return Ok(None),
        t => Some(ResourceType::from_code(t).ok_or_else(|| format!("Invalid resource type {t}"))?),
    };
    let pattern = match pattern_type {
        ANY => None,
        MATCH => Some(None),
        3 => Some(Some(PatternType::Literal)),
        4 => Some(Some(PatternType::Prefixed)),
        p => return Err(format!("Invalid pattern type {p}")),
    };
    let operation = match operation {
        ANY => None,
        o => Some(Operation::from_code(o).ok_or_else(|| format!("Invalid operation {o}"))?),
    };
    let permission = match permission {
        ANY => None,
        2 => Some(Permission::Deny),
        3 => Some(Permission::Allow),
        p => return Err(format!("Invalid permission type {p}")),
    };
    debug_assert_ne!(UNKNOWN, ANY);
    Ok(Some(AclFilter {
        resource_type,
        name: name.map(str::to_string),
        pattern,
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation,
        permission,
    }))
}

fn pattern_code(p: PatternType) -> i8 {
    p.code()
}

fn store_error(e: &AclStoreError) -> (i16, String) {
    match e {
        AclStoreError::Unavailable(m) => (ResponseError::CoordinatorNotAvailable.code(), m.clone()),
        AclStoreError::Storage(m) => (ResponseError::UnknownServerError.code(), m.clone()),
    }
}

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

pub async fn create(
    sec: &BrokerSecurity,
    caller: Caller<'_>,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let fail = |code: i16, msg: &str, n: usize| {
        CreateAclsResponse::default().with_results(
            (0..n)
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(s(msg)))
                })
                .collect(),
        )
    };
    let n = req.creations.len();
    if !sec.authorizer_enabled() {
        return fail(ResponseError::SecurityDisabled.code(), NO_AUTHORIZER, n);
    }
    if !sec.allows_cluster(caller, Operation::Alter) {
        return fail(
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.",
            n,
        );
    }
    let parsed: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c: &AclCreation| {
            binding_from_wire(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|r| r.clone().ok()).collect();
    let stored = sec.acls().create(&valid).await;
    let results = parsed
        .into_iter()
        .map(|r| match (r, &stored) {
            (Err(m), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(s(m))),
            (Ok(_), Err(e)) => {
                let (code, m) = store_error(e);
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(s(m)))
            }
            (Ok(b), Ok(())) => {
                tracing::info!(principal = %caller.principal, acl = ?b, "ACL created");
                AclCreationResult::default()
            }
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe(
    sec: &BrokerSecurity,
    caller: Caller<'_>,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let fail = |code: i16, msg: String| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(msg)))
    };
    if !sec.authorizer_enabled() {
        return fail(ResponseError::SecurityDisabled.code(), NO_AUTHORIZER.into());
    }
    if !sec.allows_cluster(caller, Operation::Describe) {
        return fail(
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.".into(),
        );
    }
    let filter = match filter_from_wire(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(Some(f)) => f,
        Ok(None) => return DescribeAclsResponse::default(),
        Err(m) => return fail(ResponseError::InvalidRequest.code(), m),
    };
    let acls = sec.acls().snapshot();
    let mut grouped: std::collections::BTreeMap<&ResourcePattern, Vec<&AccessControlEntry>> =
        Default::default();
    for b in acls.iter().filter(|b| filter.matches(b)) {
        grouped.entry(&b.pattern).or_default().push(&b.entry);
    }
    DescribeAclsResponse::default().with_resources(
        grouped
            .into_iter()
            .map(|(p, es)| {
                DescribeAclsResource::default()
                    .with_resource_type(p.resource_type.code())
                    .with_resource_name(s(p.name.clone()))
                    .with_pattern_type(pattern_code(p.pattern_type))
                    .with_acls(
                        es.into_iter()
                            .map(|e| {
                                AclDescription::default()
                                    .with_principal(s(e.principal.clone()))
                                    .with_host(s(e.host.clone()))
                                    .with_operation(e.operation.code())
                                    .with_permission_type(e.permission.code())
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub async fn delete(
    sec: &BrokerSecurity,
    caller: Caller<'_>,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let fail = |code: i16, msg: &str, n: usize| {
        DeleteAclsResponse::default().with_filter_results(
            (0..n)
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(s(msg)))
                })
                .collect(),
        )
    };
    let n = req.filters.len();
    if !sec.authorizer_enabled() {
        return fail(ResponseError::SecurityDisabled.code(), NO_AUTHORIZER, n);
    }
    if !sec.allows_cluster(caller, Operation::Alter) {
        return fail(
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.",
            n,
        );
    }
    let parsed: Vec<Result<Option<AclFilter>, String>> = req
        .filters
        .iter()
        .map(|f: &DeleteAclsFilter| {
            filter_from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let usable: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|r| r.clone().ok().flatten())
        .collect();
    let deleted = sec.acls().delete(&usable).await;
    let mut deleted_iter = match &deleted {
        Ok(d) => d.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = parsed
        .into_iter()
        .map(|r| match r {
            Err(m) => DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(s(m))),
            Ok(None) => DeleteAclsFilterResult::default(),
            Ok(Some(_)) => match &deleted {
                Err(e) => {
                    let (code, m) = store_error(e);
                    DeleteAclsFilterResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(s(m)))
                }
                Ok(_) => {
                    let gone = deleted_iter.next().unwrap_or_default();
                    for b in &gone {
                        tracing::info!(principal = %caller.principal, acl = ?b, "ACL deleted");
                    }
                    DeleteAclsFilterResult::default().with_matching_acls(
                        gone.into_iter()
                            .map(|b| {
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(b.pattern.resource_type.code())
                                    .with_resource_name(s(b.pattern.name))
                                    .with_pattern_type(pattern_code(b.pattern.pattern_type))
                                    .with_principal(s(b.entry.principal))
                                    .with_host(s(b.entry.host))
                                    .with_operation(b.entry.operation.code())
                                    .with_permission_type(b.entry.permission.code())
                            })
                            .collect(),
                    )
                }
            },
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn creations_are_checked_as_kafka_does() {
        let ok = binding_from_wire(2, "orders", 3, "User:alice", "*", 3, 3).unwrap();
        assert_eq!(ok.pattern.resource_type, ResourceType::Topic);
        assert_eq!(ok.entry.operation, Operation::Read);
        assert_eq!(ok.entry.permission, Permission::Allow);
        let bad: &[(i8, &str, i8, &str, &str, i8, i8)] = &[
            (1, "t", 3, "User:a", "*", 3, 3),     // ANY resource type
            (0, "t", 3, "User:a", "*", 3, 3),     // UNKNOWN
            (2, "t", 1, "User:a", "*", 3, 3),     // ANY pattern
            (2, "t", 2, "User:a", "*", 3, 3),     // MATCH pattern
            (2, "t", 3, "User:a", "*", 1, 3),     // ANY operation
            (2, "t", 3, "User:a", "*", 3, 1),     // ANY permission
            (2, "", 3, "User:a", "*", 3, 3),      // empty name
            (2, "t", 3, "alice", "*", 3, 3),      // principal without type
            (4, "other", 3, "User:a", "*", 7, 3), // cluster is kafka-cluster
            (6, "tok", 3, "User:a", "*", 8, 3),   // delegation tokens: not kept here
            (2, "a/b", 3, "User:a", "*", 3, 3),   // not a znode name
        ];
        for row in bad {
            assert!(
                binding_from_wire(row.0, row.1, row.2, row.3, row.4, row.5, row.6).is_err(),
                "{row:?}"
            );
        }
        assert!(binding_from_wire(4, "kafka-cluster", 3, "User:a", "*", 7, 3).is_ok());
    }

    #[test]
    fn filters_are_checked_as_kafka_does() {
        let any = filter_from_wire(1, None, 1, None, None, 1, 1)
            .unwrap()
            .unwrap();
        assert!(any.resource_type.is_none() && any.pattern.is_none());
        let m = filter_from_wire(2, Some("x"), 2, Some("User:a"), None, 3, 2)
            .unwrap()
            .unwrap();
        assert_eq!(m.pattern, Some(None));
        assert_eq!(m.permission, Some(Permission::Deny));
        assert!(filter_from_wire(0, None, 1, None, None, 1, 1).is_err());
        assert!(filter_from_wire(1, None, 0, None, None, 1, 1).is_err());
        assert!(filter_from_wire(1, None, 1, None, None, 0, 1).is_err());
        assert!(filter_from_wire(1, None, 1, None, None, 1, 0).is_err());
        assert!(filter_from_wire(7, None, 1, None, None, 1, 1)
            .unwrap()
            .is_none());
    }

    proptest! {
        /// Any wire values decode to a binding or an error, never a panic; a decoded binding
        /// re-encodes to the same codes.
        #[test]
        fn wire_decoding_is_total(
            rt in any::<i8>(), pt in any::<i8>(), op in any::<i8>(), perm in any::<i8>(),
            name in ".{0,12}", principal in ".{0,12}", host in ".{0,6}",
        ) {
            if let Ok(b) = binding_from_wire(rt, &name, pt, &principal, &host, op, perm) {
                prop_assert_eq!(b.pattern.resource_type.code(), rt);
                prop_assert_eq!(b.pattern.pattern_type.code(), pt);
                prop_assert_eq!(b.entry.operation.code(), op);
                prop_assert_eq!(b.entry.permission.code(), perm);
                // Every stored binding is found by the exact filter of itself.
                let f = filter_from_wire(rt, Some(&name), pt, Some(&principal), Some(&host), op, perm)
                    .unwrap().unwrap();
                prop_assert!(f.matches(&b));
            }
            let _ = filter_from_wire(rt, Some(&name), pt, Some(&principal), Some(&host), op, perm);
        }
    }
}
