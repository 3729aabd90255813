//! SCRAM credentials: an in-memory map every login reads, kept in step with where they are
//! stored. Cluster mode keeps them where Kafka's ZooKeeper mode does — `/config/users/<user>`
//! holding `{"version":1,"config":{"SCRAM-SHA-512":"salt=...,stored_key=...,..."}}` — and
//! announces each change with a sequential `/config/changes/config_change_` znode
//! (`{"version":2,"entity_path":"users/<user>"}`); every broker watches that directory and
//! re-reads the users. Standalone mode keeps the same map in a file of its data directory.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use zookeeper_client as zk;

use super::scram::{ScramCredential, ScramMechanism};

pub const USERS_PATH: &str = "/config/users";
pub const CHANGES_PATH: &str = "/config/changes";
pub const CHANGE_PREFIX: &str = "config_change_";
/// Standalone mode's file, in the data directory.
pub const LOCAL_FILE: &str = "scram-credentials.json";

type Users = HashMap<String, BTreeMap<ScramMechanism, ScramCredential>>;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credential storage failed: {0}")]
    Storage(String),
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
}

enum Backend {
    /// Tests of the exchange only.
    Memory,
    Local(PathBuf),
    Zk(watch::Receiver<Option<zk::Client>>),
}

pub struct CredentialStore {
    users: RwLock<Users>,
    backend: Backend,
    /// Bumped on every reload, so tests and metrics can see a change arrive.
    version: watch::Sender<u64>,
}

/// One change of KIP-554's AlterUserScramCredentials.
#[derive(Debug, Clone)]
pub enum Alteration {
    Upsert(String, ScramMechanism, ScramCredential),
    Delete(String, ScramMechanism),
}

impl CredentialStore {
    pub fn in_memory() -> Self {
        Self::with(Backend::Memory, Users::new())
    }

    fn with(backend: Backend, users: Users) -> Self {
        Self {
            users: RwLock::new(users),
            backend,
            version: watch::channel(0).0,
        }
    }

    /// Standalone: loads `<data_dir>/scram-credentials.json` (absent: no users).
    pub fn open_local(data_dir: &std::path::Path) -> Result<Self, CredentialError> {
        let path = data_dir.join(LOCAL_FILE);
        let users = match std::fs::read(&path) {
            Ok(bytes) => {
                let raw: BTreeMap<String, BTreeMap<String, String>> =
                    serde_json::from_slice(&bytes).map_err(|e| {
                        CredentialError::Storage(format!("{}: {e}", path.display()))
                    })?;
                raw.into_iter()
                    .map(|(u, c)| (u, parse_user_config(&c)))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Users::new(),
            Err(e) => return Err(CredentialError::Storage(format!("{}: {e}", path.display()))),
        };
        Ok(Self::with(Backend::Local(path), users))
    }

    /// Cluster mode: writes go through the current coordinator session; [`watch_changes`]
    /// keeps the map current.
    pub fn zookeeper(sessions: watch::Receiver<Option<zk::Client>>) -> Self {
        Self::with(Backend::Zk(sessions), Users::new())
    }

    pub fn get(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
        read(&self.users).get(user).and_then(|c| c.get(&m)).cloned()
    }

    /// (user, mechanism, iterations) of every credential, for DescribeUserScramCredentials.
    pub fn describe(&self) -> BTreeMap<String, Vec<(ScramMechanism, u32)>> {
        read(&self.users)
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(u, c)| {
                (
                    u.clone(),
                    c.iter().map(|(m, c)| (*m, c.iterations)).collect(),
                )
            })
            .collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Test and in-memory use: sets a credential without persisting it.
    pub fn put_local(&self, user: &str, m: ScramMechanism, c: ScramCredential) {
        write(&self.users)
            .entry(user.to_string())
            .or_default()
            .insert(m, c);
        self.version.send_modify(|v| *v += 1);
    }

    fn replace(&self, users: Users) {
        *write(&self.users) = users;
        self.version.send_modify(|v| *v += 1);
    }

    /// Applies alterations of one user set atomically per user, then persists them.
    pub async fn alter(&self, changes: Vec<Alteration>) -> Result<(), CredentialError> {
        let mut touched: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>> =
            BTreeMap::new();
        {
            let users = read(&self.users);
            for ch in &changes {
                let user = match ch {
                    Alteration::Upsert(u, ..) | Alteration::Delete(u, _) => u,
                };
                touched
                    .entry(user.clone())
                    .or_insert_with(|| users.get(user).cloned().unwrap_or_default());
            }
        }
        for ch in changes {
            match ch {
                Alteration::Upsert(u, m, c) => {
                    touched.entry(u).or_default().insert(m, c);
                }
                Alteration::Delete(u, m) => {
                    touched.entry(u).or_default().remove(&m);
                }
            }
        }
        match &self.backend {
            Backend::Memory => {}
            Backend::Local(path) => {
                let mut all = read(&self.users).clone();
                for (u, c) in &touched {
                    all.insert(u.clone(), c.clone());
                }
                let raw: BTreeMap<&String, BTreeMap<String, String>> = all
                    .iter()
                    .filter(|(_, c)| !c.is_empty())
                    .map(|(u, c)| (u, user_config(c)))
                    .collect();
                let bytes = serde_json::to_vec_pretty(&raw)
                    .map_err(|e| CredentialError::Storage(e.to_string()))?;
                write_atomically(path, &bytes)
                    .map_err(|e| CredentialError::Storage(format!("{}: {e}", path.display())))?;
            }
            Backend::Zk(sessions) => {
                let client = sessions
                    .borrow()
                    .clone()
                    .ok_or_else(|| CredentialError::Unavailable("no coordinator session".into()))?;
                for (u, c) in &touched {
                    zk_write_user(&client, u, c).await?;
                }
            }
        }
        let mut users = write(&self.users);
        for (u, c) in touched {
            if c.is_empty() {
                users.remove(&u);
            } else {
                users.insert(u, c);
            }
        }
        drop(users);
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }
}

impl CredentialStore {
    /// Creates SCRAM-SHA-256 and SCRAM-SHA-512 credentials for `user` (4096 iterations, fresh
    /// salts) where it has none yet; an existing credential is kept. Returns whether anything
    /// was written. Cluster mode reads the coordinator first, so a user another broker created
    /// is not overwritten.
    pub async fn create_if_absent(
        &self,
        user: &str,
        password: &str,
    ) -> Result<bool, CredentialError> {
        let existing: BTreeMap<ScramMechanism, ScramCredential> = match &self.backend {
            Backend::Zk(sessions) => {
                let client = sessions
                    .borrow()
                    .clone()
                    .ok_or_else(|| CredentialError::Unavailable("no coordinator session".into()))?;
                match client.get_data(&format!("{USERS_PATH}/{user}")).await {
                    Ok((data, _)) => parse_user_config(
                        &serde_json::from_slice::<ConfigZnode>(&data)
                            .unwrap_or_default()
                            .config,
                    ),
                    Err(zk::Error::NoNode) => BTreeMap::new(),
                    Err(e) => return Err(zk_err("reading a user's config", e)),
                }
            }
            _ => read(&self.users).get(user).cloned().unwrap_or_default(),
        };
        let missing: Vec<Alteration> = [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .filter(|m| !existing.contains_key(m))
            .map(|m| {
                let salt = super::scram::random_bytes(32);
                Alteration::Upsert(
                    user.to_string(),
                    m,
                    m.credential(password.as_bytes(), &salt, 4096),
                )
            })
            .collect();
        if missing.is_empty() {
            return Ok(false);
        }
        if let Backend::Zk(_) = &self.backend {
            // `alter` merges into what this broker has loaded; start from the coordinator's.
            write(&self.users).insert(user.to_string(), existing);
        }
        self.alter(missing).await?;
        Ok(true)
    }
}

fn read(l: &RwLock<Users>) -> std::sync::RwLockReadGuard<'_, Users> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write(l: &RwLock<Users>) -> std::sync::RwLockWriteGuard<'_, Users> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn user_config(c: &BTreeMap<ScramMechanism, ScramCredential>) -> BTreeMap<String, String> {
    c.iter()
        .map(|(m, c)| (m.name().to_string(), c.to_kafka_string()))
        .collect()
}

/// The SCRAM entries of a user's config (other keys, e.g. quotas, are not ours).
fn parse_user_config(c: &BTreeMap<String, String>) -> BTreeMap<ScramMechanism, ScramCredential> {
    c.iter()
        .filter_map(|(k, v)| {
            let m = ScramMechanism::from_name(k)?;
            match ScramCredential::from_kafka_string(v) {
                Ok(c) => Some((m, c)),
                Err(e) => {
                    tracing::warn!(mechanism = k.as_str(), error = %e, "ignoring an unreadable SCRAM credential");
                    None
                }
            }
        })
        .collect()
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct ConfigZnode {
    version: i32,
    config: BTreeMap<String, String>,
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(crate::cluster::zk_acl::sensitive_acls())
}

fn zk_err(ctx: &str, e: zk::Error) -> CredentialError {
    match e {
        zk::Error::ConnectionLoss | zk::Error::SessionExpired | zk::Error::ClientClosed => {
            CredentialError::Unavailable(format!("{ctx}: {e}"))
        }
        e => CredentialError::Storage(format!("{ctx}: {e}")),
    }
}

/// Writes `/config/users/<user>` keeping its non-SCRAM keys, then the change notification.
async fn zk_write_user(
    client: &zk::Client,
    user: &str,
    creds: &BTreeMap<ScramMechanism, ScramCredential>,
) -> Result<(), CredentialError> {
    let path = format!("{USERS_PATH}/{user}");
    for _ in 0..10 {
        let (mut znode, version) = match client.get_data(&path).await {
            Ok((data, stat)) => (
                serde_json::from_slice::<ConfigZnode>(&data).unwrap_or_default(),
                Some(stat.version),
            ),
            Err(zk::Error::NoNode) => (ConfigZnode::default(), None),
            Err(e) => return Err(zk_err("reading a user's config", e)),
        };
        znode.version = 1;
        znode
            .config
            .retain(|k, _| ScramMechanism::from_name(k).is_none());
        znode.config.extend(user_config(creds));
        let data =
            serde_json::to_vec(&znode).map_err(|e| CredentialError::Storage(e.to_string()))?;
        let written = match version {
            Some(v) => client.set_data(&path, &data, Some(v)).await.map(|_| ()),
            None => {
                client
                    .mkdir(USERS_PATH, &persistent())
                    .await
                    .or_else(|e| {
                        if e == zk::Error::NodeExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| zk_err("creating /config/users", e))?;
                client.create(&path, &data, &persistent()).await.map(|_| ())
            }
        };
        match written {
            Ok(()) => return notify_change(client, &format!("users/{user}")).await,
            Err(zk::Error::BadVersion) | Err(zk::Error::NodeExists) | Err(zk::Error::NoNode) => {
                continue
            }
            Err(e) => return Err(zk_err("writing a user's config", e)),
        }
    }
    Err(CredentialError::Unavailable(
        "writing a user's config: too much contention".into(),
    ))
}

/// Kafka's change notification: a persistent sequential znode naming the entity.
pub async fn notify_change(client: &zk::Client, entity_path: &str) -> Result<(), CredentialError> {
    client
        .mkdir(CHANGES_PATH, &persistent())
        .await
        .or_else(|e| {
            if e == zk::Error::NodeExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| zk_err("creating /config/changes", e))?;
    let body = serde_json::json!({"version": 2, "entity_path": entity_path}).to_string();
    client
        .create(
            &format!("{CHANGES_PATH}/{CHANGE_PREFIX}"),
            body.as_bytes(),
            &zk::CreateMode::PersistentSequential
                .with_acls(crate::cluster::zk_acl::sensitive_acls()),
        )
        .await
        .map_err(|e| zk_err("writing a config change notification", e))?;
    Ok(())
}

async fn zk_read_users(client: &zk::Client) -> Result<Users, zk::Error> {
    let names = match client.list_children(USERS_PATH).await {
        Ok(n) => n,
        Err(zk::Error::NoNode) => return Ok(Users::new()),
        Err(e) => return Err(e),
    };
    let mut users = Users::new();
    for n in names {
        match client.get_data(&format!("{USERS_PATH}/{n}")).await {
            Ok((data, _)) => {
                let z: ConfigZnode = serde_json::from_slice(&data).unwrap_or_default();
                let c = parse_user_config(&z.config);
                if !c.is_empty() {
                    users.insert(n, c);
                }
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(users)
}

/// Runs for one coordinator session: reads every user, then again after each change
/// notification, until `stop` fires or the session fails.
pub async fn watch_changes(
    store: Arc<CredentialStore>,
    client: zk::Client,
    stop: watch::Receiver<bool>,
) {
    super::zk_sync::reload_on_change(
        &client,
        "SCRAM credentials",
        &[CHANGES_PATH],
        &persistent(),
        zk_read_users,
        |users| store.replace(users),
        stop,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_persists_in_kafka_form_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let s = CredentialStore::open_local(dir.path()).unwrap();
        let c = ScramMechanism::Sha512.credential(b"pw", b"salt", 4096);
        s.alter(vec![Alteration::Upsert(
            "alice".into(),
            ScramMechanism::Sha512,
            c.clone(),
        )])
        .await
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCAL_FILE)).unwrap();
        assert!(
            text.contains("\"SCRAM-SHA-512\": \"salt=c2FsdA==,stored_key="),
            "{text}"
        );
        assert!(!text.contains("pw\""));
        let again = CredentialStore::open_local(dir.path()).unwrap();
        assert_eq!(again.get("alice", ScramMechanism::Sha512), Some(c));
        again
            .alter(vec![Alteration::Delete(
                "alice".into(),
                ScramMechanism::Sha512,
            )])
            .await
            .unwrap();
        assert!(CredentialStore::open_local(dir.path())
            .unwrap()
            .describe()
            .is_empty());
    }
}
