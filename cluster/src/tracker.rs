//! The desired state kept current from the store one key at a time: what
//! [`State::from_kvs`] builds from every key under the prefix, without keeping the keys.
//!
//! A node keeps only the records it uses, parsed once (the raw values, and the `ipam/`
//! claims that repeat every endpoint, are not kept), so a cluster of 10,000 endpoints
//! costs one copy of them. The state is shared ([`Arc`]) with whoever it was handed to
//! and copied only when it changes after a hand-over.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::keys;
use crate::state::{canonical_mac, valid_name, EndpointRecord, NodeRecord, OverlayRecord, State};

/// The state and what it is built from (equal when built from the same records).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracker {
    state: Arc<State>,
    /// Every valid overlay record, by name, before two with one VNI are narrowed to the
    /// first (a deleted one may let another through).
    overlays: BTreeMap<String, OverlayRecord>,
    /// Every valid service record, by overlay and name, its overlay there or not (a
    /// service of an overlay that is gone is not served, but comes back with it).
    services: BTreeMap<String, BTreeMap<String, crate::ServiceRecord>>,
    /// Overlays whose key holds a record this node cannot read (malformed, or written
    /// by a newer version with a field this one does not know). An overlay dropped for
    /// that would be deleted on every node, its containers unplugged: the last good
    /// record is kept instead, here and across a new list ([`Tracker::keep_from`]).
    unreadable: std::collections::BTreeSet<String>,
}

impl Tracker {
    /// The state of these keys and values.
    pub fn from_pairs<'a>(kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Tracker {
        let mut t = Tracker::default();
        for (k, v) in kvs {
            t.put(k, v);
        }
        t
    }

    /// Takes from `old` (the overlays this node had before a new list: the last
    /// session's, or the cached state's after a restart) the last good record of each
    /// overlay whose key this list found unreadable, as a watch event would have kept it.
    pub fn keep_from(&mut self, old: &BTreeMap<String, OverlayRecord>) {
        let kept: Vec<(String, OverlayRecord)> = self
            .unreadable
            .iter()
            .filter(|n| !self.overlays.contains_key(*n))
            .filter_map(|n| old.get(n).map(|o| (n.clone(), o.clone())))
            .collect();
        if kept.is_empty() {
            return;
        }
        self.overlays.extend(kept);
        self.narrow_overlays();
    }

    /// The current state (shared: the next change copies it if it is still held).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// The current state, owned.
    pub fn into_state(self) -> State {
        Arc::unwrap_or_clone(self.state)
    }

    /// Key `key` now holds `value`. A value that does not parse, or does not match its
    /// key, is skipped with a warning, as if the key were absent.
    pub fn put(&mut self, key: &str, value: &[u8]) {
        if let Some(name) = key.strip_prefix(keys::NODES) {
            match serde_json::from_slice::<NodeRecord>(value) {
                Ok(n) if n.name == name && valid_name(name) => {
                    Arc::make_mut(&mut self.state)
                        .nodes
                        .insert(name.to_string(), n);
                    return;
                }
                Ok(_) => tracing::warn!(key, "node record does not match its key; skipped"),
                Err(e) => tracing::warn!(key, "bad node record skipped: {e}"),
            }
            self.delete(key);
        } else if let Some(name) = key.strip_prefix(keys::OVERLAYS) {
            match serde_json::from_slice::<OverlayRecord>(value) {
                Ok(o) if o.name == name && o.check().is_ok() => {
                    self.unreadable.remove(name);
                    self.overlays.insert(name.to_string(), o);
                    self.narrow_overlays();
                    return;
                }
                Ok(o) => tracing::warn!(
                    key,
                    "bad overlay record skipped: {}",
                    o.check()
                        .err()
                        .map_or_else(|| "name does not match its key".into(), |e| e.to_string())
                ),
                Err(e) => tracing::warn!(key, "bad overlay record skipped: {e}"),
            }
            self.unreadable.insert(name.to_string());
            if self.overlays.contains_key(name) {
                tracing::warn!(key, "the overlay's last good record is kept");
            }
        } else if let Some(rest) = key.strip_prefix(keys::ENDPOINTS) {
            match serde_json::from_slice::<EndpointRecord>(value) {
                Ok(e)
                    if rest.split_once('/') == Some((e.overlay.as_str(), e.mac.as_str()))
                        && canonical_mac(&e.mac)
                        && valid_name(&e.node) =>
                {
                    self.delete(key);
                    let s = Arc::make_mut(&mut self.state);
                    *s.endpoints.entry(e.node.clone()).or_default() += 1;
                    s.members
                        .entry(e.overlay.clone())
                        .or_default()
                        .insert(e.mac.clone(), e);
                    return;
                }
                Ok(_) => tracing::warn!(key, "endpoint record does not match its key; skipped"),
                Err(e) => tracing::warn!(key, "bad endpoint record skipped: {e}"),
            }
            self.delete(key);
        } else if let Some(rest) = key.strip_prefix(keys::SERVICES) {
            match serde_json::from_slice::<crate::ServiceRecord>(value) {
                Ok(r)
                    if rest.split_once('/') == Some((r.overlay.as_str(), r.spec.name.as_str())) =>
                {
                    self.services
                        .entry(r.overlay.clone())
                        .or_default()
                        .insert(r.spec.name.clone(), r);
                    self.narrow_services();
                    return;
                }
                Ok(_) => tracing::warn!(key, "service record does not match its key; skipped"),
                Err(e) => tracing::warn!(key, "bad service record skipped: {e}"),
            }
            self.delete(key);
        }
    }

    /// Key `key` is gone.
    pub fn delete(&mut self, key: &str) {
        if let Some(name) = key.strip_prefix(keys::NODES) {
            if self.state.nodes.contains_key(name) {
                Arc::make_mut(&mut self.state).nodes.remove(name);
            }
        } else if let Some(name) = key.strip_prefix(keys::OVERLAYS) {
            self.unreadable.remove(name);
            if self.overlays.remove(name).is_some() {
                self.narrow_overlays();
            }
        } else if let Some((overlay, mac)) = key
            .strip_prefix(keys::ENDPOINTS)
            .and_then(|r| r.split_once('/'))
        {
            let held = self
                .state
                .members
                .get(overlay)
                .is_some_and(|m| m.contains_key(mac));
            if !held {
                return;
            }
            let s = Arc::make_mut(&mut self.state);
            let Some(m) = s.members.get_mut(overlay) else {
                return;
            };
            let Some(e) = m.remove(mac) else { return };
            if m.is_empty() {
                s.members.remove(overlay);
            }
            if let Some(n) = s.endpoints.get_mut(&e.node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.endpoints.remove(&e.node);
                }
            }
        } else if let Some((overlay, name)) = key
            .strip_prefix(keys::SERVICES)
            .and_then(|r| r.split_once('/'))
        {
            let Some(m) = self.services.get_mut(overlay) else {
                return;
            };
            if m.remove(name).is_none() {
                return;
            }
            if m.is_empty() {
                self.services.remove(overlay);
            }
            self.narrow_services();
        }
    }

    /// The overlays of the state: two overlays cannot share a VNI (the claims forbid
    /// it); if a hand-made key says otherwise, the first by name wins.
    fn narrow_overlays(&mut self) {
        let mut seen = std::collections::HashSet::new();
        let mut next = BTreeMap::new();
        for (name, o) in &self.overlays {
            if seen.insert(o.vni) {
                next.insert(name.clone(), o.clone());
            } else {
                tracing::warn!(overlay = %name, vni = o.vni, "VNI used twice; skipped");
            }
        }
        if self.state.overlays != next {
            Arc::make_mut(&mut self.state).overlays = next;
            self.narrow_services();
        }
    }

    /// The services of the state: those whose overlay is served.
    fn narrow_services(&mut self) {
        let overlays = &self.state.overlays;
        let next: BTreeMap<_, _> = self
            .services
            .iter()
            .filter(|(o, _)| overlays.contains_key(*o))
            .map(|(o, m)| (o.clone(), m.clone()))
            .collect();
        if self.state.services != next {
            Arc::make_mut(&mut self.state).services = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(overlay: &str, mac: &str, ip: &str, node: &str) -> (String, Vec<u8>) {
        (
            keys::endpoint(overlay, mac),
            format!(r#"{{"overlay":"{overlay}","mac":"{mac}","ip":"{ip}","node":"{node}"}}"#)
                .into_bytes(),
        )
    }

    fn node(n: &str, ip: &str) -> (String, Vec<u8>) {
        (
            keys::node(n),
            format!(r#"{{"name":"{n}","vtep":"{ip}","started":1}}"#).into_bytes(),
        )
    }

    fn overlay(n: &str, vni: u32, net: u8) -> (String, Vec<u8>) {
        (
            keys::overlay(n),
            format!(r#"{{"name":"{n}","vni":{vni},"subnet":"10.{net}.0.0/24","gateway":"10.{net}.0.1"}}"#)
                .into_bytes(),
        )
    }

    /// Every change applied one at a time gives the state of the keys at the end, as
    /// `from_kvs` builds it: overwritten, deleted, bad and clashing records included.
    #[test]
    fn changes_one_at_a_time_build_what_a_full_list_builds() {
        let bad = |k: &str, v: &[u8]| (k.to_string(), v.to_vec());
        let puts: Vec<(String, Vec<u8>)> = vec![
            node("a", "198.51.100.1"),
            node("b", "198.51.100.2"),
            overlay("o1", 4096, 1),
            overlay("o2", 4096, 2),
            overlay("o3", 4097, 3),
            ep("o1", "02:00:00:00:00:01", "10.1.0.5", "b"),
            ep("o1", "02:00:00:00:00:02", "10.1.0.6", "b"),
            ep("o3", "02:00:00:00:00:03", "10.3.0.6", "a"),
            // Moved to another node, then made bad, then deleted below.
            ep("o1", "02:00:00:00:00:02", "10.1.0.6", "a"),
            bad(&keys::node("c"), b"\xff"),
            node("c", "198.51.100.3"),
            bad(&keys::node("c"), b"{}"),
            ep("o3", "02:00:00:00:00:04", "10.3.0.7", "a"),
            bad(&keys::endpoint("o3", "02:00:00:00:00:04"), b"{"),
            bad(&keys::ipam("o1", [10, 1, 0, 5].into()), b"anything"),
            ep("o1", "02:00:00:00:00:05", "10.1.0.9", "a"),
        ];
        let deletes = [
            keys::overlay("o1"),
            keys::endpoint("o1", "02:00:00:00:00:05"),
            keys::node("zz"),
            keys::endpoint("o9", "02:00:00:00:00:01"),
        ];
        let mut kvs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut t = Tracker::default();
        for (i, (k, v)) in puts.iter().enumerate() {
            kvs.insert(k.clone(), v.clone());
            t.put(k, v);
            assert_eq!(*t.state(), State::from_kvs(&kvs), "after put {i} ({k})");
        }
        // o2 had lost to o1 on its VNI; o1 deleted lets it through.
        assert!(!t.state().overlays.contains_key("o2"));
        let held = t.state();
        for k in &deletes {
            kvs.remove(k);
            t.delete(k);
            assert_eq!(*t.state(), State::from_kvs(&kvs), "after delete {k}");
        }
        assert!(t.state().overlays.contains_key("o2"));
        assert_eq!(t.state().endpoints.get("a"), Some(&2));
        // What was handed over did not change under its holder.
        assert!(held.overlays.contains_key("o1") && !held.overlays.contains_key("o2"));
        let all = Tracker::from_pairs(kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        assert_eq!(all.into_state(), State::from_kvs(&kvs));
    }

    /// An overlay record this node cannot read (malformed, or with a field of a newer
    /// version) keeps the last good one, through a new list too: dropped, the overlay
    /// would be deleted on every node. A delete is a delete.
    #[test]
    fn an_unreadable_overlay_record_keeps_the_last_good_one() {
        let (k, good) = overlay("o1", 4096, 1);
        let mut newer: serde_json::Value = serde_json::from_slice(&good).unwrap();
        newer["a_field_of_a_newer_version"] = serde_json::json!(true);
        let newer = serde_json::to_vec(&newer).unwrap();
        for bad in [b"{".to_vec(), newer] {
            let mut t = Tracker::default();
            t.put(&k, &good);
            let was = t.state().overlays.get("o1").cloned();
            assert!(was.is_some());
            t.put(&k, &bad);
            assert_eq!(t.state().overlays.get("o1").cloned(), was);
            // A new list (an audit, a new session) sees only the bad record: it keeps
            // what this node had, and so agrees with the watch.
            let mut listed = Tracker::from_pairs([(k.as_str(), bad.as_slice())]);
            assert!(listed.state().overlays.is_empty());
            listed.keep_from(&t.state().overlays);
            assert_eq!(listed, t);
            // Never had it: nothing to keep.
            let mut fresh = Tracker::from_pairs([(k.as_str(), bad.as_slice())]);
            fresh.keep_from(&BTreeMap::new());
            assert!(fresh.state().overlays.is_empty());
            t.delete(&k);
            assert!(t.state().overlays.is_empty());
            t.put(&k, &good);
            assert_eq!(t.state().overlays.get("o1").cloned(), was);
        }
    }
}
