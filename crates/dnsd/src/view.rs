//! The in-memory view of the SkyDNS keys that every answer is read from: an immutable snapshot, swapped whole
//! when the etcd watch applies changes, so a query never sees half an update and never waits for etcd.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use promsd_common::Service;

/// One key of the view and its parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub service: Service,
    /// The etcd lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// All SkyDNS entries under the key prefix, ordered by key as etcd returns them.
#[derive(Debug, Clone, Default)]
pub struct View {
    entries: BTreeMap<String, Arc<Entry>>,
    /// The etcd revision this view reflects (its SOA serial).
    pub revision: i64,
}

impl View {
    pub fn new(revision: i64) -> Self {
        Self { entries: BTreeMap::new(), revision }
    }

    pub fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.key.clone(), Arc::new(entry));
    }

    pub fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
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

    /// How many distinct names hold keys directly below them (services, in registrar's terms).
    pub fn parents(&self) -> usize {
        let parents: std::collections::HashSet<&str> =
            self.entries.keys().filter_map(|k| k.rsplit_once('/').map(|(parent, _)| parent)).collect();
        parents.len()
    }

    /// The lease of every leased key (repeated for keys that share one).
    pub fn leases(&self) -> impl Iterator<Item = i64> + '_ {
        self.entries.values().map(|e| e.lease).filter(|&lease| lease != 0)
    }

    /// Every entry strictly below `key`, in key order.
    pub fn below<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        let prefix = format!("{key}/");
        self.entries
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
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

    fn entry(key: &str) -> Entry {
        Entry { key: key.into(), service: Service::default(), lease: 0 }
    }

    #[test]
    fn subtree_lookup_follows_coredns() {
        let mut view = View::new(1);
        for key in ["/s/local/prom/node/a", "/s/local/prom/node/b", "/s/local/prom/nodex/c", "/s/local/prom/mx"] {
            view.insert(entry(key));
        }
        let keys: Vec<&str> = view.lookup("/s/local/prom/node").iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["/s/local/prom/node/a", "/s/local/prom/node/b"]);
        assert_eq!(view.lookup("/s/local/prom/mx").len(), 1);
        assert!(view.lookup("/s/local/prom/m").is_empty());
        assert!(view.exists("/s/local"));
        assert!(!view.exists("/s/local/pro"));
        view.insert(entry("/s/local/prom/node"));
        assert_eq!(view.lookup("/s/local/prom/node").len(), 2, "own value shadowed by children");
    }
}
