//! Per-connection watches, triggered by the events the state machine emits.
//! Mirrors ZooKeeper's WatchManager: a data table (data, exists, persistent and
//! persistent-recursive watches) and a child table (child and persistent watches).

use std::collections::{BTreeSet, HashMap};

use crate::proto::event;
use crate::tree::{parent_of, WatchEvent};

pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standard,
    Persistent,
    Recursive,
}

/// RemoveWatches/CheckWatches watcher types.
pub mod kind {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

#[derive(Default)]
struct Table {
    by_path: HashMap<String, HashMap<ConnId, Mode>>,
    recursive: usize,
}

impl Table {
    fn add(&mut self, path: &str, conn: ConnId, mode: Mode) {
        let e = self.by_path.entry(path.to_string()).or_default();
        match e.get(&conn) {
            // A one-shot watch never downgrades a persistent one.
            Some(Mode::Persistent) | Some(Mode::Recursive) if mode == Mode::Standard => {}
            prev => {
                if prev == Some(&Mode::Recursive) {
                    self.recursive -= 1;
                }
                if mode == Mode::Recursive {
                    self.recursive += 1;
                }
                e.insert(conn, mode);
            }
        }
    }

    fn remove(&mut self, path: &str, conn: ConnId, mode: Option<Mode>) -> bool {
        let Some(e) = self.by_path.get_mut(path) else {
            return false;
        };
        let removed = match e.get(&conn) {
            Some(m) if mode.is_none_or(|want| want == *m) => {
                if *m == Mode::Recursive {
                    self.recursive -= 1;
                }
                e.remove(&conn);
                true
            }
            _ => false,
        };
        if e.is_empty() {
            self.by_path.remove(path);
        }
        removed
    }

    fn has(&self, path: &str, conn: ConnId, mode: Option<Mode>) -> bool {
        self.by_path
            .get(path)
            .and_then(|e| e.get(&conn))
            .is_some_and(|m| mode.is_none_or(|want| want == *m))
    }

    /// Collects the watchers for an event on `path`, removing one-shot ones.
    fn trigger(&mut self, path: &str, kind: i32, out: &mut BTreeSet<ConnId>) {
        if let Some(e) = self.by_path.get_mut(path) {
            e.retain(|conn, mode| {
                if *mode == Mode::Recursive {
                    if kind != event::NODE_CHILDREN_CHANGED {
                        out.insert(*conn);
                    }
                    return true;
                }
                out.insert(*conn);
                *mode != Mode::Standard
            });
            if e.is_empty() {
                self.by_path.remove(path);
            }
        }
        if self.recursive > 0 && kind != event::NODE_CHILDREN_CHANGED {
            let mut p = path;
            while p != "/" {
                p = parent_of(p);
                if let Some(e) = self.by_path.get(p) {
                    for (conn, mode) in e {
                        if *mode == Mode::Recursive {
                            out.insert(*conn);
                        }
                    }
                }
            }
        }
    }

    fn count(&self) -> usize {
        self.by_path.values().map(|e| e.len()).sum()
    }

    fn drop_conn(&mut self, conn: ConnId) {
        let mut rec = 0;
        self.by_path.retain(|_, e| {
            if e.remove(&conn) == Some(Mode::Recursive) {
                rec += 1;
            }
            !e.is_empty()
        });
        self.recursive -= rec;
    }
}

#[derive(Default)]
pub struct WatchManager {
    data: Table,
    child: Table,
}

impl WatchManager {
    pub fn add_data(&mut self, path: &str, conn: ConnId) {
        self.data.add(path, conn, Mode::Standard);
    }

    pub fn add_child(&mut self, path: &str, conn: ConnId) {
        self.child.add(path, conn, Mode::Standard);
    }

    /// addWatch: mode 0 = persistent, 1 = persistent recursive.
    pub fn add_persistent(&mut self, path: &str, conn: ConnId, recursive: bool) {
        if recursive {
            self.data.add(path, conn, Mode::Recursive);
            // ZooKeeper keeps one mode per (connection, path): a persistent watch
            // that becomes recursive stops receiving child events.
            if self.child.has(path, conn, None) {
                self.child.add(path, conn, Mode::Recursive);
            }
        } else {
            self.data.add(path, conn, Mode::Persistent);
            self.child.add(path, conn, Mode::Persistent);
        }
    }

    pub fn count(&self) -> usize {
        self.data.count() + self.child.count()
    }

    pub fn drop_conn(&mut self, conn: ConnId) {
        self.data.drop_conn(conn);
        self.child.drop_conn(conn);
    }

    /// removeWatches / checkWatches; returns whether a matching watch existed.
    pub fn remove(&mut self, path: &str, conn: ConnId, kind_: i32, remove: bool) -> bool {
        let std = Some(Mode::Standard);
        let (d, c) = match kind_ {
            kind::CHILDREN => (None, std),
            kind::DATA => (std, None),
            kind::ANY => (std, std),
            kind::PERSISTENT => (Some(Mode::Persistent), Some(Mode::Persistent)),
            kind::PERSISTENT_RECURSIVE => (Some(Mode::Recursive), None),
            _ => return false,
        };
        let mut found = false;
        if let Some(m) = d {
            found |= if remove {
                self.data.remove(path, conn, Some(m))
            } else {
                self.data.has(path, conn, Some(m))
            };
        }
        if let Some(m) = c {
            found |= if remove {
                self.child.remove(path, conn, Some(m))
            } else {
                self.child.has(path, conn, Some(m))
            };
        }
        found
    }

    /// Maps one state-machine event to (connection, event) notifications, in
    /// ZooKeeper's order and with its de-duplication per connection.
    pub fn fire(&mut self, ev: &WatchEvent, out: &mut Vec<(ConnId, i32, String)>) {
        let mut conns = BTreeSet::new();
        match ev.kind {
            event::NODE_CHILDREN_CHANGED => self.child.trigger(&ev.path, ev.kind, &mut conns),
            event::NODE_DELETED => {
                self.data.trigger(&ev.path, ev.kind, &mut conns);
                self.child.trigger(&ev.path, ev.kind, &mut conns);
            }
            _ => self.data.trigger(&ev.path, ev.kind, &mut conns),
        }
        for c in conns {
            out.push((c, ev.kind, ev.path.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: i32, path: &str) -> WatchEvent {
        WatchEvent {
            kind,
            path: path.into(),
        }
    }

    #[test]
    fn one_shot_and_persistent() {
        let mut w = WatchManager::default();
        w.add_data("/a", 1);
        w.add_persistent("/a", 2, false);
        w.add_persistent("/", 3, true);
        let mut out = Vec::new();
        w.fire(&ev(event::NODE_DATA_CHANGED, "/a"), &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        w.fire(&ev(event::NODE_DATA_CHANGED, "/a"), &mut out);
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), vec![2, 3]);
        out.clear();
        w.fire(&ev(event::NODE_CHILDREN_CHANGED, "/a"), &mut out);
        assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn delete_deduplicates() {
        let mut w = WatchManager::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        let mut out = Vec::new();
        w.fire(&ev(event::NODE_DELETED, "/a"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(w.count(), 0);
    }
}
