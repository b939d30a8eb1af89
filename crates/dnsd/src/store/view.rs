//! One snapshot of the SkyDNS keys every answer is read from: a persistent ordered map. Cloning a snapshot
//! costs O(1) and the next one shares all but the changed paths with it, so the watch applies a batch of k
//! events in O(k log n) and publishes it whole: a query holds one snapshot and never sees half a batch.

use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdMap;
use promsd_common::Service;

/// One key of the view and its parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Arc<str>,
    pub service: Service,
    /// The etcd lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// All SkyDNS entries under the key prefix, ordered by key as etcd returns them.
#[derive(Debug, Clone, Default)]
pub struct View {
    entries: OrdMap<Arc<str>, Arc<Entry>>,
    /// The etcd revision this view reflects.
    pub revision: i64,
    /// The zones' SOA serial: derived from the revision, and rising with every published change.
    pub serial: u32,
    /// Counts publications, so answer caches can ask what changed since the snapshot they saw.
    pub generation: u64,
    /// Names with keys directly below them (services, in registrar's terms), counted by the writer.
    pub names: usize,
    /// When the store published this snapshot (None before).
    pub published: Option<std::time::SystemTime>,
}

impl View {
    pub fn new(revision: i64) -> Self {
        Self { revision, ..Self::default() }
    }

    /// Inserts `entry`, returning the entry it replaces.
    pub fn insert(&mut self, entry: Arc<Entry>) -> Option<Arc<Entry>> {
        self.entries.insert(entry.key.clone(), entry)
    }

    pub fn remove(&mut self, key: &str) -> Option<Arc<Entry>> {
        self.entries.remove(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).map(|e| e.as_ref())
    }

    /// The shared entry at `key`, to carry unchanged values over into a reloaded view.
    pub fn get_shared(&self, key: &str) -> Option<&Arc<Entry>> {
        self.entries.get(key)
    }

    /// The shared entries after `key` (from the first one when None), in key order: a reload walks them
    /// beside the keys it reads, which come in the same order.
    pub fn shared_after<'a>(&'a self, key: Option<&str>) -> impl Iterator<Item = &'a Arc<Entry>> + 'a {
        let start: Bound<&str> = key.map_or(Bound::Unbounded, Bound::Excluded);
        self.entries.range::<_, str>((start, Bound::Unbounded)).map(|(_, e)| e)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.values().map(|e| e.as_ref())
    }

    /// Every entry strictly below `key`, in key order.
    pub fn below<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        let prefix = format!("{key}/");
        let start: Bound<&str> = Bound::Included(prefix.as_str());
        self.entries
            .range::<_, str>((start, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, e)| e.as_ref())
    }

    /// What CoreDNS's non-exact lookup returns: the subtree below `key`, or the key itself when it has no
    /// children (a node's own value is shadowed by its children).
    pub fn lookup(&self, key: &str) -> Vec<&Entry> {
        let below: Vec<&Entry> = self.below(key).collect();
        if !below.is_empty() {
            return below;
        }
        self.get(key).into_iter().collect()
    }

    /// Whether the name for `key` exists: the key itself, or any key below it (an empty non-terminal).
    pub fn exists(&self, key: &str) -> bool {
        self.entries.contains_key(key) || self.below(key).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> Arc<Entry> {
        Arc::new(Entry { key: key.into(), service: Service::default(), lease: 0 })
    }

    #[test]
    fn subtree_lookup_follows_coredns() {
        let mut view = View::new(1);
        for key in ["/s/local/prom/node/a", "/s/local/prom/node/b", "/s/local/prom/nodex/c", "/s/local/prom/mx"] {
            view.insert(entry(key));
        }
        let keys: Vec<&str> = view.lookup("/s/local/prom/node").iter().map(|e| &*e.key).collect();
        assert_eq!(keys, ["/s/local/prom/node/a", "/s/local/prom/node/b"]);
        assert_eq!(view.lookup("/s/local/prom/mx").len(), 1);
        assert!(view.lookup("/s/local/prom/m").is_empty());
        assert!(view.exists("/s/local"));
        assert!(!view.exists("/s/local/pro"));
        view.insert(entry("/s/local/prom/node"));
        assert_eq!(view.lookup("/s/local/prom/node").len(), 2, "own value shadowed by children");
    }

    #[test]
    fn a_snapshot_is_unchanged_by_later_writes() {
        let mut view = View::new(1);
        view.insert(entry("/s/a"));
        let snapshot = view.clone();
        view.insert(entry("/s/b"));
        view.remove("/s/a");
        assert_eq!(snapshot.iter().map(|e| &*e.key).collect::<Vec<_>>(), ["/s/a"]);
        assert_eq!(view.iter().map(|e| &*e.key).collect::<Vec<_>>(), ["/s/b"]);
    }
}
