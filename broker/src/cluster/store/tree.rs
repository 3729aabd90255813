//! The broker's copy of the coordinator tree (decoded znodes), how it is read — all of it, or
//! just what a watch event names — and how it becomes a [`ClusterView`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;
use zookeeper_client as zk;

use crate::cluster::zk_layout::{
    self as layout, BrokerZnode, ClusterIdZnode, ConfigZnode, ControllerZnode, PartitionStateZnode,
    TopicZnode,
};
use crate::metadata::{BrokerMeta, ClusterView, PartitionMeta, TopicMeta};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEntry {
    pub id: Uuid,
    /// Replicas per partition, index = partition id.
    pub assignment: Vec<Vec<i32>>,
    pub internal: bool,
    /// Partitions being reassigned → replicas being added / removed.
    pub adding: BTreeMap<i32, Vec<i32>>,
    pub removing: BTreeMap<i32, Vec<i32>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub state: PartitionStateZnode,
    /// The znode version: the partition epoch.
    pub version: i32,
    /// Creation zxid, to tell a re-created znode from an old read of the previous one.
    pub czxid: i64,
}

/// Decoded contents of the coordinator tree that the view is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub cluster_id: String,
    pub controller: i32,
    pub brokers: BTreeMap<i32, BrokerMeta>,
    pub topics: BTreeMap<String, TopicEntry>,
    pub states: BTreeMap<String, BTreeMap<i32, StateEntry>>,
    pub topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Keyed by entity name: `<default>` or a broker id.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Brokers with a pending controlled-shutdown request.
    pub shutting_down: BTreeSet<i32>,
}

/// Something in the tree that one watch event asks to re-read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    ClusterId,
    Controller,
    Broker(i32),
    Topic(String),
    State(String, i32),
    TopicConfig(String),
    BrokerConfig(String),
    ShuttingDown(i32),
}

/// Which part of the tree a changed path belongs to; `None` for paths the view does not use.
pub fn classify(path: &str) -> Option<Key> {
    if path == layout::CLUSTER_ID {
        return Some(Key::ClusterId);
    }
    if path == layout::CONTROLLER {
        return Some(Key::Controller);
    }
    let child = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
    };
    if let Some(rest) = child(layout::BROKER_IDS) {
        return rest.parse().ok().map(Key::Broker);
    }
    if let Some(rest) = child(layout::CONTROLLED_SHUTDOWN) {
        return rest.parse().ok().map(Key::ShuttingDown);
    }
    if let Some(rest) = child(layout::TOPICS) {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            [topic] => Some(Key::Topic(topic.to_string())),
            [topic, "partitions", p, "state"] => {
                p.parse().ok().map(|p| Key::State(topic.to_string(), p))
            }
            _ => None,
        };
    }
    if let Some(rest) = child(layout::CONFIG_TOPICS) {
        return (!rest.contains('/')).then(|| Key::TopicConfig(rest.to_string()));
    }
    if let Some(rest) = child(layout::CONFIG_BROKERS) {
        return (!rest.contains('/')).then(|| Key::BrokerConfig(rest.to_string()));
    }
    None
}

/// `get_data`, with a missing node as `None`.
async fn get(client: &zk::Client, path: &str) -> Result<Option<(Vec<u8>, zk::Stat)>, zk::Error> {
    match client.get_data(path).await {
        Ok(x) => Ok(Some(x)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn children(client: &zk::Client, path: &str) -> Result<Vec<String>, zk::Error> {
    match client.list_children(path).await {
        Ok(x) => Ok(x),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Decodes, logging (not failing on) malformed data: one bad znode must not blind the broker.
fn decode<T: serde::de::DeserializeOwned>(path: &str, data: &[u8]) -> Option<T> {
    match layout::decode(path, data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring malformed znode");
            None
        }
    }
}

pub fn broker_meta(id: i32, z: BrokerZnode) -> BrokerMeta {
    BrokerMeta {
        id,
        host: z.host,
        port: z.port,
        rack: z.rack,
        endpoints: z
            .endpoints
            .iter()
            .filter_map(|e| crate::security::listeners::ListenerEndpoint::parse(e).ok())
            .collect(),
    }
}

fn topic_entry(path: &str, z: TopicZnode) -> Option<TopicEntry> {
    let Ok(id) = Uuid::parse_str(&z.topic_id) else {
        tracing::warn!(path, topic_id = %z.topic_id, "ignoring topic with a malformed id");
        return None;
    };
    let mut parts: Vec<(i32, Vec<i32>)> = Vec::with_capacity(z.partitions.len());
    for (p, replicas) in z.partitions {
        let Ok(p) = p.parse::<i32>() else {
            tracing::warn!(path, partition = %p, "ignoring topic with a malformed partition id");
            return None;
        };
        parts.push((p, replicas));
    }
    parts.sort_by_key(|(p, _)| *p);
    if parts.iter().enumerate().any(|(i, (p, _))| *p != i as i32) {
        tracing::warn!(
            path,
            "ignoring topic whose partitions are not numbered 0..n"
        );
        return None;
    }
    let moving = |m: BTreeMap<String, Vec<i32>>| -> BTreeMap<i32, Vec<i32>> {
        m.into_iter()
            .filter(|(_, r)| !r.is_empty())
            .filter_map(|(p, r)| p.parse().ok().map(|p| (p, r)))
            .collect()
    };
    Some(TopicEntry {
        id,
        assignment: parts.into_iter().map(|(_, r)| r).collect(),
        internal: z.internal,
        adding: moving(z.adding_replicas),
        removing: moving(z.removing_replicas),
    })
}

impl Tree {
    /// Reads everything the view needs.
    pub async fn read_all(client: &zk::Client) -> Result<Tree, zk::Error> {
        let mut t = Tree {
            controller: -1,
            ..Default::default()
        };
        t.refresh(client, Key::ClusterId).await?;
        t.refresh(client, Key::Controller).await?;
        let ids = children(client, layout::BROKER_IDS).await?;
        let pending: Vec<_> = ids
            .iter()
            .filter_map(|s| s.parse::<i32>().ok())
            .map(|id| (id, client.get_data(&layout::broker_path(id))))
            .collect();
        for (id, f) in pending {
            match f.await {
                Ok((data, _)) => {
                    let path = layout::broker_path(id);
                    if let Some(z) = decode::<BrokerZnode>(&path, &data) {
                        t.brokers.insert(id, broker_meta(id, z));
                    }
                }
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        for topic in children(client, layout::TOPICS).await? {
            t.refresh(client, Key::Topic(topic)).await?;
        }
        for topic in children(client, layout::CONFIG_TOPICS).await? {
            t.refresh(client, Key::TopicConfig(topic)).await?;
        }
        for entity in children(client, layout::CONFIG_BROKERS).await? {
            t.refresh(client, Key::BrokerConfig(entity)).await?;
        }
        t.shutting_down = children(client, layout::CONTROLLED_SHUTDOWN)
            .await?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        Ok(t)
    }

    /// Re-reads one part of the tree.
    pub async fn refresh(&mut self, client: &zk::Client, key: Key) -> Result<(), zk::Error> {
        match key {
            Key::ClusterId => {
                self.cluster_id = get(client, layout::CLUSTER_ID)
                    .await?
                    .and_then(|(d, _)| decode::<ClusterIdZnode>(layout::CLUSTER_ID, &d))
                    .map(|z| z.id)
                    .unwrap_or_default();
            }
            Key::Controller => {
                self.controller = get(client, layout::CONTROLLER)
                    .await?
                    .and_then(|(d, _)| decode::<ControllerZnode>(layout::CONTROLLER, &d))
                    .map(|z| z.brokerid)
                    .unwrap_or(-1);
            }
            Key::Broker(id) => {
                let path = layout::broker_path(id);
                match get(client, &path)
                    .await?
                    .and_then(|(d, _)| decode::<BrokerZnode>(&path, &d))
                {
                    Some(z) => {
                        self.brokers.insert(id, broker_meta(id, z));
                    }
                    None => {
                        self.brokers.remove(&id);
                    }
                }
            }
            Key::Topic(topic) => {
                let path = layout::topic_path(&topic);
                let entry = get(client, &path)
                    .await?
                    .and_then(|(d, _)| decode::<TopicZnode>(&path, &d))
                    .and_then(|z| topic_entry(&path, z));
                match entry {
                    Some(entry) => {
                        // The states follow the topic znode; read them all (pipelined) so that a
                        // topic seen for the first time, or grown, is complete at once.
                        let n = entry.assignment.len() as i32;
                        if self.topics.get(&topic).map(|e| e.id) != Some(entry.id) {
                            self.states.remove(&topic);
                        }
                        self.topics.insert(topic.clone(), entry);
                        let pending: Vec<_> = (0..n)
                            .map(|p| (p, client.get_data(&layout::partition_state_path(&topic, p))))
                            .collect();
                        for (p, f) in pending {
                            let read = match f.await {
                                Ok(x) => Some(x),
                                Err(zk::Error::NoNode) => None,
                                Err(e) => return Err(e),
                            };
                            self.apply_state(&topic, p, read);
                        }
                    }
                    None => {
                        self.topics.remove(&topic);
                        self.states.remove(&topic);
                    }
                }
            }
            Key::State(topic, p) => {
                let read = get(client, &layout::partition_state_path(&topic, p)).await?;
                self.apply_state(&topic, p, read);
            }
            Key::TopicConfig(topic) => {
                let path = layout::topic_config_path(&topic);
                match get(client, &path)
                    .await?
                    .and_then(|(d, _)| decode::<ConfigZnode>(&path, &d))
                {
                    Some(z) => {
                        self.topic_configs.insert(topic, z.config);
                    }
                    None => {
                        self.topic_configs.remove(&topic);
                    }
                }
            }
            Key::ShuttingDown(id) => {
                if get(client, &layout::controlled_shutdown_path(id))
                    .await?
                    .is_some()
                {
                    self.shutting_down.insert(id);
                } else {
                    self.shutting_down.remove(&id);
                }
            }
            Key::BrokerConfig(entity) => {
                let path = format!("{}/{entity}", layout::CONFIG_BROKERS);
                match get(client, &path)
                    .await?
                    .and_then(|(d, _)| decode::<ConfigZnode>(&path, &d))
                {
                    Some(z) => {
                        self.broker_configs.insert(entity, z.config);
                    }
                    None => {
                        self.broker_configs.remove(&entity);
                    }
                }
            }
        }
        Ok(())
    }

    /// Records a state read (or its absence). A read older than what is cached (same znode and
    /// a lower version, or an earlier znode of a deleted and re-created topic) is dropped: this
    /// broker's own writes are applied as soon as they succeed, and a re-read sent before such a
    /// write may answer after it.
    pub fn apply_state(&mut self, topic: &str, p: i32, read: Option<(Vec<u8>, zk::Stat)>) {
        let path = layout::partition_state_path(topic, p);
        let decoded = read.and_then(|(d, stat)| {
            decode::<PartitionStateZnode>(&path, &d).map(|state| StateEntry {
                state,
                version: stat.version,
                czxid: stat.czxid,
            })
        });
        match decoded {
            Some(entry) => {
                let states = self.states.entry(topic.to_string()).or_default();
                // czxids only grow: a smaller one is a znode that has been deleted since.
                let stale = states.get(&p).is_some_and(|old| {
                    old.czxid > entry.czxid
                        || (old.czxid == entry.czxid && old.version > entry.version)
                });
                if !stale {
                    states.insert(p, entry);
                }
            }
            None => {
                if let Some(states) = self.states.get_mut(topic) {
                    states.remove(&p);
                }
            }
        }
    }

    /// Partitions of `topic` that have a state, as the view shows them: the longest prefix
    /// 0..k of the assignment with states (a partition without state is still being created).
    pub fn partitions(&self, topic: &str) -> Vec<PartitionMeta> {
        let Some(entry) = self.topics.get(topic) else {
            return Vec::new();
        };
        let states = self.states.get(topic);
        let mut out = Vec::with_capacity(entry.assignment.len());
        for (p, replicas) in entry.assignment.iter().enumerate() {
            let Some(s) = states.and_then(|s| s.get(&(p as i32))) else {
                break;
            };
            out.push(PartitionMeta {
                index: p as i32,
                leader: s.state.leader,
                leader_epoch: s.state.leader_epoch,
                replicas: replicas.clone(),
                isr: s.state.isr.clone(),
                partition_epoch: s.version,
            });
        }
        out
    }

    /// True once every partition in the topic's assignment has a state.
    pub fn topic_complete(&self, topic: &str, id: Option<Uuid>) -> bool {
        match self.topics.get(topic) {
            Some(e) if id.is_none_or(|id| id == e.id) => {
                self.partitions(topic).len() == e.assignment.len()
            }
            _ => false,
        }
    }

    pub fn build_view(&self, version: u64) -> ClusterView {
        let mut topics = BTreeMap::new();
        for (name, entry) in &self.topics {
            let partitions = self.partitions(name);
            // A topic shows once its first partition has a state (Kafka's metadata likewise
            // only shows partitions the controller has set up).
            if partitions.is_empty() {
                continue;
            }
            topics.insert(
                name.clone(),
                Arc::new(TopicMeta {
                    name: name.clone(),
                    id: entry.id,
                    partitions,
                    configs: self.topic_configs.get(name).cloned().unwrap_or_default(),
                    internal: entry.internal,
                }),
            );
        }
        let mut reassignments = BTreeMap::new();
        for (name, entry) in &self.topics {
            for p in entry.adding.keys().chain(entry.removing.keys()) {
                reassignments.insert(
                    (name.clone(), *p),
                    crate::metadata::Reassigning {
                        adding: entry.adding.get(p).cloned().unwrap_or_default(),
                        removing: entry.removing.get(p).cloned().unwrap_or_default(),
                    },
                );
            }
        }
        let mut broker_configs = BTreeMap::new();
        let mut default_broker_configs = BTreeMap::new();
        for (entity, config) in &self.broker_configs {
            if entity == layout::DEFAULT_BROKER_ENTITY {
                default_broker_configs = config.clone();
            } else if let Ok(id) = entity.parse::<i32>() {
                broker_configs.insert(id, config.clone());
            }
        }
        ClusterView {
            version,
            cluster_id: self.cluster_id.clone(),
            controller_id: self.controller,
            brokers: self.brokers.values().cloned().collect(),
            topics,
            default_broker_configs,
            broker_configs,
            shutting_down: self.shutting_down.clone(),
            reassignments,
        }
    }

    /// Partitions this broker leads whose ISR still has another member (controlled shutdown
    /// waits for none to be left).
    pub fn led_with_other_isr(&self, me: i32) -> BTreeSet<(String, i32)> {
        let mut out = BTreeSet::new();
        for (topic, states) in &self.states {
            for (p, s) in states {
                if s.state.leader == me && s.state.isr.iter().any(|r| *r != me) {
                    out.insert((topic.clone(), *p));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(classify("/brokers/ids/3"), Some(Key::Broker(3)));
        assert_eq!(classify("/brokers/ids"), None);
        assert_eq!(classify("/brokers/ids/x"), None);
        assert_eq!(classify("/brokers/topics/t"), Some(Key::Topic("t".into())));
        assert_eq!(
            classify("/brokers/topics/t/partitions/4/state"),
            Some(Key::State("t".into(), 4))
        );
        assert_eq!(classify("/brokers/topics/t/partitions/4"), None);
        assert_eq!(classify("/controller"), Some(Key::Controller));
        assert_eq!(classify("/controller_epoch"), None);
        assert_eq!(
            classify("/config/brokers/<default>"),
            Some(Key::BrokerConfig("<default>".into()))
        );
        assert_eq!(
            classify("/config/topics/t"),
            Some(Key::TopicConfig("t".into()))
        );
        assert_eq!(classify("/admin/delete_topics/t"), None);
        assert_eq!(
            classify("/admin/controlled_shutdown/2"),
            Some(Key::ShuttingDown(2))
        );
    }

    fn stat(version: i32, czxid: i64) -> zk::Stat {
        zk::Stat {
            czxid,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 0,
            num_children: 0,
        }
    }

    fn state(leader: i32, epoch: i32, isr: Vec<i32>) -> Vec<u8> {
        layout::encode(&PartitionStateZnode {
            version: 1,
            controller_epoch: 1,
            leader,
            leader_epoch: epoch,
            isr,
        })
    }

    #[test]
    fn view_shows_partitions_with_state_and_drops_stale_reads() {
        let mut t = Tree {
            controller: 1,
            ..Default::default()
        };
        let id = Uuid::new_v4();
        t.topics.insert(
            "t".into(),
            TopicEntry {
                id,
                assignment: vec![vec![1, 2], vec![2, 1]],
                internal: false,
                adding: BTreeMap::new(),
                removing: BTreeMap::new(),
            },
        );
        assert!(t.build_view(1).topics.is_empty());
        t.apply_state("t", 0, Some((state(1, 0, vec![1, 2]), stat(0, 10))));
        assert!(!t.topic_complete("t", Some(id)));
        let v = t.build_view(2);
        assert_eq!(v.topics["t"].partitions.len(), 1);
        t.apply_state("t", 1, Some((state(2, 0, vec![2, 1]), stat(0, 11))));
        assert!(t.topic_complete("t", Some(id)));
        assert!(!t.topic_complete("t", Some(Uuid::new_v4())));

        t.apply_state("t", 0, Some((state(1, 0, vec![1]), stat(3, 10))));
        // An older read of the same znode does not undo a newer one...
        t.apply_state("t", 0, Some((state(1, 0, vec![1, 2]), stat(2, 10))));
        let p0 = &t.build_view(3).topics["t"].partitions[0];
        assert_eq!((p0.isr.clone(), p0.partition_epoch), (vec![1], 3));
        // ...but a re-created znode (new czxid) replaces it whatever its version.
        t.apply_state("t", 0, Some((state(2, 5, vec![2]), stat(0, 20))));
        let p0 = &t.build_view(4).topics["t"].partitions[0];
        assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (2, 5, 0));
        // A late read of the znode that was deleted does not come back.
        t.apply_state("t", 0, Some((state(1, 0, vec![1]), stat(4, 10))));
        let p0 = &t.build_view(4).topics["t"].partitions[0];
        assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (2, 5, 0));
        assert_eq!(t.led_with_other_isr(2), BTreeSet::from([("t".into(), 1)]));
        t.apply_state("t", 0, None);
        assert!(t.build_view(5).topics.is_empty());
    }
}
