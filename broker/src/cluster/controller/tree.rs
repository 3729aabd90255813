//! The controller's copy of the parts of the coordinator tree it decides on, read in full on
//! election (and after reconnections) and kept fresh node by node from watch events.

use std::collections::{BTreeMap, BTreeSet};

use tracing::warn;
use zookeeper_client as zk;

use super::decisions::LeaderAndIsr;
use crate::cluster::zk_layout::{
    self as layout, PartitionStateZnode, ReassignmentEntry, ReassignmentZnode, TopicZnode,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicEntry {
    /// Version of the topic znode: state creation checks it, so the assignment used is current.
    pub version: i32,
    /// Partition → replicas (first = preferred leader).
    pub assignment: BTreeMap<i32, Vec<i32>>,
    /// Whether `/brokers/topics/<t>/partitions` exists.
    pub partitions_dir: bool,
    /// Partitions whose `/partitions/<p>` node exists.
    pub partition_nodes: BTreeSet<i32>,
    /// Partition → (state, state znode version).
    pub states: BTreeMap<i32, (LeaderAndIsr, i32)>,
    /// Partitions being reassigned → replicas being added / removed.
    pub adding: BTreeMap<i32, Vec<i32>>,
    pub removing: BTreeMap<i32, Vec<i32>>,
    /// The decoded topic znode, rewritten (fields kept) when an assignment changes.
    pub znode: Option<TopicZnode>,
}

#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Registered brokers → czxid of their ephemeral znode (a new czxid = the broker restarted).
    pub brokers: BTreeMap<i32, i64>,
    pub topics: BTreeMap<String, TopicEntry>,
    /// Topics with a pending `/admin/delete_topics/<t>` request.
    pub deletions: BTreeSet<String>,
    /// Brokers with a pending `/admin/controlled_shutdown/<id>` request → its czxid.
    pub shutdowns: BTreeMap<i32, i64>,
    /// Requested reassignments not yet begun (`/admin/reassign_partitions`).
    pub reassign: Vec<ReassignmentEntry>,
    /// Version of `/admin/reassign_partitions`; `None` when it does not exist.
    pub reassign_version: Option<i32>,
}

/// What a changed path is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Broker(i32),
    /// The topic znode or anything below it: the topic is re-read as a whole.
    Topic(String),
    Deletion(String),
    Shutdown(i32),
    Reassign,
    Controller,
    Other,
}

pub fn classify(path: &str) -> Target {
    if path == layout::CONTROLLER || path == layout::CONTROLLER_EPOCH {
        return Target::Controller;
    }
    if path == layout::REASSIGN_PARTITIONS {
        return Target::Reassign;
    }
    let child = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
        Some(rest.to_string())
    };
    if let Some(rest) = child(layout::BROKER_IDS) {
        return match rest.parse() {
            Ok(id) if !rest.contains('/') => Target::Broker(id),
            _ => Target::Other,
        };
    }
    if let Some(rest) = child(layout::TOPICS) {
        let name = rest.split('/').next().unwrap_or_default();
        return if name.is_empty() {
            Target::Other
        } else {
            Target::Topic(name.to_string())
        };
    }
    if let Some(rest) = child(layout::DELETE_TOPICS) {
        return if rest.is_empty() || rest.contains('/') {
            Target::Other
        } else {
            Target::Deletion(rest)
        };
    }
    if let Some(rest) = child(layout::CONTROLLED_SHUTDOWN) {
        return match rest.parse() {
            Ok(id) => Target::Shutdown(id),
            Err(_) => Target::Other,
        };
    }
    Target::Other
}

/// Children of `path`, empty when it does not exist.
async fn children(client: &zk::Client, path: &str) -> Result<Vec<String>, zk::Error> {
    match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// czxid of `path`, `None` when it does not exist.
pub async fn czxid(client: &zk::Client, path: &str) -> Result<Option<i64>, zk::Error> {
    Ok(client.check_stat(path).await?.map(|s| s.czxid))
}

impl Tree {
    /// Reads everything the controller needs.
    pub async fn load(client: &zk::Client) -> Result<Tree, zk::Error> {
        let mut tree = Tree::default();
        let ids = children(client, layout::BROKER_IDS).await?;
        // Requests are sent as the futures are made, so issuing all of them first pipelines them.
        let reads: Vec<_> = ids
            .iter()
            .filter_map(|s| s.parse::<i32>().ok())
            .map(|id| (id, client.check_stat(&layout::broker_path(id))))
            .collect();
        for (id, read) in reads {
            if let Some(stat) = read.await? {
                tree.brokers.insert(id, stat.czxid);
            }
        }
        for name in children(client, layout::TOPICS).await? {
            if let Some(t) = load_topic(client, &name).await? {
                tree.topics.insert(name, t);
            }
        }
        tree.deletions = children(client, layout::DELETE_TOPICS)
            .await?
            .into_iter()
            .collect();
        for s in children(client, layout::CONTROLLED_SHUTDOWN).await? {
            let Ok(id) = s.parse::<i32>() else { continue };
            if let Some(c) = czxid(client, &layout::controlled_shutdown_path(id)).await? {
                tree.shutdowns.insert(id, c);
            }
        }
        (tree.reassign, tree.reassign_version) = load_reassignments(client).await?;
        Ok(tree)
    }

    pub fn live(&self) -> BTreeSet<i32> {
        self.brokers.keys().copied().collect()
    }
}

/// Reads `/admin/reassign_partitions`: its entries and version (malformed JSON counts as no
/// entries, so the controller's next write replaces it).
pub async fn load_reassignments(
    client: &zk::Client,
) -> Result<(Vec<ReassignmentEntry>, Option<i32>), zk::Error> {
    let path = layout::REASSIGN_PARTITIONS;
    match client.get_data(path).await {
        Ok((data, stat)) => {
            let entries = match layout::decode::<ReassignmentZnode>(path, &data) {
                Ok(z) => z.partitions,
                Err(e) => {
                    warn!(error = %e, "dropping a malformed reassignment request");
                    Vec::new()
                }
            };
            Ok((entries, Some(stat.version)))
        }
        Err(zk::Error::NoNode) => Ok((Vec::new(), None)),
        Err(e) => Err(e),
    }
}

/// Reads one topic: its znode, and the partition nodes and states below it. `None` when the
/// topic znode does not exist.
pub async fn load_topic(client: &zk::Client, name: &str) -> Result<Option<TopicEntry>, zk::Error> {
    let tpath = layout::topic_path(name);
    let (data, stat) = match client.get_data(&tpath).await {
        Ok(x) => x,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut entry = TopicEntry {
        version: stat.version,
        ..Default::default()
    };
    match layout::decode::<TopicZnode>(&tpath, &data) {
        Ok(t) => {
            for (p, replicas) in &t.partitions {
                match p.parse::<i32>() {
                    Ok(p) if p >= 0 => {
                        entry.assignment.insert(p, replicas.clone());
                    }
                    _ => {
                        warn!(topic = name, partition = %p, "ignoring a malformed partition id in the topic znode")
                    }
                }
            }
            for (from, to) in [
                (&t.adding_replicas, &mut entry.adding),
                (&t.removing_replicas, &mut entry.removing),
            ] {
                for (p, replicas) in from {
                    if let Ok(p) = p.parse::<i32>() {
                        if !replicas.is_empty() {
                            to.insert(p, replicas.clone());
                        }
                    }
                }
            }
            entry.znode = Some(t);
        }
        // Left without an assignment: nothing is decided for it until it is fixed or deleted.
        Err(e) => warn!(topic = name, error = %e, "malformed topic znode"),
    }
    let ppath = layout::partitions_path(name);
    let parts = match client.list_children(&ppath).await {
        Ok(c) => {
            entry.partitions_dir = true;
            c
        }
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => return Err(e),
    };
    let reads: Vec<_> = parts
        .iter()
        .filter_map(|s| s.parse::<i32>().ok())
        .map(|p| {
            let path = layout::partition_state_path(name, p);
            let read = client.get_data(&path);
            (p, path, read)
        })
        .collect();
    for (p, path, read) in reads {
        entry.partition_nodes.insert(p);
        match read.await {
            Ok((data, stat)) => match layout::decode::<PartitionStateZnode>(&path, &data) {
                Ok(s) => {
                    entry.states.insert(
                        p,
                        (
                            LeaderAndIsr {
                                leader: s.leader,
                                leader_epoch: s.leader_epoch,
                                isr: s.isr,
                            },
                            stat.version,
                        ),
                    );
                }
                Err(e) => {
                    warn!(topic = name, partition = p, error = %e, "malformed partition state")
                }
            },
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(entry))
}

/// Every node of the subtree at `path`, children before parents, with their versions (for a
/// deletion in one transaction). Empty when `path` does not exist.
pub async fn subtree_post_order(
    client: &zk::Client,
    path: &str,
) -> Result<Vec<(String, i32)>, zk::Error> {
    let mut out = Vec::new();
    // (path, children visited?)
    let mut stack: Vec<(String, Option<i32>)> = vec![(path.to_string(), None)];
    // Bounded by the tree's size; the coordinator's tree is finite and we never revisit a node.
    while let Some((p, version)) = stack.pop() {
        if let Some(v) = version {
            out.push((p, v));
            continue;
        }
        match client.get_children(&p).await {
            Ok((kids, stat)) => {
                stack.push((p.clone(), Some(stat.version)));
                for k in kids {
                    stack.push((format!("{p}/{k}"), None));
                }
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        assert_eq!(classify("/brokers/ids/3"), Target::Broker(3));
        assert_eq!(classify("/brokers/ids"), Target::Other);
        assert_eq!(classify("/brokers/ids/x"), Target::Other);
        assert_eq!(classify("/brokers/topics/t"), Target::Topic("t".into()));
        assert_eq!(
            classify("/brokers/topics/t/partitions/0/state"),
            Target::Topic("t".into())
        );
        assert_eq!(classify("/brokers/topics"), Target::Other);
        assert_eq!(classify("/brokers/topicsx/t"), Target::Other);
        assert_eq!(
            classify("/admin/delete_topics/t"),
            Target::Deletion("t".into())
        );
        assert_eq!(classify("/admin/delete_topics"), Target::Other);
        assert_eq!(
            classify("/admin/controlled_shutdown/2"),
            Target::Shutdown(2)
        );
        assert_eq!(classify("/controller"), Target::Controller);
        assert_eq!(classify("/admin/reassign_partitions"), Target::Reassign);
        assert_eq!(classify("/controller_epoch"), Target::Controller);
        assert_eq!(classify("/config/topics/t"), Target::Other);
    }
}
