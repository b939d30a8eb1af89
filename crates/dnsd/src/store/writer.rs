//! How etcd's data becomes the view: a full load builds a new view, each watch batch is applied to the
//! writer's copy in place (O(k log n) for k events), and either is published as one snapshot. The writer
//! also keeps the counts that would otherwise cost a walk over the whole view: names with keys below them,
//! and which leases are in use.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use super::Store;
use super::ingest::{Ingest, KeyValue};
use super::view::{Entry, View};

/// One etcd watch event.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Put(KeyValue<'a>),
    Delete(&'a [u8]),
}

/// The only writer of the store's view.
pub struct Writer {
    store: Arc<Store>,
    ingest: Ingest,
    view: View,
    /// Keys directly below each name, by the name's hash (a count for `/metrics`, not a lookup).
    names: HashMap<u64, u32>,
    hasher: RandomState,
    /// Keys per lease in use.
    leases: HashMap<i64, u32>,
}

/// A full load under way: the new view is built beside the published one, which answers until it is done.
pub struct Load {
    view: View,
    names: HashMap<u64, u32>,
    leases: HashMap<i64, u32>,
    /// The last key read, where the next page's walk over the answering view resumes.
    last: Option<Arc<str>>,
}

impl Writer {
    pub fn new(store: Arc<Store>) -> Self {
        let ingest = Ingest::new(store.catalog().clone(), store.health.clone());
        Self {
            store,
            ingest,
            view: View::default(),
            names: HashMap::new(),
            hasher: RandomState::new(),
            leases: HashMap::new(),
        }
    }

    /// Whether a view has been published (loaded at least once).
    pub fn is_loaded(&self) -> bool {
        self.view.generation > 0
    }

    /// The revision the writer's view reflects.
    pub fn revision(&self) -> i64 {
        self.view.revision
    }

    pub fn len(&self) -> usize {
        self.view.len()
    }

    pub fn is_empty(&self) -> bool {
        self.view.is_empty()
    }

    /// Starts a full load at `revision`.
    pub fn begin_load(&self, revision: i64) -> Load {
        Load { view: View::new(revision), names: HashMap::new(), leases: HashMap::new(), last: None }
    }

    /// Adds one page of a full load. A value equal to the one already answered is shared with the current
    /// view rather than stored twice, so a reload of a million keys does not double the memory it needs.
    pub fn load_page<'a>(&mut self, load: &mut Load, kvs: impl IntoIterator<Item = KeyValue<'a>>) {
        // etcd returns keys in order, as the view holds them: walk both side by side, no lookup per key.
        let mut answering = self.view.shared_after(load.last.as_deref()).peekable();
        for kv in kvs {
            let Some(entry) = self.ingest.entry(kv) else { continue };
            while answering.next_if(|old| old.key < entry.key).is_some() {}
            let entry = match answering.peek() {
                Some(old) if ***old == entry => Arc::clone(old),
                _ => Arc::new(entry),
            };
            count(&mut load.names, &mut load.leases, &self.hasher, &entry, 1);
            load.last = Some(entry.key.clone());
            load.view.insert(entry);
        }
    }

    /// Publishes a finished load whole, in place of whatever was answered before.
    pub fn finish_load(&mut self, load: Load, took: Duration) {
        let Load { mut view, names, leases, last: _ } = load;
        for id in leases.keys().filter(|id| !self.leases.contains_key(id)) {
            self.store.leases.track(*id);
        }
        for id in self.leases.keys().filter(|id| !leases.contains_key(id)) {
            self.store.leases.untrack(*id);
        }
        view.generation = self.view.generation + 1;
        view.serial = next_serial(self.view.serial, view.revision);
        view.names = names.len();
        let first = !self.is_loaded();
        self.view = view;
        self.names = names;
        self.leases = leases;
        self.store.health.set_last_load(took);
        if !first {
            self.store.health.resyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.store.publish(self.view.clone(), None);
    }

    /// Applies one watch response's events, then publishes them as one snapshot if any changed the view.
    pub fn apply<'a>(&mut self, events: impl IntoIterator<Item = Event<'a>>, revision: i64) {
        let mut changed = Vec::new();
        for event in events {
            let (key, entry) = match event {
                Event::Put(kv) => (kv.key, self.ingest.entry(kv).map(Arc::new)),
                Event::Delete(key) => (key, None),
            };
            if entry.is_none() && !self.ingest.in_zones(key) {
                continue;
            }
            let Ok(key) = std::str::from_utf8(key) else { continue };
            // A put that does not parse removes the key: etcd no longer holds the old value, so answering it
            // would be wrong.
            let old = match entry {
                Some(entry) => {
                    if count(&mut self.names, &mut self.leases, &self.hasher, &entry, 1) {
                        self.store.leases.track(entry.lease);
                    }
                    let key = entry.key.clone();
                    let old = self.view.insert(entry);
                    changed.push(key);
                    old
                }
                None => {
                    let old = self.view.remove(key);
                    if let Some(old) = &old {
                        changed.push(old.key.clone());
                    }
                    old
                }
            };
            if let Some(old) = old
                && count(&mut self.names, &mut self.leases, &self.hasher, &old, -1)
            {
                self.store.leases.untrack(old.lease);
            }
        }
        self.view.revision = self.view.revision.max(revision);
        if !changed.is_empty() {
            self.view.generation += 1;
            self.view.serial = next_serial(self.view.serial, self.view.revision);
            self.view.names = self.names.len();
            self.store.publish(self.view.clone(), Some(changed));
        }
    }
}

/// Counts `entry` in or out (`delta` 1 or -1); true when its lease came into use or went out of use.
fn count(
    names: &mut HashMap<u64, u32>,
    leases: &mut HashMap<i64, u32>,
    hasher: &RandomState,
    entry: &Entry,
    delta: i32,
) -> bool {
    if let Some((parent, _)) = entry.key.rsplit_once('/') {
        bump(names, hasher.hash_one(parent), delta);
    }
    entry.lease != 0 && bump(leases, entry.lease, delta)
}

/// Adds `delta` to the count of `key`, dropping it at zero; true when the key appeared or disappeared.
fn bump<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, key: K, delta: i32) -> bool {
    use std::collections::hash_map::Entry as Slot;
    match (counts.entry(key), delta > 0) {
        (Slot::Vacant(slot), true) => {
            slot.insert(1);
            true
        }
        (Slot::Vacant(_), false) => false,
        (Slot::Occupied(mut slot), true) => {
            *slot.get_mut() += 1;
            false
        }
        (Slot::Occupied(mut slot), false) => {
            *slot.get_mut() -= 1;
            if *slot.get() == 0 {
                slot.remove();
                return true;
            }
            false
        }
    }
}

/// The SOA serial after a change at `revision`: the revision itself (as secondaries expect it to grow with
/// the data), or one more than before when the revision did not grow (a cluster restored to an older state).
fn next_serial(previous: u32, revision: i64) -> u32 {
    let candidate = (revision & 0xffff_ffff) as u32;
    // RFC 1982 serial arithmetic: candidate is greater when it is ahead by less than half the space.
    let ahead = candidate.wrapping_sub(previous);
    if ahead != 0 && ahead < 0x8000_0000 { candidate } else { previous.wrapping_add(1) }
}

#[cfg(test)]
mod tests {
    use super::next_serial;

    #[test]
    fn serial_always_rises() {
        assert_eq!(next_serial(0, 7), 7);
        assert_eq!(next_serial(7, 9), 9);
        assert_eq!(next_serial(9, 9), 10, "a publication at the same revision still rises");
        assert_eq!(next_serial(100, 3), 101, "a restored, older cluster");
        assert_eq!(next_serial(u32::MAX, 1 << 32), 0, "wraps as RFC 1982 allows");
    }
}
