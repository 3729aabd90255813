//! The KafkaUser controller: the user's credential and ACLs, all through the Kafka admin
//! protocol on the cluster's admin address (its internal replication listener).
//!
//! - `scram-sha-512`: the password (generated, or from the referenced Secret) is kept in the
//!   Secret `<user>` (`username`, `password`) and set in the cluster with
//!   AlterUserScramCredentials (salted client-side); it is set again when the password changes
//!   (a fingerprint annotation on the Secret remembers which one was applied) or when the
//!   cluster lost it.
//! - `tls`: a client certificate `CN=<user>` signed by the cluster CA in the Secret `<user>`
//!   (`user.crt`, `user.key`, `ca.crt`), issued again at 2/3 of its validity or when the CA
//!   changes.
//! - ACLs: the principal's bindings are made equal to the spec (CreateAcls / DeleteAcls).
//! - Deletion (finalizer): the SCRAM credential and every ACL of the principal are removed;
//!   the Secret goes with its owner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use rivulet_admin_client::{AclFilter, AdminClient, ScramMechanism, SCRAM_MIN_ITERATIONS};
use serde_json::json;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::conditions::set_condition;
use crate::context::{Ctx, FIELD_MANAGER};
use crate::crd::{KafkaCluster, KafkaUser, KafkaUserStatus, UserAuthenticationType};
use crate::patches::{add_finalizer, patch_status, remove_finalizer};
use crate::security::cluster_certs::{read_ca, secret_object, secret_text};
use crate::security::{certs, users};

pub const CONTROLLER: &str = "kafkauser";
pub const FINALIZER: &str = "rivulet.dev/user-cleanup";
/// (API group, resource) the KafkaUser controller lists and watches.
pub const WATCHED: &[(&str, &str)] = &[("rivulet.dev", "kafkausers")];
/// How often a settled user is compared with the cluster (ACL drift is reverted then).
pub const RESYNC: Duration = Duration::from_secs(120);
/// Wait while the cluster, its CA or a referenced Secret isn't there yet.
pub const WAIT: Duration = Duration::from_secs(15);
/// Admin request timeout.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Annotation on the user's Secret: fingerprint of the password last set in the cluster.
pub const APPLIED_PASSWORD: &str = "rivulet.dev/applied-password";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kafka admin: {0}")]
    Admin(#[from] rivulet_admin_client::Error),
    #[error("certificates: {0}")]
    Certs(#[from] certs::Error),
    #[error("randomness: {0}")]
    Random(String),
    #[error("object has no namespace")]
    NoNamespace,
}

fn key(ku: &KafkaUser) -> String {
    format!(
        "user/{}/{}",
        ku.namespace().unwrap_or_default(),
        ku.name_any()
    )
}

pub async fn reconcile(ku: Arc<KafkaUser>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let res = reconcile_inner(&ku, &ctx).await;
    ctx.metrics
        .observe(CONTROLLER, start.elapsed().as_secs_f64(), res.is_err());
    match &res {
        Ok(_) => ctx.succeeded(&key(&ku)),
        Err(e) => {
            warn!(user = %key(&ku), error = %e, "reconcile failed");
            ctx.event(&*ku, true, "ReconcileError", "Reconcile", e.to_string())
                .await;
            let mut status = ku.status.clone().unwrap_or_default();
            let g = ku.metadata.generation;
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                "Error",
                &e.to_string(),
                g,
            );
            let _ = write_status(&ctx, &ku, status).await;
        }
    }
    res
}

pub fn error_policy(ku: Arc<KafkaUser>, _e: &Error, ctx: Arc<Ctx>) -> Action {
    Action::requeue(ctx.backoff(&key(&ku)))
}

async fn write_status(ctx: &Ctx, ku: &KafkaUser, status: KafkaUserStatus) -> Result<(), Error> {
    if ku.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let ns = ku.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<KafkaUser> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(patch_status(&api, ku, ku.status.as_ref(), &status).await?)
}

/// The address the operator reaches the cluster's admin protocol on.
fn admin_address(kc: &KafkaCluster) -> Option<String> {
    let s = kc.status.as_ref()?;
    s.admin_address
        .clone()
        .or_else(|| s.bootstrap_address.clone())
}

/// Sets Ready=False with `reason` and requeues after [`WAIT`].
async fn not_ready(
    ctx: &Ctx,
    ku: &KafkaUser,
    mut status: KafkaUserStatus,
    reason: &str,
    msg: String,
) -> Result<Action, Error> {
    let g = ku.metadata.generation;
    let newly = !crate::conditions::get(&status.conditions, "Ready")
        .is_some_and(|c| c.reason == reason && c.message == msg);
    set_condition(&mut status.conditions, "Ready", false, reason, &msg, g);
    status.observed_generation = g;
    write_status(ctx, ku, status).await?;
    if newly {
        ctx.event(ku, true, reason, "Reconcile", msg).await;
    }
    Ok(Action::requeue(WAIT))
}

async fn cleanup(
    ku: &KafkaUser,
    ctx: &Ctx,
    ns: &str,
    api: &Api<KafkaUser>,
) -> Result<Action, Error> {
    if !ku.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ku.name_any();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), ns);
    match clusters.get_opt(&ku.spec.cluster_ref.name).await? {
        // No cluster: nothing holds the credential any more.
        None => {}
        // Never touch the brokers' and the operator's own credentials (such a user was refused).
        Some(_) if crate::security::internal::reserved_user(&name) => {}
        Some(kc) => {
            let Some(addr) = admin_address(&kc) else {
                warn!(user = %name, "cluster has no admin address yet; retrying the cleanup later");
                return Ok(Action::requeue(WAIT));
            };
            let mut admin =
                crate::security::admin::connect(&ctx.client, &kc, &addr, ADMIN_TIMEOUT).await?;
            if ku.spec.authentication.type_ == UserAuthenticationType::ScramSha512 {
                admin
                    .delete_scram_credential(&name, ScramMechanism::Sha512)
                    .await?;
            }
            let n = if kc.spec.authorization.is_some() {
                admin
                    .delete_acls(&[AclFilter::principal(&ku.principal())])
                    .await?
            } else {
                0
            };
            info!(user = %name, acls = n, "removed the user's credential and ACLs");
            ctx.event(
                ku,
                false,
                "Deleted",
                "Delete",
                format!(
                    "removed the credential and {n} ACL(s) of {}",
                    ku.principal()
                ),
            )
            .await;
        }
    }
    remove_finalizer(api, ku, FINALIZER).await?;
    Ok(Action::await_change())
}

fn user_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "rivulet".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "rivulet-operator".into(),
        ),
        ("rivulet.dev/cluster".into(), cluster.into()),
    ])
}

async fn reconcile_inner(ku: &KafkaUser, ctx: &Ctx) -> Result<Action, Error> {
    let ns = ku.namespace().ok_or(Error::NoNamespace)?;
    let name = ku.name_any();
    let api: Api<KafkaUser> = Api::namespaced(ctx.client.clone(), &ns);
    if ku.meta().deletion_timestamp.is_some() {
        return cleanup(ku, ctx, &ns, &api).await;
    }
    add_finalizer(&api, ku, FINALIZER).await?;
    let g = ku.metadata.generation;
    let mut status = ku.status.clone().unwrap_or_default();
    let principal = ku.principal();

    let mut problems = users::validate(&ku.spec);
    if crate::security::internal::reserved_user(&name) {
        problems.push(format!(
            "the user name {name} is reserved for the cluster's internal users"
        ));
    }
    if !problems.is_empty() {
        return not_ready(ctx, ku, status, "InvalidSpec", problems.join("; ")).await;
    }
    let cluster = &ku.spec.cluster_ref.name;
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(kc) = clusters.get_opt(cluster).await? else {
        return not_ready(
            ctx,
            ku,
            status,
            "ClusterNotFound",
            format!("KafkaCluster {cluster} does not exist"),
        )
        .await;
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let live = secrets.get_opt(&name).await?;
    let mut admin: Option<AdminClient> = None;
    let mut changes = Vec::new();

    match ku.spec.authentication.type_ {
        UserAuthenticationType::ScramSha512 => {
            let Some(addr) = admin_address(&kc) else {
                return not_ready(
                    ctx,
                    ku,
                    status,
                    "ClusterNotReady",
                    format!("KafkaCluster {cluster} has no admin address yet"),
                )
                .await;
            };
            // The password: referenced, kept from an earlier reconcile, or new.
            let (password, own_secret) = match &ku.spec.authentication.password {
                Some(src) => {
                    let s = secrets.get_opt(&src.value_from.name).await?;
                    match s.as_ref().and_then(|s| secret_text(s, &src.value_from.key)) {
                        Some(p) if !p.is_empty() => (p, src.value_from.name != name),
                        _ => {
                            return not_ready(
                                ctx,
                                ku,
                                status,
                                "PasswordSecretMissing",
                                format!(
                                    "Secret {} has no key {}",
                                    src.value_from.name, src.value_from.key
                                ),
                            )
                            .await
                        }
                    }
                }
                None => match live.as_ref().and_then(|s| secret_text(s, "password")) {
                    Some(p) if !p.is_empty() => (p, true),
                    _ => (
                        users::generate_password().map_err(|e| Error::Random(e.to_string()))?,
                        true,
                    ),
                },
            };
            let fingerprint = users::password_fingerprint(&name, &password);
            let applied_fp = live
                .as_ref()
                .and_then(|s| s.annotations().get(APPLIED_PASSWORD).cloned());
            let data = BTreeMap::from([("username", name.clone()), ("password", password.clone())]);
            let secret = |applied: Option<&str>| {
                let mut v = secret_object(ku, &name, &ns, user_labels(cluster), &data);
                if let Some(a) = applied {
                    v["metadata"]["annotations"] = json!({APPLIED_PASSWORD: a});
                }
                v
            };
            let data_same = live.as_ref().is_some_and(|s| {
                secret_text(s, "password").as_deref() == Some(password.as_str())
                    && secret_text(s, "username").as_deref() == Some(name.as_str())
            });
            if own_secret && !data_same {
                // Keep the password before setting it anywhere.
                let keep = applied_fp.as_deref().filter(|a| *a == fingerprint);
                secrets
                    .patch(&name, &pp, &Patch::Apply(secret(keep)))
                    .await?;
            }
            let mut a =
                crate::security::admin::connect(&ctx.client, &kc, &addr, ADMIN_TIMEOUT).await?;
            let present = a
                .describe_user_scram_credentials(&[&name])
                .await?
                .iter()
                .any(|(u, creds)| {
                    u == &name
                        && creds
                            .iter()
                            .any(|c| c.mechanism == Some(ScramMechanism::Sha512))
                });
            if !present || applied_fp.as_deref() != Some(fingerprint.as_str()) {
                a.upsert_scram_credential(
                    &name,
                    ScramMechanism::Sha512,
                    &password,
                    SCRAM_MIN_ITERATIONS,
                )
                .await?;
                if own_secret {
                    secrets
                        .patch(&name, &pp, &Patch::Apply(secret(Some(&fingerprint))))
                        .await?;
                }
                changes.push(format!("set the SCRAM-SHA-512 credential of {name}"));
            }
            admin = Some(a);
        }
        UserAuthenticationType::Tls => {
            let Some((ca, bundle)) = read_ca(&secrets, cluster).await? else {
                return not_ready(
                    ctx,
                    ku,
                    status,
                    "NoClusterCa",
                    format!(
                        "KafkaCluster {cluster} has no cluster CA (it needs a listener with tls: true)"
                    ),
                )
                .await;
            };
            let crt = live.as_ref().and_then(|s| secret_text(s, "user.crt"));
            let now = OffsetDateTime::now_utc();
            let why = certs::check_leaf(crt.as_deref(), &ca.cert_pem, &name, &BTreeSet::new(), now);
            let bundle_same = live
                .as_ref()
                .and_then(|s| secret_text(s, "ca.crt"))
                .as_deref()
                == Some(bundle.as_str());
            if why.is_some() || !bundle_same {
                let (crt, key) = match &why {
                    Some(_) => {
                        let leaf = certs::issue(cluster, &ca, &name, &[], false, now)?;
                        (leaf.cert_pem, leaf.key_pem)
                    }
                    None => (
                        crt.unwrap_or_default(),
                        live.as_ref()
                            .and_then(|s| secret_text(s, "user.key"))
                            .unwrap_or_default(),
                    ),
                };
                let data =
                    BTreeMap::from([("user.crt", crt), ("user.key", key), ("ca.crt", bundle)]);
                secrets
                    .patch(
                        &name,
                        &pp,
                        &Patch::Apply(secret_object(ku, &name, &ns, user_labels(cluster), &data)),
                    )
                    .await?;
                changes.push(match why {
                    Some(r) => format!("issued the client certificate of {name} ({r})"),
                    None => format!("updated the CA bundle of {name}"),
                });
            }
        }
    }

    // ACLs.
    let desired = users::desired_bindings(&ku.spec, &principal);
    let mut acl_count = 0;
    if kc.spec.authorization.is_none() {
        if !desired.is_empty() {
            return not_ready(
                ctx,
                ku,
                status,
                "AuthorizationDisabled",
                format!(
                    "KafkaCluster {cluster} has no spec.authorization: its brokers don't enforce ACLs, so none were set"
                ),
            )
            .await;
        }
    } else {
        let mut a = match admin.take() {
            Some(a) => a,
            None => {
                let Some(addr) = admin_address(&kc) else {
                    return not_ready(
                        ctx,
                        ku,
                        status,
                        "ClusterNotReady",
                        format!("KafkaCluster {cluster} has no admin address yet"),
                    )
                    .await;
                };
                crate::security::admin::connect(&ctx.client, &kc, &addr, ADMIN_TIMEOUT).await?
            }
        };
        let current = a.describe_acls(&AclFilter::principal(&principal)).await?;
        let (create, delete) = users::acl_diff(&desired, &current);
        if !delete.is_empty() {
            let filters: Vec<AclFilter> = delete.iter().map(AclFilter::exact).collect();
            a.delete_acls(&filters).await?;
            changes.push(format!("deleted {} ACL(s) of {principal}", delete.len()));
        }
        if !create.is_empty() {
            a.create_acls(&create).await?;
            changes.push(format!("created {} ACL(s) of {principal}", create.len()));
        }
        acl_count = desired.len() as i32;
    }

    for c in &changes {
        info!(user = %name, "{c}");
        ctx.event(ku, false, "Applied", "Apply", c.clone()).await;
    }
    set_condition(
        &mut status.conditions,
        "Ready",
        true,
        "Ready",
        "credential and ACLs match the resource",
        g,
    );
    status.observed_generation = g;
    status.username = Some(name.clone());
    status.principal = Some(principal);
    status.secret = Some(match &ku.spec.authentication.password {
        Some(src) if src.value_from.name == name => src.value_from.name.clone(),
        _ => name.clone(),
    });
    status.acls = kc.spec.authorization.is_some().then_some(acl_count);
    write_status(ctx, ku, status).await?;
    Ok(Action::requeue(RESYNC))
}
