//! [`MetadataStore`] on the coordinator (ZooKeeper protocol), Kafka ZooKeeper-mode style.
//!
//! At start-up the broker connects ([`ZkMetadataStore::open`]), creates the persistent parents
//! (and the chroot), creates or reads `/cluster/id`, sets one persistent recursive watch on the
//! root and reads the whole tree into a [`Tree`]. Only once it has recovered its logs and bound
//! its listener does it register as the ephemeral `/brokers/ids/<id>`
//! ([`ZkMetadataStore::register`]), as Kafka does: the controller may make a registered broker
//! leader at once, so it must be able to serve by then. A background task re-reads whatever a
//! watch event names (everything after a reconnect, since events during a disconnection can be
//! lost) and publishes a new [`ClusterView`] after every change.
//!
//! Sessions: when the session expires the task opens a new one and registers again, as Kafka
//! does; [`ZkMetadataStore::sessions`] hands each registered session's client to the controller,
//! so that losing the session also loses controllership. [`MetadataStore::is_fenced`] is true while
//! the broker is not registered, and once it has been cut off for 4/5 of the session timeout
//! (the client notices a silent connection after 2/5 of it; fencing follows 2/5 later): by the
//! time the coordinator expires the session and the controller moves leadership, this broker
//! has already stopped leading. After such a cut it stays fenced until it has read the tree
//! again (its view may be stale). A broker whose whole process stalled for half the session
//! timeout (a stop signal, a frozen VM) is fenced the moment it runs again, since its session
//! may have expired unheard, and stays so until the coordinator has answered a full re-read.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;
use zookeeper_client as zk;

use super::store::addr::CoordinatorAddr;
use super::store::tree::{classify, Key, Tree};
use super::zk_layout::{
    self as layout, BrokerZnode, ClusterIdZnode, ConfigZnode, PartitionStateZnode,
    ProducerIdBlockZnode, ReassignmentEntry, ReassignmentZnode, TopicZnode,
};
use crate::metadata::{
    BrokerMeta, ClusterView, MetadataError, MetadataStore, NewTopic, PartitionMeta, TopicMeta,
};

/// How long topic creation/deletion/growth waits for the controller to act, by default.
const CONTROLLER_WAIT: Duration = Duration::from_secs(30);
/// How long a committed write waits to show in this broker's own view before returning anyway.
const VIEW_CATCH_UP: Duration = Duration::from_secs(5);
/// Events arriving this close together are handled as one batch (one published view).
const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// A full re-read this often, in case a change was missed without a reconnection.
const RESYNC: Duration = Duration::from_secs(30);
/// Longest a batch gathers events before the view is published.
const BATCH_MAX: Duration = Duration::from_millis(20);

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(crate::cluster::zk_acl::default_acls())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(crate::cluster::zk_acl::default_acls())
}

/// Connection-level failures mean "nothing is known to have changed; retry"; others are bugs
/// or a misconfigured coordinator.
fn zk_err(context: &str, e: zk::Error) -> MetadataError {
    match e {
        zk::Error::ConnectionLoss
        | zk::Error::SessionExpired
        | zk::Error::SessionMoved
        | zk::Error::ClientClosed
        | zk::Error::Timeout
        | zk::Error::NoHosts
        | zk::Error::Throttled => MetadataError::Unavailable(format!("{context}: {e}")),
        e => MetadataError::Storage(format!("{context}: {e}")),
    }
}

/// Settings the store needs, taken from the broker's flags.
#[derive(Debug, Clone)]
pub struct ZkSettings {
    pub addr: CoordinatorAddr,
    pub session_timeout: Duration,
    /// How long topic creation/deletion/growth waits for the controller to act.
    pub controller_wait: Duration,
    /// Digest credentials (`user:password`) every session authenticates with.
    pub digest: Option<String>,
}

impl ZkSettings {
    /// Silence after which the client declares the connection lost (the client's default,
    /// set explicitly because fencing is computed from it).
    pub fn connection_timeout(&self) -> Duration {
        self.session_timeout * 2 / 5
    }

    pub fn from_config(cfg: &crate::config::BrokerConfig) -> Result<Self, String> {
        let raw = cfg
            .coordinator
            .as_deref()
            .ok_or_else(|| "cluster mode needs --coordinator".to_string())?;
        Ok(Self {
            addr: super::store::addr::parse(raw)?,
            session_timeout: Duration::from_millis(cfg.coordinator_session_timeout_ms),
            controller_wait: CONTROLLER_WAIT,
            digest: cfg.coordinator_digest()?,
        })
    }
}

struct Inner {
    me: BrokerMeta,
    settings: ZkSettings,
    /// The current session (registered or not yet); `None` between sessions.
    client: RwLock<Option<zk::Client>>,
    /// The current session once registered.
    sessions: watch::Sender<Option<zk::Client>>,
    registered: AtomicBool,
    /// [`ZkMetadataStore::register`] has succeeded once: every later session registers too.
    joined: AtomicBool,
    /// Held while the session is replaced, and while `register` registers: the two never
    /// interleave.
    session_change: tokio::sync::Mutex<()>,
    disconnected_since: Mutex<Option<Instant>>,
    fence_after: Mutex<Duration>,
    /// Last tick of the stall watch ([`watch_for_stalls`]).
    last_beat: Mutex<Instant>,
    /// Fired by the stall watch: the tree must be read again before the broker is trusted.
    stalled: tokio::sync::Notify,
    tree: RwLock<Arc<Tree>>,
    view: RwLock<Arc<ClusterView>>,
    changes: watch::Sender<u64>,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(v) => v.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut v) => *v = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What to do when the registration znode already exists under another session.
#[derive(Clone, Copy)]
enum Registration {
    /// At start-up: wait about one session timeout (a crashed predecessor's session expiring),
    /// then give up with "already registered".
    Start,
    /// After our own session expired: wait as long as it takes.
    Rejoin,
}

impl Inner {
    fn publish(&self, tree: &Tree) {
        let version = self.changes.borrow().wrapping_add(1);
        let view = Arc::new(tree.build_view(version));
        write(&self.tree, Arc::new(tree.clone()));
        write(&self.view, view);
        self.changes.send_replace(version);
    }

    /// Makes `client` the current session (not registered yet: see `mark_registered`).
    fn install(&self, client: zk::Client) {
        // The coordinator expires the session `session` after it last heard from us; we notice a
        // silent connection `connection_timeout` after our last reply at the latest. Fencing
        // `session - connection_timeout - session/5` after noticing leaves a fifth of the
        // session as margin before anyone else can be elected in our place.
        let session = client.session_timeout();
        *lock(&self.fence_after) = session
            .saturating_sub(self.settings.connection_timeout())
            .saturating_sub(session / 5);
        *lock(&self.disconnected_since) = None;
        write(&self.client, Some(client));
    }

    /// `client`'s session holds our registration: we are a live broker (unfenced), and the
    /// per-session tasks (the controller) start on it.
    fn mark_registered(&self, client: zk::Client) {
        self.registered.store(true, Ordering::Release);
        self.sessions.send_replace(Some(client));
    }

    fn lose_session(&self) {
        self.registered.store(false, Ordering::Release);
        write(&self.client, None);
        self.sessions.send_replace(None);
    }

    fn client(&self) -> Result<zk::Client, MetadataError> {
        read(&self.client).ok_or_else(|| {
            MetadataError::Unavailable("this broker has no coordinator session".into())
        })
    }

    fn tree(&self) -> Arc<Tree> {
        read(&self.tree)
    }

    /// Waits until `pred` holds for the published tree; false on timeout.
    async fn wait_tree(&self, timeout: Duration, pred: impl Fn(&Tree) -> bool) -> bool {
        let mut rx = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.tree()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return pred(&self.tree()),
            }
        }
    }

    fn broker_znode(&self) -> BrokerZnode {
        BrokerZnode {
            version: 5,
            host: self.me.host.clone(),
            port: self.me.port,
            rack: self.me.rack.clone(),
            endpoints: if self.me.endpoints.is_empty() {
                vec![format!("PLAINTEXT://{}:{}", self.me.host, self.me.port)]
            } else {
                self.me.endpoints.iter().map(|e| e.url()).collect()
            },
            timestamp: crate::now_ms().to_string(),
        }
    }

    /// A new session: connect, set up the tree, register (with `mode`, when given), watch, read
    /// everything.
    async fn establish(
        &self,
        mode: Option<Registration>,
    ) -> Result<(zk::Client, zk::PersistentWatcher, Tree), MetadataError> {
        let addr = &self.settings.addr;
        let client = zk::Client::connector()
            .with_session_timeout(self.settings.session_timeout)
            .with_connection_timeout(self.settings.connection_timeout())
            .connect(&addr.hosts)
            .await
            .map_err(|e| {
                MetadataError::Unavailable(format!(
                    "cannot reach the coordinator at {} (--coordinator): {e}",
                    addr.hosts
                ))
            })?;
        // Digest credentials once the session is up (the connector's own auth packets are
        // answered with the reserved auth xid, which the client then cannot match).
        if let Some(d) = &self.settings.digest {
            client
                .auth("digest", d.as_bytes())
                .await
                .map_err(|e| zk_err("authenticating to the coordinator (digest)", e))?;
        }
        let client = match &addr.chroot {
            Some(root) => {
                client
                    .mkdir(root, &persistent())
                    .await
                    .map_err(|e| zk_err(&format!("creating chroot {root}"), e))?;
                client.chroot(root.as_str()).map_err(|_| {
                    MetadataError::Storage(format!("chroot {root} is not a valid path"))
                })?
            }
            None => client,
        };
        for path in layout::PERSISTENT_PARENTS {
            create_if_missing(&client, path, b"").await?;
        }
        let cluster_id = ClusterIdZnode {
            version: "1".into(),
            id: crate::metadata::standalone::new_cluster_id(),
        };
        // The first broker's id wins; everyone else reads it back with the tree below.
        create_if_missing(&client, layout::CLUSTER_ID, &layout::encode(&cluster_id)).await?;
        if let Some(mode) = mode {
            self.register(&client, mode).await?;
        }
        let watcher = client
            .watch("/", zk::AddWatchMode::PersistentRecursive)
            .await
            .map_err(|e| zk_err("setting the metadata watch", e))?;
        let tree = Tree::read_all(&client)
            .await
            .map_err(|e| zk_err("reading cluster metadata", e))?;
        Ok((client, watcher, tree))
    }

    async fn register(&self, client: &zk::Client, mode: Registration) -> Result<(), MetadataError> {
        let id = self.me.id;
        let path = layout::broker_path(id);
        let data = layout::encode(&self.broker_znode());
        let patience = client.session_timeout() + client.session_timeout() / 2;
        let deadline = Instant::now() + patience + Duration::from_secs(1);
        let mut warned = false;
        loop {
            let owner = match client.create(&path, &data, &ephemeral()).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => match client.check_stat(&path).await {
                    // A create that succeeded before a connection loss and was retried.
                    Ok(Some(stat)) if stat.ephemeral_owner == client.session_id().0 => {
                        return Ok(())
                    }
                    Ok(Some(stat)) => stat.ephemeral_owner,
                    Ok(None) => continue,
                    Err(e) => return Err(zk_err("registering the broker", e)),
                },
                Err(zk::Error::ConnectionLoss) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(zk_err("registering the broker", e)),
            };
            if matches!(mode, Registration::Start) && Instant::now() >= deadline {
                return Err(MetadataError::Unavailable(format!(
                    "broker id {id} is already registered in the coordinator by another live \
                     session ({owner:#x}); is another broker running with --broker-id {id}?"
                )));
            }
            if !warned {
                tracing::warn!(
                    broker_id = id,
                    owner = %format!("{owner:#x}"),
                    "broker id registered by another session; waiting for it to expire"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn create_if_missing(
    client: &zk::Client,
    path: &str,
    data: &[u8],
) -> Result<(), MetadataError> {
    match client.create(path, data, &persistent()).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(zk_err(&format!("creating {path}"), e)),
    }
}

/// The coordinator-backed metadata store of a cluster-mode broker.
pub struct ZkMetadataStore {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ZkMetadataStore {
    /// [`open`](Self::open), then [`register`](Self::register).
    pub async fn connect(settings: ZkSettings, me: BrokerMeta) -> Result<Self, MetadataError> {
        let store = Self::open(settings, me).await?;
        store.register().await?;
        Ok(store)
    }

    /// Connects and builds the first view, without registering: the broker is not part of the
    /// cluster yet (and [`is_fenced`](MetadataStore::is_fenced)). Fails when the coordinator
    /// cannot be reached within about the session timeout.
    pub async fn open(settings: ZkSettings, me: BrokerMeta) -> Result<Self, MetadataError> {
        let (changes, _) = watch::channel(0);
        let (sessions, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            me,
            settings,
            client: RwLock::new(None),
            sessions,
            registered: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            session_change: tokio::sync::Mutex::new(()),
            disconnected_since: Mutex::new(None),
            fence_after: Mutex::new(Duration::ZERO),
            last_beat: Mutex::new(Instant::now()),
            stalled: tokio::sync::Notify::new(),
            tree: RwLock::new(Arc::new(Tree::default())),
            view: RwLock::new(Arc::new(ClusterView {
                controller_id: -1,
                ..Default::default()
            })),
            changes,
        });
        let (client, watcher, tree) = inner.establish(None).await?;
        inner.publish(&tree);
        inner.install(client.clone());
        tracing::info!(
            coordinator = %inner.settings.addr,
            session = %client.session_id(),
            session_timeout_ms = client.session_timeout().as_millis() as u64,
            cluster_id = %tree.cluster_id,
            brokers = ?tree.brokers.keys().collect::<Vec<_>>(),
            "connected to the coordinator; cluster metadata read"
        );
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(watch_for_stalls(inner.clone(), stop_rx.clone()));
        let task = tokio::spawn(run(inner.clone(), client, watcher, tree, stop_rx));
        Ok(Self {
            inner,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// Registers this broker (`/brokers/ids/<id>`, ephemeral, with the current session) and
    /// returns once its own view shows it. If the id is held by another session, waits about
    /// one and a half session timeouts (a crashed predecessor's session expiring), then fails
    /// with "already registered". Every later session registers again on its own.
    pub async fn register(&self) -> Result<(), MetadataError> {
        let inner = &self.inner;
        let id = inner.me.id;
        // A session replaced meanwhile (expired) is retried on the next one, for a while.
        let deadline = Instant::now() + inner.settings.session_timeout * 3;
        let session = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let guard = tokio::time::timeout(left, inner.session_change.lock())
                .await
                .map_err(|_| {
                    MetadataError::Unavailable(format!(
                        "cannot reach the coordinator at {} (--coordinator) to register",
                        inner.settings.addr.hosts
                    ))
                })?;
            let client = inner.client()?;
            match inner.register(&client, Registration::Start).await {
                Ok(()) => {
                    inner.joined.store(true, Ordering::Release);
                    inner.mark_registered(client.clone());
                    drop(guard);
                    break client.session_id();
                }
                Err(MetadataError::Unavailable(msg))
                    if client.state().is_terminated() && Instant::now() < deadline =>
                {
                    drop(guard);
                    tracing::warn!(error = %msg, "session ended while registering; retrying on the next one");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if !inner
            .wait_tree(VIEW_CATCH_UP, |t| t.brokers.contains_key(&id))
            .await
        {
            tracing::warn!(
                broker_id = id,
                "registered, but the registration is not in this broker's view yet"
            );
        }
        tracing::info!(broker_id = id, %session, "registered with the coordinator");
        Ok(())
    }

    /// The client of each registered session (`None` between sessions).
    pub fn sessions(&self) -> watch::Receiver<Option<zk::Client>> {
        self.inner.sessions.subscribe()
    }

    /// Runs `task(client, stop)` for every registered session, stopping it (its `stop` fires)
    /// when that session ends or `stop` fires; a task that ends on its own (or panics) while
    /// its session is current is started again after a second. The controller runs this way.
    pub fn spawn_per_session<F, Fut>(
        &self,
        mut stop: watch::Receiver<bool>,
        task: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(zk::Client, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut sessions = self.sessions();
        tokio::spawn(async move {
            loop {
                let Some(client) = sessions.borrow_and_update().clone() else {
                    tokio::select! {
                        r = sessions.changed() => if r.is_err() { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    continue;
                };
                let (tx, rx) = watch::channel(false);
                let mut handle = tokio::spawn(task(client, rx));
                let (finished, ended) = tokio::select! {
                    r = sessions.changed() => (r.is_err(), false),
                    _ = stop.wait_for(|s| *s) => (true, false),
                    r = &mut handle => {
                        // A task that dies while its session lives on must not leave it
                        // without one: a controller that panicked would otherwise keep
                        // `/controller` (an ephemeral of this session) with nobody acting.
                        match r {
                            Err(e) if e.is_panic() => tracing::error!(
                                "a per-session task (the controller) panicked; starting it again"
                            ),
                            _ => tracing::debug!("a per-session task ended; starting it again"),
                        }
                        (false, true)
                    }
                };
                if ended {
                    // Usually the session has just ended and is about to be replaced.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                } else {
                    let _ = tx.send(true);
                    let _ = handle.await;
                }
                if finished {
                    return;
                }
            }
        })
    }

    /// Leaves the cluster: stops watching and closes the session, so the registration (and
    /// controllership) goes at once rather than after the session timeout.
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Ok(client) = self.inner.client() {
            let mut state = client.state_watcher();
            self.inner.lose_session();
            drop(client);
            // Every clone is gone now (unless a per-session task still holds one while it
            // stops); the client sends CloseSession.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while !state.state().is_terminated() {
                    state.changed().await;
                }
            })
            .await;
        }
    }

    fn me(&self) -> i32 {
        self.inner.me.id
    }
}

impl Drop for ZkMetadataStore {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How a watch event bears on the session.
enum Flow {
    Continue,
    SessionEnded,
}

fn on_event(
    inner: &Inner,
    ev: zk::WatchedEvent,
    keys: &mut Vec<Key>,
    reconnected: &mut bool,
) -> Flow {
    if ev.event_type != zk::EventType::Session {
        if let Some(key) = classify(&ev.path) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        return Flow::Continue;
    }
    match ev.session_state {
        zk::SessionState::Disconnected => {
            let mut since = lock(&inner.disconnected_since);
            if since.is_none() {
                tracing::warn!("disconnected from the coordinator");
                *since = Some(Instant::now());
            }
            Flow::Continue
        }
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
            // Still counted as disconnected (and fenced, if it lasted) until the tree has been
            // read again: the view may be stale (`serve` clears it).
            if lock(&inner.disconnected_since).is_some() {
                tracing::info!("reconnected to the coordinator");
            }
            // Events during the disconnection may be lost (ZOOKEEPER-4698), and the watch itself
            // must be set again (see `serve`): read everything.
            *reconnected = true;
            Flow::Continue
        }
        state => {
            tracing::warn!(?state, "coordinator session ended");
            Flow::SessionEnded
        }
    }
}

/// Serves one session until it ends (`true`) or the store stops (`false`).
async fn serve(
    inner: &Inner,
    client: &zk::Client,
    watcher: &mut zk::PersistentWatcher,
    tree: &mut Tree,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut retry_full = false;
    let mut rewatch = false;
    // A reconnection whose re-read (and watch) has not succeeded yet.
    let mut stale = false;
    let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
    loop {
        let mut keys = Vec::new();
        // Set by a reconnection: the watch must be set again and everything re-read.
        let mut reconnected = false;
        let mut resync_due = false;
        tokio::select! {
            ev = watcher.changed() => {
                if let Flow::SessionEnded = on_event(inner, ev, &mut keys, &mut reconnected) {
                    return true;
                }
            }
            _ = stop.wait_for(|s| *s) => return false,
            _ = tokio::time::sleep(Duration::from_millis(500)), if retry_full || rewatch => {}
            _ = resync.tick() => resync_due = true,
            _ = inner.stalled.notified() => stale = true,
        }
        // Batch what arrives together: one publish for a burst (e.g. a topic's states), but
        // never hold a view back longer than BATCH_MAX under a steady stream of events.
        let batch_end = tokio::time::Instant::now() + BATCH_MAX;
        while keys.len() < 1024 {
            let window = (tokio::time::Instant::now() + BATCH_WINDOW).min(batch_end);
            match tokio::time::timeout_at(window, watcher.changed()).await {
                Ok(ev) => {
                    if let Flow::SessionEnded = on_event(inner, ev, &mut keys, &mut reconnected) {
                        return true;
                    }
                }
                Err(_) => break,
            }
        }
        // zookeeper-client 0.11.2 re-arms persistent watches after a reconnect with the old
        // SetWatches request, which cannot carry them (its `resend_watches` never raises the
        // request version), so the server forgets ours: set it again, then drop the old
        // watcher (the client keeps the server-side watch while another watcher of that kind
        // remains on the path).
        if reconnected || rewatch {
            match client
                .watch("/", zk::AddWatchMode::PersistentRecursive)
                .await
            {
                Ok(w) => {
                    *watcher = w;
                    rewatch = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "setting the metadata watch again failed; will retry");
                    rewatch = true;
                }
            }
        }
        let before = tree.clone();
        stale |= reconnected;
        let do_full = stale || retry_full || resync_due;
        retry_full = false;
        let mut fresh = false;
        if do_full {
            match Tree::read_all(client).await {
                Ok(t) => {
                    *tree = t;
                    fresh = stale && !rewatch;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-reading cluster metadata failed; will retry");
                    retry_full = true;
                }
            }
        } else {
            for key in keys {
                if let Err(e) = tree.refresh(client, key).await {
                    tracing::warn!(error = %e, "re-reading cluster metadata failed; will retry");
                    retry_full = true;
                    break;
                }
            }
        }
        if *tree != before {
            inner.publish(tree);
        }
        if fresh {
            // Re-read and followed again: a leader may trust its view from here on.
            stale = false;
            *lock(&inner.disconnected_since) = None;
        }
    }
}

/// A pause of the whole process (a stop signal, a frozen VM, swapping) this long counts as a
/// possible session loss: half the session timeout, the negotiated one when it is shorter.
fn stall_limit(inner: &Inner) -> Duration {
    // Read in place: `is_fenced` runs on every produce.
    let negotiated = match inner.client.read() {
        Ok(c) => c.as_ref().map(|c| c.session_timeout()),
        Err(poisoned) => poisoned.get_ref().as_ref().map(|c| c.session_timeout()),
    };
    let session = match negotiated {
        Some(n) => n.min(inner.settings.session_timeout),
        None => inner.settings.session_timeout,
    };
    session / 2
}

/// Notices that the process was stalled: nothing ran, not even the client's pings, so the
/// coordinator may have expired the session and elected other leaders while this broker still
/// believes it leads. Such a broker is fenced at once (`is_fenced` compares the last tick with
/// the clock) and stays fenced as if it had been disconnected since the stall began, until the
/// tree has been read again (proof that the session lives, and a fresh view) or the session
/// turns out to be gone.
async fn watch_for_stalls(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval((stall_limit(&inner) / 5).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        let last = std::mem::replace(&mut *lock(&inner.last_beat), now);
        let gap = now.saturating_duration_since(last);
        if gap >= stall_limit(&inner) {
            tracing::warn!(
                stalled_ms = gap.as_millis() as u64,
                "this broker was stalled for half the session timeout or more: fenced until \
                 the coordinator confirms the session"
            );
            {
                let mut since = lock(&inner.disconnected_since);
                *since = Some(since.map_or(last, |s| s.min(last)));
            }
            inner.stalled.notify_one();
        }
    }
}

async fn run(
    inner: Arc<Inner>,
    mut client: zk::Client,
    mut watcher: zk::PersistentWatcher,
    mut tree: Tree,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if !serve(&inner, &client, &mut watcher, &mut tree, &mut stop).await {
            break;
        }
        let _replacing = inner.session_change.lock().await;
        inner.lose_session();
        drop(client);
        tracing::warn!(broker_id = inner.me.id, "opening a new coordinator session");
        loop {
            if *stop.borrow() {
                return;
            }
            // Not registered yet (start-up): the new session is not either.
            let joined = inner.joined.load(Ordering::Acquire);
            let mode = joined.then_some(Registration::Rejoin);
            // Cancellable: a dropped attempt drops its client, closing that session.
            let attempt = tokio::select! {
                r = inner.establish(mode) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match attempt {
                Ok((c, w, t)) => {
                    if joined {
                        tracing::info!(session = %c.session_id(), "registered again with the coordinator");
                    } else {
                        tracing::info!(session = %c.session_id(), "new coordinator session (not registered yet)");
                    }
                    (client, watcher, tree) = (c, w, t);
                    inner.publish(&tree);
                    inner.install(client.clone());
                    if joined {
                        inner.mark_registered(client.clone());
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot rejoin the cluster yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }
}

#[async_trait]
impl MetadataStore for ZkMetadataStore {
    fn view(&self) -> Arc<ClusterView> {
        read(&self.inner.view)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    async fn create_topic(&self, topic: NewTopic) -> Result<Arc<TopicMeta>, MetadataError> {
        if topic.assignment.is_empty() {
            return Err(MetadataError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        let client = self.inner.client()?;
        let name = topic.name.clone();
        let ctx = format!("creating topic '{name}'");
        let pending_delete = client
            .check_stat(&layout::delete_topic_path(&name))
            .await
            .map_err(|e| zk_err(&ctx, e))?;
        if pending_delete.is_some() {
            // Kafka answers TOPIC_ALREADY_EXISTS while a deletion is pending.
            return Err(MetadataError::TopicExists(name));
        }
        let id = Uuid::new_v4();
        let znode = TopicZnode {
            version: 3,
            topic_id: id.to_string(),
            partitions: topic
                .assignment
                .iter()
                .enumerate()
                .map(|(p, r)| (p.to_string(), r.clone()))
                .collect(),
            internal: name.starts_with("__"),
            adding_replicas: Default::default(),
            removing_replicas: Default::default(),
        };
        let config = layout::encode(&ConfigZnode {
            version: 1,
            config: topic.configs.clone(),
        });
        let config_path = layout::topic_config_path(&name);
        // A config left by an earlier topic of that name is replaced in the same transaction.
        let config_exists = client
            .check_stat(&config_path)
            .await
            .map_err(|e| zk_err(&ctx, e))?
            .is_some();
        let mut w = client.new_multi_writer();
        let bad = |e: zk::Error| MetadataError::InvalidPartitions(format!("{ctx}: {e}"));
        w.add_create(
            &layout::topic_path(&name),
            &layout::encode(&znode),
            &persistent(),
        )
        .map_err(bad)?;
        if config_exists {
            w.add_set_data(&config_path, &config, None).map_err(bad)?;
        } else {
            w.add_create(&config_path, &config, &persistent())
                .map_err(bad)?;
        }
        match w.commit().await {
            Ok(_) => {}
            Err(zk::MultiWriteError::OperationFailed {
                index: 0,
                source: zk::Error::NodeExists,
            }) => return Err(MetadataError::TopicExists(name)),
            Err(e) => return Err(zk_err(&ctx, e.into())),
        }
        if !self
            .inner
            .wait_tree(self.inner.settings.controller_wait, |t| {
                t.topic_complete(&name, Some(id))
            })
            .await
        {
            return Err(MetadataError::Timeout(format!(
                "topic '{name}' was created, but the controller did not set up all its \
                 partitions within {:.1}s",
                self.inner.settings.controller_wait.as_secs_f64()
            )));
        }
        self.view()
            .topic(&name)
            .filter(|t| t.id == id)
            .cloned()
            .ok_or_else(|| MetadataError::Timeout(format!("topic '{name}' changed meanwhile")))
    }

    async fn delete_topic(&self, name: &str) -> Result<(), MetadataError> {
        let client = self.inner.client()?;
        let ctx = format!("deleting topic '{name}'");
        let exists = client
            .check_stat(&layout::topic_path(name))
            .await
            .map_err(|e| zk_err(&ctx, e))?;
        if exists.is_none() {
            return Err(MetadataError::UnknownTopic(name.to_string()));
        }
        match client
            .create(&layout::delete_topic_path(name), b"", &persistent())
            .await
        {
            // Already requested: wait for it like the first requester.
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(zk_err(&ctx, e)),
        }
        if self
            .inner
            .wait_tree(self.inner.settings.controller_wait, |t| {
                !t.topics.contains_key(name)
            })
            .await
        {
            Ok(())
        } else {
            Err(MetadataError::Timeout(format!(
                "deletion of topic '{name}' was requested, but the controller did not finish \
                 it within {:.1}s",
                self.inner.settings.controller_wait.as_secs_f64()
            )))
        }
    }

    async fn add_partitions(
        &self,
        name: &str,
        new_assignment: Vec<Vec<i32>>,
    ) -> Result<Arc<TopicMeta>, MetadataError> {
        let client = self.inner.client()?;
        let ctx = format!("adding partitions to topic '{name}'");
        let path = layout::topic_path(name);
        let (id, total) = loop {
            let (data, stat) = match client.get_data(&path).await {
                Ok(x) => x,
                Err(zk::Error::NoNode) => {
                    return Err(MetadataError::UnknownTopic(name.to_string()))
                }
                Err(e) => return Err(zk_err(&ctx, e)),
            };
            let mut z: TopicZnode =
                layout::decode(&path, &data).map_err(|e| MetadataError::Storage(e.to_string()))?;
            let first = z.partitions.len();
            for (i, replicas) in new_assignment.iter().enumerate() {
                z.partitions
                    .insert((first + i).to_string(), replicas.clone());
            }
            let total = z.partitions.len();
            let id = Uuid::parse_str(&z.topic_id)
                .map_err(|e| MetadataError::Storage(format!("{path}: bad topic id: {e}")))?;
            // Compare-and-set: a concurrent CreatePartitions makes us re-read and re-number.
            match client
                .set_data(&path, &layout::encode(&z), Some(stat.version))
                .await
            {
                Ok(_) => break (id, total),
                Err(zk::Error::BadVersion) => continue,
                Err(zk::Error::NoNode) => {
                    return Err(MetadataError::UnknownTopic(name.to_string()))
                }
                Err(e) => return Err(zk_err(&ctx, e)),
            }
        };
        let done = self
            .inner
            .wait_tree(self.inner.settings.controller_wait, |t| {
                t.topics
                    .get(name)
                    .is_some_and(|e| e.assignment.len() >= total)
                    && t.topic_complete(name, Some(id))
            })
            .await;
        if !done {
            return Err(MetadataError::Timeout(format!(
                "partitions were added to topic '{name}', but the controller did not set them \
                 up within {:.1}s",
                self.inner.settings.controller_wait.as_secs_f64()
            )));
        }
        self.view()
            .topic(name)
            .cloned()
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        let client = self.inner.client()?;
        let ctx = format!("setting configs of topic '{name}'");
        let exists = client
            .check_stat(&layout::topic_path(name))
            .await
            .map_err(|e| zk_err(&ctx, e))?;
        if exists.is_none() {
            return Err(MetadataError::UnknownTopic(name.to_string()));
        }
        write_config(&client, &layout::topic_config_path(name), &configs, &ctx).await?;
        let shown = self
            .inner
            .wait_tree(VIEW_CATCH_UP, |t| {
                t.topic_configs.get(name).cloned().unwrap_or_default() == configs
            })
            .await;
        if !shown {
            tracing::warn!(
                topic = name,
                "topic config written but not yet seen by the watch"
            );
        }
        Ok(())
    }

    async fn set_broker_configs(
        &self,
        broker: Option<i32>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        let client = self.inner.client()?;
        let path = layout::broker_config_path(broker);
        write_config(&client, &path, &configs, "setting broker configs").await?;
        let entity = match broker {
            Some(id) => id.to_string(),
            None => layout::DEFAULT_BROKER_ENTITY.to_string(),
        };
        let shown = self
            .inner
            .wait_tree(VIEW_CATCH_UP, |t| {
                t.broker_configs.get(&entity).cloned().unwrap_or_default() == configs
            })
            .await;
        if !shown {
            tracing::warn!(%entity, "broker config written but not yet seen by the watch");
        }
        Ok(())
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64, MetadataError> {
        if count < 1 {
            return Err(MetadataError::Storage(format!(
                "cannot reserve {count} producer ids"
            )));
        }
        let client = self.inner.client()?;
        let ctx = "reserving producer ids";
        let path = layout::PRODUCER_ID_BLOCK;
        let block = |start: i64| -> Result<Vec<u8>, MetadataError> {
            let end = start
                .checked_add(count - 1)
                .ok_or_else(|| MetadataError::Storage("producer ids exhausted".into()))?;
            Ok(layout::encode(&ProducerIdBlockZnode {
                version: 1,
                broker: self.me(),
                block_start: start.to_string(),
                block_end: end.to_string(),
            }))
        };
        // Compare-and-set on the znode version: concurrent brokers retry, blocks never overlap.
        for _ in 0..1000 {
            match client.get_data(path).await {
                Err(zk::Error::NoNode) => {
                    match client.create(path, &block(0)?, &persistent()).await {
                        Ok(_) => return Ok(0),
                        Err(zk::Error::NodeExists) => continue,
                        Err(e) => return Err(zk_err(ctx, e)),
                    }
                }
                Err(e) => return Err(zk_err(ctx, e)),
                Ok((data, stat)) => {
                    let z: ProducerIdBlockZnode = layout::decode(path, &data)
                        .map_err(|e| MetadataError::Storage(e.to_string()))?;
                    let end: i64 = z.block_end.parse().map_err(|_| {
                        MetadataError::Storage(format!("{path}: bad block_end {:?}", z.block_end))
                    })?;
                    let start = end
                        .checked_add(1)
                        .ok_or_else(|| MetadataError::Storage("producer ids exhausted".into()))?;
                    match client
                        .set_data(path, &block(start)?, Some(stat.version))
                        .await
                    {
                        Ok(_) => return Ok(start),
                        Err(zk::Error::BadVersion) => continue,
                        Err(e) => return Err(zk_err(ctx, e)),
                    }
                }
            }
        }
        Err(MetadataError::Unavailable(
            "reserving producer ids: too much contention".into(),
        ))
    }

    async fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    ) -> Result<PartitionMeta, MetadataError> {
        if self.is_fenced() {
            return Err(MetadataError::Fenced(
                "this broker's coordinator session is lost".into(),
            ));
        }
        let client = self.inner.client()?;
        let me = self.me();
        let ctx = format!("changing the ISR of {topic}-{partition}");
        let path = layout::partition_state_path(topic, partition);
        let replicas = self
            .inner
            .tree()
            .topics
            .get(topic)
            .and_then(|t| t.assignment.get(partition as usize).cloned())
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        if !new_isr.contains(&me) || new_isr.iter().any(|r| !replicas.contains(r)) {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "{ctx}: ISR {new_isr:?} must contain the leader {me} and only replicas {replicas:?}"
            )));
        }
        let (data, stat) = match client.get_data(&path).await {
            Ok(x) => x,
            Err(zk::Error::NoNode) => return Err(MetadataError::UnknownTopic(topic.to_string())),
            Err(e) => return Err(zk_err(&ctx, e)),
        };
        let mut state: PartitionStateZnode =
            layout::decode(&path, &data).map_err(|e| MetadataError::Storage(e.to_string()))?;
        if stat.version != partition_epoch {
            return Err(MetadataError::Fenced(format!(
                "{ctx}: partition epoch {partition_epoch} is stale (now {})",
                stat.version
            )));
        }
        if state.leader != me || state.leader_epoch != leader_epoch {
            return Err(MetadataError::Fenced(format!(
                "{ctx}: leader {me} epoch {leader_epoch} is stale (now leader {} epoch {})",
                state.leader, state.leader_epoch
            )));
        }
        state.isr = new_isr;
        let new_stat = match client
            .set_data(&path, &layout::encode(&state), Some(partition_epoch))
            .await
        {
            Ok(s) => s,
            Err(zk::Error::BadVersion) => {
                return Err(MetadataError::Fenced(format!(
                    "{ctx}: the partition state changed meanwhile"
                )))
            }
            Err(zk::Error::NoNode) => return Err(MetadataError::UnknownTopic(topic.to_string())),
            Err(e) => return Err(zk_err(&ctx, e)),
        };
        // The leader goes on with the returned state; its own view follows within milliseconds.
        let version = new_stat.version;
        self.inner
            .wait_tree(VIEW_CATCH_UP, |t| {
                t.states
                    .get(topic)
                    .and_then(|s| s.get(&partition))
                    .is_some_and(|s| s.version >= version)
            })
            .await;
        Ok(PartitionMeta {
            index: partition,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            replicas,
            isr: state.isr,
            partition_epoch: version,
        })
    }

    async fn controlled_shutdown(&self, timeout: Duration) -> Result<(), MetadataError> {
        let client = self.inner.client()?;
        let me = self.me();
        let path = layout::controlled_shutdown_path(me);
        match client.create(&path, b"", &ephemeral()).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(zk_err("requesting controlled shutdown", e)),
        }
        let done = self
            .inner
            .wait_tree(timeout, |t| t.led_with_other_isr(me).is_empty())
            .await;
        match client.delete(&path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => tracing::warn!(error = %e, "removing the controlled shutdown request"),
        }
        if done {
            Ok(())
        } else {
            let left = self.inner.tree().led_with_other_isr(me).len();
            Err(MetadataError::Timeout(format!(
                "controlled shutdown: this broker still leads {left} partitions with other \
                 in-sync replicas after {}ms",
                timeout.as_millis()
            )))
        }
    }

    fn supports_reassignment(&self) -> bool {
        true
    }

    async fn reassign_partitions(
        &self,
        requests: Vec<(String, i32, Option<Vec<i32>>)>,
        timeout: Duration,
    ) -> Result<(), MetadataError> {
        let client = self.inner.client()?;
        let ctx = "requesting partition reassignments";
        let path = layout::REASSIGN_PARTITIONS;
        let merge = |mut z: ReassignmentZnode| -> Vec<u8> {
            for (topic, partition, replicas) in requests.iter() {
                z.partitions
                    .retain(|e| !(e.topic == *topic && e.partition == *partition));
                z.partitions.push(ReassignmentEntry {
                    topic: topic.clone(),
                    partition: *partition,
                    replicas: replicas.clone(),
                });
            }
            z.version = 1;
            layout::encode(&z)
        };
        // Compare-and-set merge: requests from other brokers meanwhile are kept.
        let mut written = false;
        for _ in 0..100 {
            match client.get_data(path).await {
                Err(zk::Error::NoNode) => {
                    let data = merge(ReassignmentZnode::default());
                    match client.create(path, &data, &persistent()).await {
                        Ok(_) => {
                            written = true;
                            break;
                        }
                        Err(zk::Error::NodeExists) => continue,
                        Err(e) => return Err(zk_err(ctx, e)),
                    }
                }
                Err(e) => return Err(zk_err(ctx, e)),
                Ok((data, stat)) => {
                    // A malformed request is replaced: the controller would drop it anyway.
                    let z = layout::decode::<ReassignmentZnode>(path, &data).unwrap_or_default();
                    match client.set_data(path, &merge(z), Some(stat.version)).await {
                        Ok(_) => {
                            written = true;
                            break;
                        }
                        Err(zk::Error::BadVersion) | Err(zk::Error::NoNode) => continue,
                        Err(e) => return Err(zk_err(ctx, e)),
                    }
                }
            }
        }
        if !written {
            return Err(MetadataError::Unavailable(format!(
                "{ctx}: too much contention"
            )));
        }
        // Kafka answers once the controller has begun the moves: wait until the view shows
        // each target (replicas minus those being removed) or, for a cancel, nothing moving.
        let begun = |t: &Tree| {
            requests.iter().all(|(topic, p, target)| {
                let Some(e) = t.topics.get(topic) else {
                    return false;
                };
                let Some(replicas) = e.assignment.get(*p as usize) else {
                    return false;
                };
                let removing = e.removing.get(p).cloned().unwrap_or_default();
                match target {
                    Some(target) => {
                        let now: Vec<i32> = replicas
                            .iter()
                            .copied()
                            .filter(|r| !removing.contains(r))
                            .collect();
                        now == *target
                    }
                    None => removing.is_empty() && !e.adding.contains_key(p),
                }
            })
        };
        if self.inner.wait_tree(timeout, begun).await {
            Ok(())
        } else {
            Err(MetadataError::Timeout(format!(
                "the reassignment was requested, but the controller did not begin it within {}ms",
                timeout.as_millis()
            )))
        }
    }

    fn is_fenced(&self) -> bool {
        if !self.inner.registered.load(Ordering::Acquire) {
            return true;
        }
        // Just back from a stall (the stall watch has not run yet): the coordinator may have
        // expired the session meanwhile without this broker hearing of it.
        if lock(&self.inner.last_beat).elapsed() >= stall_limit(&self.inner) {
            return true;
        }
        let fence_after = *lock(&self.inner.fence_after);
        lock(&self.inner.disconnected_since).is_some_and(|since| since.elapsed() >= fence_after)
    }
}

/// Writes a config znode, creating it when missing.
async fn write_config(
    client: &zk::Client,
    path: &str,
    configs: &BTreeMap<String, String>,
    ctx: &str,
) -> Result<(), MetadataError> {
    let data = layout::encode(&ConfigZnode {
        version: 1,
        config: configs.clone(),
    });
    for _ in 0..10 {
        match client.set_data(path, &data, None).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NoNode) => match client.create(path, &data, &persistent()).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => continue,
                Err(e) => return Err(zk_err(ctx, e)),
            },
            Err(e) => return Err(zk_err(ctx, e)),
        }
    }
    Err(MetadataError::Unavailable(format!(
        "{ctx}: too much contention"
    )))
}
