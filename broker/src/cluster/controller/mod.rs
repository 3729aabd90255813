//! The controller: one broker, elected through the coordinator, that decides partition states.
//!
//! Modelled on Kafka's ZooKeeper-mode controller. Whoever holds the ephemeral `/controller`
//! znode (created with the broker's own session, so losing the session loses the role) is the
//! controller; winning also bumps `/controller_epoch`, whose znode version fences every later
//! write ([`fence`]). The controller then keeps a copy of the tree ([`tree`]) fresh from
//! persistent watches and, after every batch of changes, decides ([`decisions`], pure) and
//! writes, level-triggered: each pass compares the whole current state with what it should be,
//! so a controller elected after a failover mid-change finishes the job (partitions without a
//! state get one, a pending deletion is carried out, leaders on dead brokers are replaced).
//!
//! What it does:
//! - new topics / new partitions (topic znode written by any broker) → partition states with
//!   leaders;
//! - broker gone → new leaders from the ISR for the partitions it led, and it leaves every ISR it
//!   is not the last member of; broker back → offline partitions whose ISR has it get it as
//!   leader; a broker that restarted between two looks (new znode) counts as gone and back;
//! - `/admin/controlled_shutdown/<id>` → leadership moves off `id`, and `id` leaves ISRs;
//! - `/admin/delete_topics/<t>` → the topic's znodes go, then the request (brokers delete their
//!   logs when the topic leaves their view);
//! - `/admin/reassign_partitions` → each valid entry begins its move ([`reassign`], phase 1) in
//!   the same transaction that removes it from the request; a move in progress (recorded in the
//!   topic znode) completes once its target replicas are all in sync (phase 2), whoever the
//!   controller is by then;
//! - with `auto_rebalance`: every `rebalance_interval`, preferred-leader election for the
//!   partitions of brokers whose leader imbalance is over `imbalance_percentage`, and for a
//!   returned broker, once it has been back for `leader_return_delay` and is in sync, for the
//!   partitions it prefers.
//!
//! State znodes are also written by partition leaders (ISR changes, compare-and-set): a write
//! that loses that race re-reads the partition and decides again.

pub mod decisions;
pub mod fence;
pub mod reassign;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zookeeper_client as zk;

use self::decisions::{Change, LeaderAndIsr, Liveness, Reason};
use self::fence::{ControllerEpoch, FencedWrite, WriteError};
use self::reassign::Assignment;
use self::tree::{Target, Tree};
use crate::cluster::zk_layout::{self as layout, ConfigZnode, ReassignmentZnode, TopicZnode};
use crate::config::BrokerConfig;
use crate::metrics::ControllerMetrics;

/// Topic config (and dynamic cluster default) that lets an out-of-sync replica lead.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// How long changes are gathered before one pass decides on all of them.
const BATCH_DELAY: Duration = Duration::from_millis(20);
/// Ops per transaction (a state creation is two or three): far below the default 1 MB request
/// limit of ZooKeeper (jute.maxbuffer) even with long topic names.
const MAX_OPS_PER_MULTI: usize = 500;
/// Decide-and-write rounds per pass (a round follows a lost compare-and-set).
const MAX_ROUNDS: usize = 8;

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub broker_id: i32,
    /// Cluster default of `unclean.leader.election.enable` (topic configs and the dynamic
    /// `<default>` broker config override it).
    pub unclean_default: bool,
    /// Preferred-leader balancing (auto.leader.rebalance.enable).
    pub auto_rebalance: bool,
    /// How often preferred leaders are restored (leader.imbalance.check.interval.seconds).
    pub rebalance_interval: Duration,
    /// The periodic check moves leaders back only for brokers over this share of partitions
    /// they prefer but do not lead (leader.imbalance.per.broker.percentage).
    pub imbalance_percentage: u32,
    /// A returned broker gets the leadership it prefers back only after this long: clients
    /// and followers must be able to resolve and reach it first (a restarted pod's DNS name
    /// can lag its registration by seconds), or acks=all writes wait for followers that
    /// cannot connect.
    pub leader_return_delay: Duration,
    /// Full re-read of the tree this often, in case a watch event was lost (persistent watches
    /// can miss events across a reconnection, ZOOKEEPER-4698).
    pub resync_interval: Duration,
    /// Pause after a coordinator error before trying again.
    pub retry_backoff: Duration,
    /// Where the controller reports itself (the broker's registered ones; a default is not
    /// exported).
    pub metrics: ControllerMetrics,
}

impl ControllerConfig {
    pub fn from_broker(cfg: &BrokerConfig) -> Self {
        ControllerConfig {
            broker_id: cfg.broker_id,
            unclean_default: cfg.unclean_leader_election_enable,
            auto_rebalance: cfg.auto_leader_rebalance_enable,
            rebalance_interval: Duration::from_secs(cfg.leader_imbalance_check_interval_seconds),
            imbalance_percentage: cfg.leader_imbalance_per_broker_percentage,
            leader_return_delay: Duration::from_millis(cfg.leader_return_delay_ms),
            resync_interval: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(500),
            metrics: ControllerMetrics::default(),
        }
    }
}

/// Campaigns for controllership with `client`'s session and acts as controller while elected;
/// campaigns again when deposed. Returns when `stop` turns true (or its sender is dropped),
/// giving `/controller` up at once, or when the session has ended (expired or closed): the
/// caller starts it again with the new session's client.
pub async fn run(client: zk::Client, cfg: ControllerConfig, mut stop: watch::Receiver<bool>) {
    debug!(broker_id = cfg.broker_id, "controller campaign started");
    loop {
        if stop_requested(&mut stop) {
            return;
        }
        if client.state().is_terminated() {
            info!(broker_id = cfg.broker_id, state = %client.state(), "session ended; the controller campaign stops");
            return;
        }
        let attempt = tokio::select! {
            r = fence::try_become_controller(&client, cfg.broker_id) => r,
            _ = stopped(&mut stop) => return,
        };
        let epoch = match attempt {
            Ok(Some(epoch)) => epoch,
            Ok(None) => {
                wait_for_vacancy(&client, &cfg, &mut stop).await;
                continue;
            }
            Err(e) => {
                if is_terminal(&e) {
                    continue;
                }
                warn!(broker_id = cfg.broker_id, error = %e, "controller election attempt failed");
                pause(cfg.retry_backoff, &mut stop).await;
                continue;
            }
        };
        info!(
            broker_id = cfg.broker_id,
            controller_epoch = epoch.value,
            "elected controller"
        );
        cfg.metrics.elected(epoch.value);
        let exit = Controller::new(&client, &cfg, epoch).act(&mut stop).await;
        cfg.metrics.resigned();
        match exit {
            Exit::Stopped => {
                if let Err(e) = fence::resign(&client).await {
                    warn!(error = %e, "could not give up /controller on stop");
                }
                info!(broker_id = cfg.broker_id, "controller stopped");
                return;
            }
            Exit::Deposed => {
                warn!(
                    broker_id = cfg.broker_id,
                    controller_epoch = epoch.value,
                    "no longer the controller; campaigning again"
                );
                // Still holding /controller with a stale fence only happens when someone
                // bumped the epoch by hand: let a fresh election sort it out.
                let _ = fence::resign(&client).await;
                pause(cfg.retry_backoff, &mut stop).await;
            }
            Exit::SessionEnded => {
                info!(
                    broker_id = cfg.broker_id,
                    "session ended; controller stops acting"
                );
                return;
            }
        }
    }
}

fn stop_requested(stop: &mut watch::Receiver<bool>) -> bool {
    *stop.borrow_and_update() || stop.has_changed().is_err()
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stopped(stop) => {}
    }
}

fn is_terminal(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed
    )
}

/// Waits until `/controller` is gone (or a while has passed, or stop).
async fn wait_for_vacancy(
    client: &zk::Client,
    cfg: &ControllerConfig,
    stop: &mut watch::Receiver<bool>,
) {
    match client.check_and_watch_stat(layout::CONTROLLER).await {
        Ok((None, _)) => {}
        Ok((Some(_), watcher)) => {
            tokio::select! {
                _ = watcher.changed() => {}
                _ = tokio::time::sleep(cfg.resync_interval) => {}
                _ = stopped(stop) => {}
            }
        }
        Err(e) => {
            if !is_terminal(&e) {
                warn!(error = %e, "cannot watch /controller");
                pause(cfg.retry_backoff, stop).await;
            }
        }
    }
}

enum Exit {
    Stopped,
    Deposed,
    SessionEnded,
}

/// Why a pass ended early.
enum Halt {
    Deposed,
    SessionEnded,
    Transient(zk::Error),
}

impl From<zk::Error> for Halt {
    fn from(e: zk::Error) -> Self {
        if is_terminal(&e) {
            Halt::SessionEnded
        } else {
            Halt::Transient(e)
        }
    }
}

/// One decided state znode write.
#[derive(Debug)]
struct StateWrite {
    partition: i32,
    old: LeaderAndIsr,
    new: LeaderAndIsr,
    version: i32,
    reasons: Vec<Reason>,
    /// Why the leader changed, as the election metric counts it (`None`: no new leader).
    election: Option<&'static str>,
}

/// One decided write.
#[derive(Debug)]
enum Action {
    Delete(String),
    /// Reassignment requests that cannot be carried out (logged with the reason) leave
    /// `/admin/reassign_partitions`.
    DropRequests(Vec<((String, i32), String)>),
    /// Reassignments begin or complete for some partitions of a topic: the topic znode (new
    /// assignment, adding/removing), the states that change with it, and the requests consumed,
    /// in one transaction.
    Reassign {
        topic: String,
        topic_version: i32,
        znode: TopicZnode,
        /// Partition → (old, new) assignment, for the log.
        moves: Vec<(i32, Assignment, Assignment)>,
        states: Vec<StateWrite>,
        consumed: Vec<(String, i32)>,
    },
    Create {
        topic: String,
        topic_version: i32,
        create_dir: bool,
        states: Vec<(i32, bool, LeaderAndIsr)>,
    },
    /// One partition's state alone (compare-and-set on its version).
    Set {
        topic: String,
        write: StateWrite,
    },
}

struct Controller<'a> {
    client: &'a zk::Client,
    cfg: &'a ControllerConfig,
    epoch: ControllerEpoch,
    tree: Tree,
    loaded: bool,
    /// Brokers whose znode was replaced since the last pass (restarted): treated as gone and
    /// back in the next pass.
    bounced: BTreeSet<i32>,
    /// Brokers that registered (or re-registered) recently, with when: each gets its preferred
    /// leadership back once `leader_return_delay` has passed (and it is in sync).
    returned: BTreeMap<i32, Instant>,
    /// Controlled-shutdown requests (broker → request czxid) whose followers have been dropped
    /// from ISRs once; not again, so that a leader re-adding the still-fetching broker does not
    /// flap against us.
    shutdowns_done: BTreeMap<i32, i64>,
    dirty: BTreeSet<TargetKey>,
    full_reload: bool,
    verify: bool,
    rebalance_due: bool,
    /// Connected to the coordinator (passes wait while not).
    connected: bool,
    /// The watches must be set again (after a reconnection).
    rewatch: bool,
}

/// The controller's persistent watches: the brokers, the admin requests, and the two znodes
/// that say who the controller is.
struct Watches {
    brokers: zk::PersistentWatcher,
    admin: zk::PersistentWatcher,
    controller: zk::PersistentWatcher,
    epoch: zk::PersistentWatcher,
}

impl Watches {
    async fn set(client: &zk::Client) -> Result<Watches, zk::Error> {
        Ok(Watches {
            brokers: client
                .watch("/brokers", zk::AddWatchMode::PersistentRecursive)
                .await?,
            admin: client
                .watch("/admin", zk::AddWatchMode::PersistentRecursive)
                .await?,
            controller: client
                .watch(layout::CONTROLLER, zk::AddWatchMode::Persistent)
                .await?,
            epoch: client
                .watch(layout::CONTROLLER_EPOCH, zk::AddWatchMode::Persistent)
                .await?,
        })
    }
}

/// `Target` with an order, for the dirty set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TargetKey {
    Broker(i32),
    Topic(String),
    Deletion(String),
    Shutdown(i32),
    Reassign,
}

impl<'a> Controller<'a> {
    fn new(client: &'a zk::Client, cfg: &'a ControllerConfig, epoch: ControllerEpoch) -> Self {
        Controller {
            client,
            cfg,
            epoch,
            tree: Tree::default(),
            loaded: false,
            bounced: BTreeSet::new(),
            returned: BTreeMap::new(),
            shutdowns_done: BTreeMap::new(),
            dirty: BTreeSet::new(),
            full_reload: true,
            verify: true,
            rebalance_due: false,
            connected: true,
            rewatch: false,
        }
    }

    async fn act(&mut self, stop: &mut watch::Receiver<bool>) -> Exit {
        let mut states = self.client.state_watcher();
        // Watches first, then the full read: no change can fall between the two.
        let mut watches = match Watches::set(self.client).await {
            Ok(w) => w,
            Err(e) if is_terminal(&e) => return Exit::SessionEnded,
            Err(e) => {
                warn!(error = %e, "controller cannot watch the tree; campaigning again");
                return Exit::Deposed;
            }
        };
        let start = Instant::now();
        let mut rebalance = tokio::time::interval_at(
            start + self.cfg.rebalance_interval,
            self.cfg.rebalance_interval,
        );
        let mut resync =
            tokio::time::interval_at(start + self.cfg.resync_interval, self.cfg.resync_interval);
        let mut pending_since: Option<Instant> = Some(start);
        loop {
            let work = self.connected
                && (self.rewatch
                    || self.full_reload
                    || self.verify
                    || self.rebalance_due
                    || !self.dirty.is_empty());
            if work && pending_since.is_none() {
                pending_since = Some(Instant::now());
            }
            let deadline = match (work, pending_since) {
                (true, Some(t)) => t + BATCH_DELAY,
                _ => Instant::now() + Duration::from_secs(3600),
            };
            // A pass when a returned broker's hold ends, so its leadership goes back then.
            let deadline = match self.next_handback() {
                Some(h) if self.connected && h < deadline => h,
                _ => deadline,
            };
            tokio::select! {
                biased;
                _ = stopped(stop) => return Exit::Stopped,
                s = states.changed() => {
                    if s.is_terminated() {
                        return Exit::SessionEnded;
                    }
                    self.session_state(s);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    pending_since = None;
                    // A pass waits on the coordinator: stop must not wait for it.
                    let outcome = tokio::select! {
                        r = self.rearm_then_pass(&mut watches) => r,
                        _ = stopped(stop) => return Exit::Stopped,
                    };
                    match outcome {
                        Ok(()) => {}
                        Err(Halt::Deposed) => return Exit::Deposed,
                        Err(Halt::SessionEnded) => return Exit::SessionEnded,
                        Err(Halt::Transient(e)) => {
                            warn!(error = %e, "controller pass failed; re-reading the tree");
                            self.full_reload = true;
                            self.verify = true;
                            pause(self.cfg.retry_backoff, stop).await;
                        }
                    }
                }
                ev = watches.brokers.changed() => self.note(ev),
                ev = watches.admin.changed() => self.note(ev),
                ev = watches.controller.changed() => self.note(ev),
                ev = watches.epoch.changed() => self.note(ev),
                _ = rebalance.tick() => {
                    if self.cfg.auto_rebalance {
                        self.rebalance_due = true;
                    }
                }
                _ = resync.tick() => self.full_reload = true,
            }
        }
    }

    /// Whether broker `id` returned less than `leader_return_delay` ago (its preferred
    /// leadership is not given back yet).
    fn held(&self, id: i32, now: Instant) -> bool {
        self.returned
            .get(&id)
            .is_some_and(|at| now < *at + self.cfg.leader_return_delay)
    }

    /// When the next returned broker's hold ends (still in the future), if any.
    fn next_handback(&self) -> Option<Instant> {
        if !self.cfg.auto_rebalance {
            return None;
        }
        let now = Instant::now();
        self.returned
            .values()
            .map(|at| *at + self.cfg.leader_return_delay)
            .filter(|h| *h > now)
            .min()
    }

    /// A session state seen by the state watcher or a watch. The state watcher only keeps the
    /// latest state, so a short disconnection can show as a bare `SyncConnected`: every
    /// connection counts as a reconnection.
    fn session_state(&mut self, s: zk::SessionState) {
        match s {
            zk::SessionState::Disconnected => {
                if self.connected {
                    // Writes would fail anyway; wait for the session to come back.
                    debug!("controller disconnected from the coordinator");
                }
                self.connected = false;
            }
            zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                // zookeeper-client 0.11.2 does not re-arm persistent watches on the new
                // connection (it resends them with a SetWatches request that cannot carry
                // them), and events during the disconnection may be lost (ZOOKEEPER-4698):
                // set the watches again, then read everything.
                self.connected = true;
                self.rewatch = true;
                self.full_reload = true;
                self.verify = true;
            }
            // Terminal states end `act` through the state watcher.
            _ => {}
        }
    }

    /// Sets the watches again when a reconnection asked for it, then runs a pass.
    async fn rearm_then_pass(&mut self, watches: &mut Watches) -> Result<(), Halt> {
        if self.rewatch {
            // The new watchers exist before the old ones go, so the client keeps the watches
            // on the server (it removes one only with its last watcher).
            *watches = Watches::set(self.client).await?;
            self.rewatch = false;
            debug!("controller watches set again after a reconnection");
        }
        self.pass().await
    }

    fn note(&mut self, ev: zk::WatchedEvent) {
        if ev.event_type == zk::EventType::Session {
            // Every watcher gets every session change, in order (unlike the state watcher).
            self.session_state(ev.session_state);
            return;
        }
        match tree::classify(&ev.path) {
            Target::Controller => self.verify = true,
            Target::Broker(id) => {
                self.dirty.insert(TargetKey::Broker(id));
            }
            Target::Topic(t) => {
                self.dirty.insert(TargetKey::Topic(t));
            }
            Target::Deletion(t) => {
                self.dirty.insert(TargetKey::Deletion(t));
            }
            Target::Shutdown(id) => {
                self.dirty.insert(TargetKey::Shutdown(id));
            }
            Target::Reassign => {
                self.dirty.insert(TargetKey::Reassign);
            }
            Target::Other => {}
        }
    }

    /// Brings the tree copy up to date, then decides and writes.
    async fn pass(&mut self) -> Result<(), Halt> {
        if self.verify || self.full_reload {
            if !fence::still_controller(self.client, &self.epoch).await? {
                return Err(Halt::Deposed);
            }
            self.verify = false;
        }
        if self.full_reload {
            let fresh = Tree::load(self.client).await?;
            if self.loaded {
                for (id, czxid) in &fresh.brokers {
                    self.saw_broker(*id, Some(*czxid));
                }
                let gone: Vec<i32> = self
                    .tree
                    .brokers
                    .keys()
                    .filter(|id| !fresh.brokers.contains_key(id))
                    .copied()
                    .collect();
                for id in gone {
                    self.saw_broker(id, None);
                }
            }
            let brokers: Vec<i32> = fresh.brokers.keys().copied().collect();
            let shutdowns: Vec<i32> = fresh.shutdowns.keys().copied().collect();
            if self.loaded {
                debug!(
                    ?brokers,
                    topics = fresh.topics.len(),
                    "controller re-read the cluster state"
                );
            } else {
                info!(
                    ?brokers,
                    topics = fresh.topics.len(),
                    pending_deletions = fresh.deletions.len(),
                    controlled_shutdowns = ?shutdowns,
                    "controller read the cluster state"
                );
            }
            self.tree = fresh;
            self.loaded = true;
            self.full_reload = false;
            self.dirty.clear();
        } else {
            for key in std::mem::take(&mut self.dirty) {
                self.refresh(key).await?;
            }
        }
        self.reconcile().await
    }

    /// Records a broker's current znode (`None` = gone), noting returns and restarts.
    fn saw_broker(&mut self, id: i32, czxid: Option<i64>) {
        let before = self.tree.brokers.get(&id).copied();
        match (before, czxid) {
            (None, Some(c)) => {
                info!(broker = id, "broker registered");
                self.returned.insert(id, Instant::now());
                self.tree.brokers.insert(id, c);
            }
            (Some(b), Some(c)) if b != c => {
                info!(broker = id, "broker re-registered (restarted)");
                self.bounced.insert(id);
                self.returned.insert(id, Instant::now());
                self.tree.brokers.insert(id, c);
            }
            (Some(_), None) => {
                info!(broker = id, "broker gone");
                self.tree.brokers.remove(&id);
            }
            _ => {}
        }
    }

    async fn refresh(&mut self, key: TargetKey) -> Result<(), zk::Error> {
        match key {
            TargetKey::Broker(id) => {
                let c = tree::czxid(self.client, &layout::broker_path(id)).await?;
                self.saw_broker(id, c);
            }
            TargetKey::Topic(name) => self.reload_topic(&name).await?,
            TargetKey::Deletion(name) => {
                if tree::czxid(self.client, &layout::delete_topic_path(&name))
                    .await?
                    .is_some()
                {
                    if self.tree.deletions.insert(name.clone()) {
                        info!(topic = %name, "topic deletion requested");
                    }
                } else {
                    self.tree.deletions.remove(&name);
                }
            }
            TargetKey::Shutdown(id) => {
                match tree::czxid(self.client, &layout::controlled_shutdown_path(id)).await? {
                    Some(c) => {
                        if self.tree.shutdowns.insert(id, c) != Some(c) {
                            info!(broker = id, "controlled shutdown requested");
                        }
                    }
                    None => {
                        self.tree.shutdowns.remove(&id);
                        self.shutdowns_done.remove(&id);
                    }
                }
            }
            TargetKey::Reassign => self.reload_reassignments().await?,
        }
        Ok(())
    }

    async fn reload_reassignments(&mut self) -> Result<(), zk::Error> {
        let (entries, version) = tree::load_reassignments(self.client).await?;
        if !entries.is_empty() && entries != self.tree.reassign {
            info!(requests = entries.len(), "partition reassignment requested");
        }
        self.tree.reassign = entries;
        self.tree.reassign_version = version;
        Ok(())
    }

    async fn reload_topic(&mut self, name: &str) -> Result<(), zk::Error> {
        match tree::load_topic(self.client, name).await? {
            Some(t) => {
                self.tree.topics.insert(name.to_string(), t);
            }
            None => {
                self.tree.topics.remove(name);
            }
        }
        Ok(())
    }

    /// Decides and writes until nothing is left to do (or `MAX_ROUNDS`).
    async fn reconcile(&mut self) -> Result<(), Halt> {
        // A restart is acted on once: afterwards the broker is simply live.
        let bounced = std::mem::take(&mut self.bounced);
        for round in 0..MAX_ROUNDS {
            let bounced = if round == 0 {
                bounced.clone()
            } else {
                BTreeSet::new()
            };
            let actions = self.plan(&bounced).await?;
            if actions.is_empty() {
                break;
            }
            for action in actions {
                self.execute(action).await?;
            }
        }
        if self.rebalance_due {
            self.rebalance_due = false;
            // Returned brokers whose hold has passed had their pass; the periodic check looks
            // after them from now on.
            let now = Instant::now();
            let delay = self.cfg.leader_return_delay;
            self.returned.retain(|_, at| now < *at + delay);
        }
        for (id, czxid) in &self.tree.shutdowns {
            self.shutdowns_done.insert(*id, *czxid);
        }
        self.cfg
            .metrics
            .set_offline_partitions(self.offline_partitions());
        Ok(())
    }

    /// Partitions with no live leader (including those that could not get a first state
    /// because no replica is alive), topics pending deletion left out.
    fn offline_partitions(&self) -> usize {
        let live = self.tree.live();
        self.tree
            .topics
            .iter()
            .filter(|(name, _)| !self.tree.deletions.contains(*name))
            .map(|(_, t)| {
                t.assignment
                    .keys()
                    .filter(|p| match t.states.get(p) {
                        Some((s, _)) => s.leader < 0 || !live.contains(&s.leader),
                        None => true,
                    })
                    .count()
            })
            .sum()
    }

    /// Everything that should change, given the tree copy.
    async fn plan(&self, bounced: &BTreeSet<i32>) -> Result<Vec<Action>, zk::Error> {
        let live = self.tree.live();
        let shutting_down: BTreeSet<i32> = self
            .tree
            .shutdowns
            .keys()
            .filter(|id| live.contains(id))
            .copied()
            .collect();
        let alive = Liveness {
            live: &live,
            shutting_down: &shutting_down,
        };
        let live_before_restart: BTreeSet<i32> = live.difference(bounced).copied().collect();
        let before_restart = Liveness {
            live: &live_before_restart,
            shutting_down: &shutting_down,
        };
        let mut actions: Vec<Action> = self
            .tree
            .deletions
            .iter()
            .map(|t| Action::Delete(t.clone()))
            .collect();
        let (requests, dropped) = self.reassign_requests(&live);
        if !dropped.is_empty() {
            actions.push(Action::DropRequests(dropped));
        }
        let mut unclean_memo: BTreeMap<&str, bool> = BTreeMap::new();
        // The periodic check acts only for brokers over the imbalance threshold (judged on the
        // states as read); a returned broker gets its partitions back regardless, once its hold
        // has passed; a broker still held is left out of the periodic check too.
        let now = Instant::now();
        let held = |b: i32| self.held(b, now);
        let imbalanced = if self.cfg.auto_rebalance && self.rebalance_due {
            decisions::imbalanced_brokers(
                self.tree
                    .topics
                    .iter()
                    .filter(|(name, _)| !self.tree.deletions.contains(*name))
                    .flat_map(|(_, t)| {
                        t.states.iter().filter_map(|(p, (s, _))| {
                            t.assignment.get(p).map(|r| (r.as_slice(), s.leader))
                        })
                    }),
                self.cfg.imbalance_percentage,
            )
            .into_iter()
            .filter(|b| !held(*b))
            .collect()
        } else {
            BTreeSet::new()
        };
        for (name, t) in &self.tree.topics {
            if self.tree.deletions.contains(name) {
                continue;
            }
            let states: Vec<(i32, bool, LeaderAndIsr)> = t
                .assignment
                .iter()
                .filter(|(p, _)| !t.states.contains_key(p))
                .filter_map(|(p, replicas)| {
                    decisions::initial_state(replicas, alive)
                        .map(|s| (*p, !t.partition_nodes.contains(p), s))
                })
                .collect();
            // Chunked: one transaction must stay well below the coordinator's request limit.
            for (i, chunk) in states.chunks(MAX_OPS_PER_MULTI / 2).enumerate() {
                actions.push(Action::Create {
                    topic: name.clone(),
                    topic_version: t.version,
                    create_dir: i == 0 && !t.partitions_dir,
                    states: chunk.to_vec(),
                });
            }
            let mut writes: Vec<StateWrite> = Vec::new();
            let mut moves: Vec<(i32, Assignment, Assignment)> = Vec::new();
            let mut consumed: Vec<(String, i32)> = Vec::new();
            for (p, (state, version)) in &t.states {
                let Some(replicas) = t.assignment.get(p) else {
                    continue;
                };
                let mut cur = state.clone();
                let mut reasons = Vec::new();
                // The step that last moved leadership to a live replica names the election.
                let mut elected_by = None;
                let mut apply = |c: Option<Change>, cur: &mut LeaderAndIsr| {
                    if let Some(c) = c {
                        if c.state.leader >= 0 && c.state.leader != cur.leader {
                            elected_by = Some(c.reason);
                        }
                        *cur = c.state;
                        reasons.push(c.reason);
                    }
                };
                if !bounced.is_empty()
                    && (bounced.contains(&cur.leader)
                        || cur.isr.iter().any(|r| bounced.contains(r)))
                {
                    apply(
                        decisions::reelect(replicas, &cur, before_restart, false),
                        &mut cur,
                    );
                }
                let unclean = if decisions::unclean_would_help(replicas, &cur, alive) {
                    match unclean_memo.get(name.as_str()) {
                        Some(u) => *u,
                        None => {
                            let u = unclean_allowed(self.client, self.cfg, name).await?;
                            unclean_memo.insert(name, u);
                            u
                        }
                    }
                } else {
                    false
                };
                apply(decisions::reelect(replicas, &cur, alive, unclean), &mut cur);
                for (b, czxid) in &self.tree.shutdowns {
                    if !live.contains(b) {
                        continue;
                    }
                    let drop_follower = self.shutdowns_done.get(b) != Some(czxid);
                    apply(
                        decisions::controlled_shutdown(replicas, &cur, *b, alive, drop_follower),
                        &mut cur,
                    );
                }
                let preferred = replicas.first().copied().unwrap_or(-1);
                if self.cfg.auto_rebalance
                    && (imbalanced.contains(&preferred)
                        || (self.returned.contains_key(&preferred) && !held(preferred)))
                {
                    apply(
                        decisions::preferred_election(replicas, &cur, alive),
                        &mut cur,
                    );
                }
                // Reassignment: begin a requested move (phase 1), then complete any move in
                // progress whose target replicas are all in sync (phase 2).
                let current = Assignment {
                    replicas: replicas.clone(),
                    adding: t.adding.get(p).cloned().unwrap_or_default(),
                    removing: t.removing.get(p).cloned().unwrap_or_default(),
                };
                let mut next = current.clone();
                if let Some(request) = requests.get(&(name.clone(), *p)) {
                    let target = request.clone().unwrap_or_else(|| current.original());
                    let begun = reassign::begin(&current, &target);
                    match reassign::fit_state(&begun.replicas, &cur, alive) {
                        Ok(fitted) => {
                            if let Some(s) = fitted {
                                if s.leader >= 0 && s.leader != cur.leader {
                                    elected_by = Some(Reason::Reassignment);
                                }
                                cur = s;
                                reasons.push(Reason::Reassignment);
                            }
                            next = begun;
                            consumed.push((name.clone(), *p));
                        }
                        Err(e) => warn!(
                            topic = %name,
                            partition = p,
                            target = ?target,
                            error = %e,
                            "partition reassignment cannot begin yet"
                        ),
                    }
                }
                if let Some((done, s)) = reassign::complete(&next, &cur, alive) {
                    if s.leader != cur.leader {
                        elected_by = Some(Reason::Reassignment);
                    }
                    if s != cur {
                        reasons.push(Reason::Reassignment);
                    }
                    cur = s;
                    next = done;
                }
                if next != current {
                    moves.push((*p, current, next));
                }
                if cur != *state {
                    let election = elected_by.and_then(|r| election_kind(state, &cur, r));
                    writes.push(StateWrite {
                        partition: *p,
                        old: state.clone(),
                        new: cur,
                        version: *version,
                        reasons,
                        election,
                    });
                }
            }
            // A consumed request with nothing to change (its target is the assignment already)
            // still goes through the topic's transaction, to leave the request znode.
            match (moves.is_empty() && consumed.is_empty(), &t.znode) {
                (false, Some(z)) => {
                    let mut znode = z.clone();
                    for (p, _, a) in &moves {
                        let key = p.to_string();
                        znode.partitions.insert(key.clone(), a.replicas.clone());
                        if a.adding.is_empty() {
                            znode.adding_replicas.remove(&key);
                        } else {
                            znode.adding_replicas.insert(key.clone(), a.adding.clone());
                        }
                        if a.removing.is_empty() {
                            znode.removing_replicas.remove(&key);
                        } else {
                            znode.removing_replicas.insert(key, a.removing.clone());
                        }
                    }
                    actions.push(Action::Reassign {
                        topic: name.clone(),
                        topic_version: t.version,
                        znode,
                        moves,
                        states: writes,
                        consumed,
                    });
                }
                _ => {
                    actions.extend(writes.into_iter().map(|write| Action::Set {
                        topic: name.clone(),
                        write,
                    }));
                }
            }
        }
        Ok(actions)
    }

    /// The pending reassignment requests to act on ((topic, partition) → target, `None` =
    /// cancel), and those to drop with the reason: unknown topic or partition, topic being
    /// deleted, invalid target, or a cancellation with nothing in progress. A later entry for
    /// the same partition replaces an earlier one.
    #[allow(clippy::type_complexity)]
    fn reassign_requests(
        &self,
        registered: &BTreeSet<i32>,
    ) -> (
        BTreeMap<(String, i32), Option<Vec<i32>>>,
        Vec<((String, i32), String)>,
    ) {
        let mut valid = BTreeMap::new();
        let mut dropped = Vec::new();
        for e in &self.tree.reassign {
            let key = (e.topic.clone(), e.partition);
            let t = self.tree.topics.get(&e.topic);
            let problem = if self.tree.deletions.contains(&e.topic) {
                Some("the topic is being deleted".to_string())
            } else if !t.is_some_and(|t| t.assignment.contains_key(&e.partition)) {
                Some("unknown topic or partition".to_string())
            } else {
                match &e.replicas {
                    Some(target) => reassign::validate(target, registered)
                        .err()
                        .map(|err| err.to_string()),
                    None => {
                        let moving = t.is_some_and(|t| {
                            t.adding.contains_key(&e.partition)
                                || t.removing.contains_key(&e.partition)
                        });
                        (!moving).then(|| "no reassignment in progress to cancel".to_string())
                    }
                }
            };
            valid.remove(&key);
            dropped.retain(|(k, _)| *k != key);
            match problem {
                Some(reason) => dropped.push((key, reason)),
                None => {
                    valid.insert(key, e.replicas.clone());
                }
            }
        }
        (valid, dropped)
    }

    async fn execute(&mut self, action: Action) -> Result<(), Halt> {
        match action {
            Action::Set {
                topic,
                write:
                    StateWrite {
                        partition,
                        old,
                        new,
                        version,
                        reasons,
                        election,
                    },
            } => {
                let r = fence::set_partition_state(
                    self.client,
                    &self.epoch,
                    &topic,
                    partition,
                    &new,
                    version,
                )
                .await;
                match r {
                    Ok(v) => {
                        log_change(&topic, partition, &old, &new, &reasons, self.epoch.value);
                        if let Some(kind) = election {
                            self.cfg.metrics.leader_elected(kind);
                        }
                        if let Some(t) = self.tree.topics.get_mut(&topic) {
                            t.states.insert(partition, (new, v));
                        }
                        Ok(())
                    }
                    Err(e) => self.write_failed(e, &topic).await,
                }
            }
            Action::Create {
                topic,
                topic_version,
                create_dir,
                states,
            } => {
                let mut w = FencedWrite::new(self.client, &self.epoch)?;
                w.check(&layout::topic_path(&topic), topic_version)?;
                if create_dir {
                    w.create(&layout::partitions_path(&topic), b"")?;
                }
                for (p, create_node, s) in &states {
                    if *create_node {
                        w.create(&layout::partition_path(&topic, *p), b"")?;
                    }
                    w.create(
                        &layout::partition_state_path(&topic, *p),
                        &fence::state_znode(&self.epoch, s),
                    )?;
                }
                match w.commit().await {
                    Ok(_) => {
                        let t = self.tree.topics.entry(topic.clone()).or_default();
                        t.partitions_dir = true;
                        for (p, _, s) in states {
                            info!(
                                topic = %topic,
                                partition = p,
                                old_leader = -1,
                                new_leader = s.leader,
                                leader_epoch = s.leader_epoch,
                                isr = ?s.isr,
                                controller_epoch = self.epoch.value,
                                reason = %Reason::NewPartition,
                                "partition state created"
                            );
                            t.partition_nodes.insert(p);
                            t.states.insert(p, (s, 0));
                        }
                        Ok(())
                    }
                    Err(e) => self.write_failed(e, &topic).await,
                }
            }
            Action::Delete(topic) => self.delete_topic(&topic).await,
            Action::DropRequests(dropped) => {
                let keys: Vec<(String, i32)> = dropped.iter().map(|(k, _)| k.clone()).collect();
                let mut w = FencedWrite::new(self.client, &self.epoch)?;
                self.consume_requests(&mut w, &keys)?;
                match w.commit().await {
                    Ok(_) => {
                        for ((topic, partition), reason) in dropped {
                            warn!(
                                topic,
                                partition, reason, "partition reassignment request dropped"
                            );
                        }
                        self.reload_reassignments().await?;
                        Ok(())
                    }
                    Err(WriteError::Conflict { op, source }) => {
                        debug!(op, error = %source, "reassignment request changed meanwhile");
                        self.reload_reassignments().await?;
                        Ok(())
                    }
                    Err(e) => self.write_failed(e, "").await,
                }
            }
            Action::Reassign {
                topic,
                topic_version,
                znode,
                moves,
                states,
                consumed,
            } => {
                let mut w = FencedWrite::new(self.client, &self.epoch)?;
                w.set(
                    &layout::topic_path(&topic),
                    &layout::encode(&znode),
                    topic_version,
                )?;
                for s in &states {
                    w.set(
                        &layout::partition_state_path(&topic, s.partition),
                        &fence::state_znode(&self.epoch, &s.new),
                        s.version,
                    )?;
                }
                self.consume_requests(&mut w, &consumed)?;
                match w.commit().await {
                    Ok(_) => {
                        for (p, old, new) in &moves {
                            let phase = if new.in_progress() {
                                "partition reassignment began"
                            } else if old.in_progress() {
                                "partition reassignment completed"
                            } else {
                                "partition replicas reordered"
                            };
                            info!(
                                topic = %topic,
                                partition = p,
                                old_replicas = ?old.replicas,
                                replicas = ?new.replicas,
                                adding = ?new.adding,
                                removing = ?new.removing,
                                controller_epoch = self.epoch.value,
                                "{phase}"
                            );
                        }
                        for s in &states {
                            log_change(
                                &topic,
                                s.partition,
                                &s.old,
                                &s.new,
                                &s.reasons,
                                self.epoch.value,
                            );
                            if let Some(kind) = s.election {
                                self.cfg.metrics.leader_elected(kind);
                            }
                        }
                        self.reload_topic(&topic).await?;
                        if !consumed.is_empty() {
                            self.reload_reassignments().await?;
                        }
                        Ok(())
                    }
                    Err(WriteError::Conflict { op, source }) => {
                        debug!(topic, op, error = %source, "reassignment write lost a race; re-reading");
                        self.reload_topic(&topic).await?;
                        self.reload_reassignments().await?;
                        Ok(())
                    }
                    Err(e) => self.write_failed(e, &topic).await,
                }
            }
        }
    }

    /// Adds to `w` the removal of `keys` from `/admin/reassign_partitions` (the znode goes when
    /// nothing is left), checked against the version read.
    fn consume_requests(
        &self,
        w: &mut FencedWrite<'_>,
        keys: &[(String, i32)],
    ) -> Result<(), zk::Error> {
        let Some(version) = self.tree.reassign_version else {
            return Ok(());
        };
        if keys.is_empty() {
            return Ok(());
        }
        let left: Vec<_> = self
            .tree
            .reassign
            .iter()
            .filter(|e| !keys.contains(&(e.topic.clone(), e.partition)))
            .cloned()
            .collect();
        if left.is_empty() {
            w.delete(layout::REASSIGN_PARTITIONS, version)
        } else {
            w.set(
                layout::REASSIGN_PARTITIONS,
                &layout::encode(&ReassignmentZnode {
                    version: 1,
                    partitions: left,
                }),
                version,
            )
        }
    }

    /// A write that lost: deposed ends the pass; a conflict re-reads the topic for the next round.
    async fn write_failed(&mut self, e: WriteError, topic: &str) -> Result<(), Halt> {
        match e {
            WriteError::Deposed => Err(Halt::Deposed),
            WriteError::Conflict { op, source } => {
                debug!(topic, op, error = %source, "controller write lost a race; re-reading");
                self.reload_topic(topic).await?;
                Ok(())
            }
            WriteError::Coordinator(e) => Err(e.into()),
        }
    }

    /// Deletes the topic's znodes (states, partitions, the topic, its config) and then the
    /// request, in one transaction; read fresh so nothing unexpected blocks it.
    async fn delete_topic(&mut self, topic: &str) -> Result<(), Halt> {
        let nodes = tree::subtree_post_order(self.client, &layout::topic_path(topic)).await?;
        let config = self
            .client
            .check_stat(&layout::topic_config_path(topic))
            .await?;
        let request = self
            .client
            .check_stat(&layout::delete_topic_path(topic))
            .await?;
        let mut ops: Vec<(String, i32)> = nodes.clone();
        if let Some(s) = config {
            ops.push((layout::topic_config_path(topic), s.version));
        }
        if let Some(s) = request {
            ops.push((layout::delete_topic_path(topic), s.version));
        }
        // Children come before parents, so the chunks can go one after another; a big topic
        // takes several transactions, the request going last.
        for chunk in ops.chunks(MAX_OPS_PER_MULTI) {
            let mut w = FencedWrite::new(self.client, &self.epoch)?;
            for (path, version) in chunk {
                w.delete(path, *version)?;
            }
            match w.commit().await {
                Ok(_) => {}
                Err(WriteError::Conflict { op, source }) => {
                    // Something changed under the topic meanwhile; the next round reads it again.
                    debug!(topic, op, error = %source, "topic deletion lost a race; retrying");
                    return Ok(());
                }
                Err(e) => return self.write_failed(e, topic).await,
            }
        }
        info!(
            topic,
            znodes = nodes.len(),
            controller_epoch = self.epoch.value,
            "topic deleted"
        );
        self.tree.topics.remove(topic);
        self.tree.deletions.remove(topic);
        Ok(())
    }
}

/// The election a decided change amounts to, named as `metrics::ELECTION_REASONS` has it, given
/// the step that last moved leadership (`None` when, in the end, the leader is unchanged or
/// the partition is offline).
fn election_kind(old: &LeaderAndIsr, new: &LeaderAndIsr, by: Reason) -> Option<&'static str> {
    if new.leader < 0 || new.leader == old.leader {
        return None;
    }
    match by {
        Reason::OfflinePartition => Some("clean"),
        Reason::UncleanElection => Some("unclean"),
        Reason::ControlledShutdown => Some("controlled_shutdown"),
        Reason::PreferredReplica => Some("preferred"),
        Reason::Reassignment => Some("reassignment"),
        Reason::NewPartition | Reason::NoLeader | Reason::IsrShrink => None,
    }
}

fn log_change(
    topic: &str,
    partition: i32,
    old: &LeaderAndIsr,
    new: &LeaderAndIsr,
    reasons: &[Reason],
    controller_epoch: i32,
) {
    let reason = reasons
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",");
    if new.leader == old.leader {
        info!(
            topic,
            partition,
            leader = new.leader,
            leader_epoch = new.leader_epoch,
            old_isr = ?old.isr,
            isr = ?new.isr,
            controller_epoch,
            reason,
            "partition ISR changed by the controller"
        );
    } else if new.leader < 0 {
        warn!(
            topic,
            partition,
            old_leader = old.leader,
            new_leader = new.leader,
            leader_epoch = new.leader_epoch,
            isr = ?new.isr,
            controller_epoch,
            reason,
            "partition offline: no in-sync replica is alive"
        );
    } else {
        info!(
            topic,
            partition,
            old_leader = old.leader,
            new_leader = new.leader,
            leader_epoch = new.leader_epoch,
            old_isr = ?old.isr,
            isr = ?new.isr,
            controller_epoch,
            reason,
            "leader election"
        );
    }
}

/// `unclean.leader.election.enable` for `topic`: its topic config, else the dynamic cluster
/// default, else the flag.
async fn unclean_allowed(
    client: &zk::Client,
    cfg: &ControllerConfig,
    topic: &str,
) -> Result<bool, zk::Error> {
    for path in [
        layout::topic_config_path(topic),
        layout::broker_config_path(None),
    ] {
        match client.get_data(&path).await {
            Ok((data, _)) => match layout::decode::<ConfigZnode>(&path, &data) {
                Ok(c) => {
                    if let Some(v) = c.config.get(UNCLEAN_LEADER_ELECTION_ENABLE) {
                        return Ok(v.trim().eq_ignore_ascii_case("true"));
                    }
                }
                Err(e) => warn!(error = %e, "ignoring a malformed config znode"),
            },
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(cfg.unclean_default)
}

/// Compile-time check: the broker spawns `run` on the multi-threaded runtime.
#[cfg(test)]
#[allow(dead_code)]
fn run_future_is_send(
    client: zk::Client,
    cfg: ControllerConfig,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    run(client, cfg, stop)
}
