//! KIP-554: DescribeUserScramCredentials and AlterUserScramCredentials. The client sends the
//! salted password (never the password); the broker stores salt, StoredKey, ServerKey and the
//! iteration count.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::credentials::{Alteration, CredentialError, CredentialStore};
use super::scram::{ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub fn describe(
    store: &CredentialStore,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let all = store.describe();
    let info = |creds: &Vec<(ScramMechanism, u32)>| {
        creds
            .iter()
            .map(|(m, i)| {
                CredentialInfo::default()
                    .with_mechanism(m.code())
                    .with_iterations(*i as i32)
            })
            .collect::<Vec<_>>()
    };
    let results = match req.users {
        None => all
            .iter()
            .map(|(u, c)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(s(u.clone()))
                    .with_credential_infos(info(c))
            })
            .collect(),
        Some(users) if users.is_empty() => all
            .iter()
            .map(|(u, c)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(s(u.clone()))
                    .with_credential_infos(info(c))
            })
            .collect(),
        Some(users) => {
            let mut seen = BTreeMap::<String, usize>::new();
            for u in &users {
                *seen.entry(u.name.to_string()).or_default() += 1;
            }
            seen.into_iter()
                .map(|(u, n)| {
                    let r = DescribeUserScramCredentialsResult::default().with_user(s(u.clone()));
                    if n > 1 {
                        return r
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(s("Cannot describe SCRAM credentials for the same user twice in a single request")));
                    }
                    match all.get(&u) {
                        Some(c) => r.with_credential_infos(info(c)),
                        None => r
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(s(format!(
                                "Attempt to describe a user credential that does not exist: {u}"
                            )))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// Validates each user's changes; users with an invalid change are refused whole, the others
/// are applied.
pub async fn alter(
    store: &CredentialStore,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut changes: BTreeMap<String, Vec<Alteration>> = BTreeMap::new();
    let mut users: BTreeSet<String> = BTreeSet::new();
    let refuse = |errors: &mut BTreeMap<String, (ResponseError, String)>, u: &str, e, m: String| {
        errors.entry(u.to_string()).or_insert((e, m));
    };
    let existing = store.describe();
    for d in &req.deletions {
        let u = d.name.to_string();
        users.insert(u.clone());
        if u.is_empty() {
            refuse(
                &mut errors,
                &u,
                ResponseError::UnacceptableCredential,
                "Username must not be empty".into(),
            );
            continue;
        }
        if !seen.insert((u.clone(), d.mechanism)) {
            refuse(
                &mut errors,
                &u,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            );
            continue;
        }
        let Some(m) = ScramMechanism::from_code(d.mechanism) else {
            refuse(
                &mut errors,
                &u,
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism".into(),
            );
            continue;
        };
        if !existing
            .get(&u)
            .is_some_and(|c| c.iter().any(|(x, _)| *x == m))
        {
            refuse(
                &mut errors,
                &u,
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist".into(),
            );
            continue;
        }
        changes
            .entry(u.clone())
            .or_default()
            .push(Alteration::Delete(u, m));
    }
    for up in &req.upsertions {
        let u = up.name.to_string();
        users.insert(u.clone());
        if u.is_empty() {
            refuse(
                &mut errors,
                &u,
                ResponseError::UnacceptableCredential,
                "Username must not be empty".into(),
            );
            continue;
        }
        if !seen.insert((u.clone(), up.mechanism)) {
            refuse(
                &mut errors,
                &u,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            );
            continue;
        }
        let Some(m) = ScramMechanism::from_code(up.mechanism) else {
            refuse(
                &mut errors,
                &u,
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism".into(),
            );
            continue;
        };
        let iters = up.iterations;
        if iters < MIN_ITERATIONS as i32 || iters > MAX_ITERATIONS as i32 {
            refuse(
                &mut errors,
                &u,
                ResponseError::UnacceptableCredential,
                format!("Iterations {iters} must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"),
            );
            continue;
        }
        if up.salt.is_empty() || up.salted_password.is_empty() {
            refuse(
                &mut errors,
                &u,
                ResponseError::UnacceptableCredential,
                "Salt and salted password must not be empty".into(),
            );
            continue;
        }
        let cred = m.credential_from_salted(&up.salted_password, &up.salt, iters as u32);
        changes
            .entry(u.clone())
            .or_default()
            .push(Alteration::Upsert(u, m, cred));
    }
    let mut results = Vec::new();
    for u in users {
        let r = AlterUserScramCredentialsResult::default().with_user(s(u.clone()));
        if let Some((e, msg)) = errors.get(&u) {
            results.push(
                r.with_error_code(e.code())
                    .with_error_message(Some(s(msg.clone()))),
            );
            continue;
        }
        let ch = changes.remove(&u).unwrap_or_default();
        match store.alter(ch).await {
            Ok(()) => {
                tracing::info!(user = %u, "SCRAM credentials altered");
                results.push(r)
            }
            Err(e) => {
                let code = match e {
                    CredentialError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
                    CredentialError::Storage(_) => ResponseError::UnknownServerError,
                };
                tracing::warn!(user = %u, error = %e, "altering SCRAM credentials failed");
                results.push(
                    r.with_error_code(code.code())
                        .with_error_message(Some(s(e.to_string()))),
                );
            }
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
