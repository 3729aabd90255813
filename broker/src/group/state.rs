//! The classic group state machine, as Kafka's GroupCoordinator has it: Empty →
//! PreparingRebalance → CompletingRebalance → Stable (→ Dead when deleted). Pure: callers pass the
//! time in and carry out the returned effects (deliver deferred responses, persist the group).

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Coordinator settings that shape the state machine.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i64,
    pub max_session_timeout_ms: i64,
    pub initial_rebalance_delay_ms: i64,
    pub max_size: usize,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Has a JoinGroup waiting for the rebalance to complete.
    pub joining: bool,
    /// Has a SyncGroup waiting for the leader's assignment.
    pub syncing: bool,
    pub last_heartbeat_ms: i64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A JoinGroup answer, immediate or deferred.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members: (member id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(code: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: code.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: ResponseError) -> Self {
        SyncResult {
            error: code.code(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub enum Effect {
    Join(String, JoinResult),
    Sync(String, SyncResult),
    /// The group's metadata changed in a way that must be written to `__consumer_offsets`.
    Persist,
}

pub enum Outcome<T> {
    Now(T),
    /// Answered later through an `Effect` for this member id.
    Deferred(String),
}

pub struct JoinParams {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member must rejoin with the id the coordinator gives it.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order (the first is the leader if the old leader left).
    pub members: Vec<Member>,
    pending_members: HashSet<String>,
    rebalance_deadline_ms: i64,
    initial_delay_until_ms: Option<i64>,
    pub state_timestamp_ms: i64,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

/// A request's own answer, when the operation produced it among the effects (it is then
/// returned directly instead of through the deferred-answer channel).
fn take_own_join(effects: &mut Vec<Effect>, member: &str) -> Option<JoinResult> {
    let pos = effects
        .iter()
        .position(|e| matches!(e, Effect::Join(id, _) if id == member))?;
    match effects.remove(pos) {
        Effect::Join(_, r) => Some(r),
        _ => None,
    }
}

fn take_own_sync(effects: &mut Vec<Effect>, member: &str) -> Option<SyncResult> {
    let pos = effects
        .iter()
        .position(|e| matches!(e, Effect::Sync(id, _) if id == member))?;
    match effects.remove(pos) {
        Effect::Sync(_, r) => Some(r),
        _ => None,
    }
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending_members: HashSet::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            state_timestamp_ms: now_ms,
            offsets: BTreeMap::new(),
        }
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.member_id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.member_id == id)
    }

    fn static_member(&self, instance: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.group_instance_id.as_deref() == Some(instance))
    }

    fn set_state(&mut self, s: GroupState, now_ms: i64) {
        self.state = s;
        self.state_timestamp_ms = now_ms;
    }

    /// Protocols every member (and a candidate) supports.
    fn common_protocols(&self, candidate: Option<&[(String, Bytes)]>) -> Vec<String> {
        let mut sets: Vec<Vec<&str>> = self
            .members
            .iter()
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .collect();
        if let Some(c) = candidate {
            sets.push(c.iter().map(|(n, _)| n.as_str()).collect());
        }
        let Some(first) = sets.first() else {
            return vec![];
        };
        first
            .iter()
            .filter(|p| sets.iter().all(|s| s.contains(p)))
            .map(|p| p.to_string())
            .collect()
    }

    /// Each member votes for its most preferred common protocol; most votes wins, ties go to
    /// the earlier-joined member's preference.
    fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols(None);
        let mut votes: Vec<(String, usize)> = Vec::new();
        for m in &self.members {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| common.contains(n)) {
                match votes.iter_mut().find(|(n, _)| n == name) {
                    Some(v) => v.1 += 1,
                    None => votes.push((name.clone(), 1)),
                }
            }
        }
        let best = votes.iter().map(|(_, c)| *c).max()?;
        votes.into_iter().find(|(_, c)| *c == best).map(|(n, _)| n)
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Moves to PreparingRebalance; pending SyncGroups learn about it.
    fn prepare_rebalance(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        for m in self.members.iter_mut().filter(|m| m.syncing) {
            m.syncing = false;
            effects.push(Effect::Sync(
                m.member_id.clone(),
                SyncResult::error(ResponseError::RebalanceInProgress),
            ));
        }
        self.rebalance_deadline_ms = now_ms + self.max_rebalance_timeout();
        self.set_state(GroupState::PreparingRebalance, now_ms);
    }

    /// Completes the join phase if everyone rejoined (and any initial delay passed) or time ran out.
    fn maybe_complete_join(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let delayed = self.initial_delay_until_ms.is_some_and(|t| now_ms < t);
        let all_joined = self.members.iter().all(|m| m.joining);
        let timed_out = now_ms >= self.rebalance_deadline_ms
            && self.initial_delay_until_ms.is_none_or(|t| now_ms >= t);
        if delayed || !(all_joined || timed_out) {
            return;
        }
        self.initial_delay_until_ms = None;
        // Members that did not rejoin in time are out.
        self.members.retain(|m| m.joining);
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            effects.push(Effect::Persist);
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_deref()
            .is_none_or(|l| self.member(l).is_none())
        {
            self.leader = Some(self.members[0].member_id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        for m in self.members.iter_mut() {
            m.joining = false;
            m.last_heartbeat_ms = now_ms;
            effects.push(Effect::Join(
                m.member_id.clone(),
                JoinResult {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.member_id.clone(),
                    members: if m.member_id == leader {
                        all.clone()
                    } else {
                        vec![]
                    },
                },
            ));
        }
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        p: JoinParams,
        cfg: &GroupConfig,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> Outcome<JoinResult> {
        let err = |code: ResponseError| Outcome::Now(JoinResult::error(code, &p.member_id));
        if self.state == GroupState::Dead {
            return err(ResponseError::CoordinatorNotAvailable);
        }
        if p.session_timeout_ms < cfg.min_session_timeout_ms
            || p.session_timeout_ms > cfg.max_session_timeout_ms
        {
            return err(ResponseError::InvalidSessionTimeout);
        }
        if p.protocol_type.is_empty() || p.protocols.is_empty() {
            return err(ResponseError::InconsistentGroupProtocol);
        }
        if !self.members.is_empty() {
            if self.protocol_type.as_deref() != Some(p.protocol_type.as_str()) {
                return err(ResponseError::InconsistentGroupProtocol);
            }
            // Exclude the member itself (it may be changing its protocols).
            let others: Vec<&Member> = self
                .members
                .iter()
                .filter(|m| m.member_id != p.member_id)
                .collect();
            let compatible = p.protocols.iter().any(|(name, _)| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
            if !compatible {
                return err(ResponseError::InconsistentGroupProtocol);
            }
        }

        let mut member_id = p.member_id.clone();
        if member_id.is_empty() {
            if let Some(instance) = p.group_instance_id.clone() {
                // Static member (re)joining: it takes over its old identity.
                let new_id = new_member_id(&instance);
                if let Some(old) = self.static_member(&instance).map(|m| m.member_id.clone()) {
                    return self.replace_static_member(&old, new_id, p, now_ms, effects);
                }
                member_id = new_id;
            } else {
                let new_id = new_member_id(if p.client_id.is_empty() {
                    "member"
                } else {
                    &p.client_id
                });
                if p.require_known_member_id {
                    self.pending_members.insert(new_id.clone());
                    return Outcome::Now(JoinResult::error(
                        ResponseError::MemberIdRequired,
                        &new_id,
                    ));
                }
                member_id = new_id;
            }
        } else {
            if let Some(instance) = &p.group_instance_id {
                if let Some(m) = self.static_member(instance) {
                    if m.member_id != member_id {
                        return err(ResponseError::FencedInstanceId);
                    }
                }
            }
            let known = self.member(&member_id).is_some();
            if !known && !self.pending_members.remove(&member_id) {
                return err(ResponseError::UnknownMemberId);
            }
        }

        if self.member(&member_id).is_none() && self.members.len() >= cfg.max_size {
            return err(ResponseError::GroupMaxSizeReached);
        }

        // A known member rejoining a stable group with unchanged protocols, other than the
        // leader, gets the current generation without a rebalance.
        if let Some(m) = self.member(&member_id) {
            let unchanged = m.protocols == p.protocols;
            let is_leader = self.leader.as_deref() == Some(member_id.as_str());
            if self.state == GroupState::Stable && unchanged && !is_leader {
                return Outcome::Now(self.current_join_result(&member_id));
            }
            if self.state == GroupState::CompletingRebalance && unchanged {
                return Outcome::Now(self.current_join_result(&member_id));
            }
        }

        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        match self.member_mut(&member_id) {
            Some(m) => {
                m.protocols = p.protocols;
                m.session_timeout_ms = p.session_timeout_ms;
                m.rebalance_timeout_ms = p.rebalance_timeout_ms;
                m.joining = true;
                m.last_heartbeat_ms = now_ms;
            }
            None => self.members.push(Member {
                member_id: member_id.clone(),
                group_instance_id: p.group_instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout_ms: p.session_timeout_ms,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                protocols: p.protocols,
                assignment: Bytes::new(),
                joining: true,
                syncing: false,
                last_heartbeat_ms: now_ms,
            }),
        }
        match self.state {
            GroupState::Empty => {
                self.prepare_rebalance(now_ms, effects);
                if cfg.initial_rebalance_delay_ms > 0 {
                    self.initial_delay_until_ms = Some(now_ms + cfg.initial_rebalance_delay_ms);
                }
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, effects)
            }
            GroupState::PreparingRebalance => {
                // New members during the initial delay extend it, bounded by the rebalance timeout.
                if let Some(until) = self.initial_delay_until_ms {
                    let cap = self.state_timestamp_ms + self.max_rebalance_timeout();
                    self.initial_delay_until_ms =
                        Some((now_ms + cfg.initial_rebalance_delay_ms).min(cap.max(until)));
                }
                self.rebalance_deadline_ms = self
                    .rebalance_deadline_ms
                    .max(self.state_timestamp_ms + self.max_rebalance_timeout());
            }
            GroupState::Dead => {}
        }
        self.maybe_complete_join(now_ms, effects);
        // The member's own answer may already be among the effects.
        match take_own_join(effects, &member_id) {
            Some(r) => Outcome::Now(r),
            None => Outcome::Deferred(member_id),
        }
    }

    fn current_join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: leader.clone(),
            member_id: member_id.to_string(),
            members: if member_id == leader {
                self.members
                    .iter()
                    .map(|m| {
                        (
                            m.member_id.clone(),
                            m.group_instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                vec![]
            },
        }
    }

    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> Outcome<JoinResult> {
        // Whoever still waits under the old id has been replaced.
        let (was_joining, was_syncing, unchanged) = match self.member(old_id) {
            Some(m) => (m.joining, m.syncing, m.protocols == p.protocols),
            None => (false, false, false),
        };
        if was_joining {
            effects.push(Effect::Join(
                old_id.to_string(),
                JoinResult::error(ResponseError::FencedInstanceId, old_id),
            ));
        }
        if was_syncing {
            effects.push(Effect::Sync(
                old_id.to_string(),
                SyncResult::error(ResponseError::FencedInstanceId),
            ));
        }
        if let Some(m) = self.member_mut(old_id) {
            m.member_id = new_id.clone();
            m.client_id = p.client_id.clone();
            m.client_host = p.client_host.clone();
            m.session_timeout_ms = p.session_timeout_ms;
            m.rebalance_timeout_ms = p.rebalance_timeout_ms;
            m.joining = false;
            m.syncing = false;
            m.last_heartbeat_ms = now_ms;
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            // KIP-345: a restarted static member gets its old assignment back with no rebalance.
            effects.push(Effect::Persist);
            let mut r = self.current_join_result(&new_id);
            // Its assignment is already decided; even a leader need not compute one again.
            r.members.clear();
            return Outcome::Now(r);
        }
        let mut p = p;
        p.member_id = new_id;
        p.group_instance_id = None; // already attached to the member
        self.join(
            p,
            &GroupConfig {
                min_session_timeout_ms: i64::MIN,
                max_session_timeout_ms: i64::MAX,
                initial_rebalance_delay_ms: 0,
                max_size: usize::MAX,
            },
            now_ms,
            effects,
        )
    }

    fn check_member(&self, member_id: &str, instance: Option<&str>) -> Result<(), ResponseError> {
        if let Some(i) = instance {
            if let Some(m) = self.static_member(i) {
                if m.member_id != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)] // mirrors the request's fields one to one
    pub fn sync(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> Outcome<SyncResult> {
        if let Err(e) = self.check_member(member_id, instance) {
            return Outcome::Now(SyncResult::error(e));
        }
        if generation != self.generation {
            return Outcome::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Outcome::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                Outcome::Now(SyncResult::error(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                Outcome::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let assignment = self
                    .member(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                if let Some(m) = self.member_mut(member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
                Outcome::Now(self.sync_ok(assignment))
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.member_mut(member_id) {
                    m.syncing = true;
                    m.last_heartbeat_ms = now_ms;
                }
                if self.leader.as_deref() == Some(member_id) {
                    for m in self.members.iter_mut() {
                        m.assignment = assignments
                            .iter()
                            .find(|(id, _)| *id == m.member_id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now_ms);
                    effects.push(Effect::Persist);
                    let protocol_type = self.protocol_type.clone();
                    let protocol_name = self.protocol.clone();
                    for m in self.members.iter_mut().filter(|m| m.syncing) {
                        m.syncing = false;
                        effects.push(Effect::Sync(
                            m.member_id.clone(),
                            SyncResult {
                                error: 0,
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            },
                        ));
                    }
                    if let Some(r) = take_own_sync(effects, member_id) {
                        return Outcome::Now(r);
                    }
                }
                Outcome::Deferred(member_id.to_string())
            }
        }
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    /// Heartbeat: the error code to answer with.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> ResponseError {
        if let Err(e) = self.check_member(member_id, instance) {
            return e;
        }
        if generation != self.generation {
            return ResponseError::IllegalGeneration;
        }
        if let Some(m) = self.member_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress,
            GroupState::Empty | GroupState::Dead => ResponseError::UnknownMemberId,
            _ => super::NO_ERROR,
        }
    }

    /// Removes one member; `Ok` or the error for that member.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ResponseError> {
        let id = match (member_id, instance) {
            // v3+ lets a static member leave by instance id alone.
            ("", Some(i)) => self
                .static_member(i)
                .map(|m| m.member_id.clone())
                .ok_or(ResponseError::UnknownMemberId)?,
            (id, i) => {
                self.check_member(id, i)?;
                id.to_string()
            }
        };
        self.remove_member(&id, now_ms, effects);
        Ok(())
    }

    fn remove_member(&mut self, id: &str, now_ms: i64, effects: &mut Vec<Effect>) {
        if let Some(m) = self.member(id) {
            if m.joining {
                effects.push(Effect::Join(
                    id.to_string(),
                    JoinResult::error(ResponseError::UnknownMemberId, id),
                ));
            }
            if m.syncing {
                effects.push(Effect::Sync(
                    id.to_string(),
                    SyncResult::error(ResponseError::UnknownMemberId),
                ));
            }
        }
        self.members.retain(|m| m.member_id != id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, effects);
                self.maybe_complete_join(now_ms, effects);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms, effects),
            _ => {}
        }
    }

    /// Expires members whose session lapsed and completes timed-out rebalances.
    pub fn tick(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| {
                !m.joining && !m.syncing && now_ms - m.last_heartbeat_ms > m.session_timeout_ms
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, now_ms, effects);
        }
        self.maybe_complete_join(now_ms, effects);
    }

    /// Starts a new rebalance (after the group's state could not be stored).
    pub fn force_rebalance(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now_ms, effects);
        }
    }

    /// Whether an OffsetCommit from this member/generation may proceed.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            // A commit from outside the group protocol (assign() consumers, admin tools).
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member(member_id, instance)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if let Some(m) = self.member_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        Ok(())
    }

    /// Restores a group from its last `__consumer_offsets` record (broker start). Members get a
    /// fresh session timeout to come back before they are expired.
    pub fn restore(&mut self, v: super::records::GroupValue, now_ms: i64) {
        let protocol = v.protocol.clone().unwrap_or_default();
        self.protocol_type = Some(v.protocol_type).filter(|t| !t.is_empty());
        self.generation = v.generation;
        self.protocol = v.protocol;
        self.leader = v.leader;
        self.members = v
            .members
            .into_iter()
            .map(|m| Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout as i64,
                rebalance_timeout_ms: m.rebalance_timeout as i64,
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                joining: false,
                syncing: false,
                last_heartbeat_ms: now_ms,
            })
            .collect();
        let state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.set_state(state, now_ms);
    }

    /// True when no member holds this group (deletable).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(delay: i64) -> GroupConfig {
        GroupConfig {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: delay,
            max_size: 100,
        }
    }

    fn params(member: &str, instance: Option<&str>) -> JoinParams {
        JoinParams {
            member_id: member.into(),
            group_instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
        }
    }

    fn join_now(g: &mut Group, p: JoinParams, now: i64, fx: &mut Vec<Effect>) -> JoinResult {
        match g.join(p, &cfg(0), now, fx) {
            Outcome::Now(r) => r,
            Outcome::Deferred(id) => panic!("deferred {id}"),
        }
    }

    #[test]
    fn member_id_required_then_single_member_rebalance() {
        let mut g = Group::new("g", 0);
        let mut fx = vec![];
        let r = join_now(&mut g, params("", None), 0, &mut fx);
        assert_eq!(r.error, ResponseError::MemberIdRequired.code());
        let id = r.member_id.clone();
        let r = join_now(&mut g, params(&id, None), 1, &mut fx);
        assert_eq!(
            (r.error, r.generation, r.leader.as_str()),
            (0, 1, id.as_str())
        );
        assert_eq!(r.members.len(), 1);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let s = g.sync(
            &id,
            None,
            1,
            None,
            None,
            vec![(id.clone(), Bytes::from_static(b"a"))],
            2,
            &mut fx,
        );
        assert!(matches!(s, Outcome::Now(ref r) if r.error == 0 && &r.assignment[..] == b"a"));
        assert_eq!(g.state, GroupState::Stable);
    }

    #[test]
    fn second_member_triggers_rebalance_and_both_get_answers() {
        let mut g = Group::new("g", 0);
        let mut fx = vec![];
        let a = join_now(&mut g, params("", None), 0, &mut fx).member_id;
        join_now(&mut g, params(&a, None), 0, &mut fx);
        g.sync(&a, None, 1, None, None, vec![], 0, &mut fx);
        let b = join_now(&mut g, params("", None), 1, &mut fx).member_id;
        assert!(matches!(
            g.join(params(&b, None), &cfg(0), 1, &mut fx),
            Outcome::Deferred(_)
        ));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        // a's heartbeat learns about the rebalance, then a rejoins and the join completes.
        assert_eq!(
            g.heartbeat(&a, None, 1, 2),
            ResponseError::RebalanceInProgress
        );
        let ra = join_now(&mut g, params(&a, None), 3, &mut fx);
        assert_eq!(ra.generation, 2);
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Join(id, r) if *id == b && r.generation == 2)));
    }

    #[test]
    fn errors_for_bad_generation_unknown_member_and_protocols() {
        let mut g = Group::new("g", 0);
        let mut fx = vec![];
        let a = join_now(&mut g, params("", None), 0, &mut fx).member_id;
        join_now(&mut g, params(&a, None), 0, &mut fx);
        let s = g.sync(&a, None, 7, None, None, vec![], 0, &mut fx);
        assert!(
            matches!(s, Outcome::Now(ref r) if r.error == ResponseError::IllegalGeneration.code())
        );
        assert_eq!(
            g.heartbeat("nobody", None, 1, 0),
            ResponseError::UnknownMemberId
        );
        let mut other = params("", None);
        other.protocol_type = "connect".into();
        assert_eq!(
            join_now(&mut g, other, 0, &mut fx).error,
            ResponseError::InconsistentGroupProtocol.code()
        );
        let mut bad_timeout = params("", None);
        bad_timeout.session_timeout_ms = 10;
        assert_eq!(
            join_now(&mut g, bad_timeout, 0, &mut fx).error,
            ResponseError::InvalidSessionTimeout.code()
        );
        assert_eq!(
            g.check_commit("nobody", None, 1, 0),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            g.check_commit("", None, -1, 0),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn expired_member_is_removed_and_group_rebalances() {
        let mut g = Group::new("g", 0);
        let mut fx = vec![];
        let a = join_now(&mut g, params("", None), 0, &mut fx).member_id;
        join_now(&mut g, params(&a, None), 0, &mut fx);
        g.sync(&a, None, 1, None, None, vec![], 0, &mut fx);
        g.tick(20_000, &mut fx);
        assert!(g.is_empty());
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.generation, 2);
    }

    #[test]
    fn static_member_restart_keeps_assignment_without_rebalance() {
        let mut g = Group::new("g", 0);
        let mut fx = vec![];
        let a = join_now(&mut g, params("", Some("i-a")), 0, &mut fx).member_id;
        let b_first = match g.join(params("", Some("i-b")), &cfg(0), 0, &mut fx) {
            Outcome::Deferred(id) => id,
            Outcome::Now(r) => r.member_id,
        };
        let _ = join_now(&mut g, params(&a, Some("i-a")), 0, &mut fx);
        let gen = g.generation;
        let leader = g.leader.clone().unwrap();
        g.sync(
            &leader,
            None,
            gen,
            None,
            None,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b_first.clone(), Bytes::from_static(b"B")),
            ],
            0,
            &mut fx,
        );
        assert_eq!(g.state, GroupState::Stable);
        // b restarts: empty member id, same instance id.
        let r = join_now(&mut g, params("", Some("i-b")), 5, &mut fx);
        assert_eq!(r.error, 0);
        assert_eq!(r.generation, gen, "no new generation");
        assert_eq!(g.state, GroupState::Stable);
        let s = g.sync(
            &r.member_id,
            Some("i-b"),
            gen,
            None,
            None,
            vec![],
            6,
            &mut fx,
        );
        assert!(matches!(s, Outcome::Now(ref x) if &x.assignment[..] == b"B"));
        // The old identity is fenced.
        assert_eq!(
            g.heartbeat(&b_first, Some("i-b"), gen, 7),
            ResponseError::FencedInstanceId
        );
    }

    #[test]
    fn initial_delay_holds_the_first_rebalance() {
        let mut g = Group::new("g", 0);
        let mut fx = vec![];
        let mut p = params("", None);
        p.require_known_member_id = false;
        assert!(matches!(
            g.join(p, &cfg(3000), 0, &mut fx),
            Outcome::Deferred(_)
        ));
        g.tick(1000, &mut fx);
        assert!(fx.iter().all(|e| !matches!(e, Effect::Join(..))));
        g.tick(3001, &mut fx);
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Join(_, r) if r.generation == 1)));
    }
}
