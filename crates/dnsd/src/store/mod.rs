//! The store: the view of etcd's SkyDNS keys that every answer is read from, how etcd's data and events
//! become that view, and what is known of the leases it uses.
//!
//! One writer ([`Writer`], driven by [`follow`]) applies etcd's events to its own copy of the view and
//! publishes a snapshot after each batch; readers take the current snapshot ([`Store::snapshot`]) without
//! locks. A change log tells answer caches which keys changed since the snapshot they last saw, so cached
//! answers are dropped per name, not all at once.

mod changes;
pub mod follow;
pub mod host_record;
pub mod ingest;
pub mod leases;
pub mod members;
pub mod view;
mod writer;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use changes::Changes;
pub use host_record::HostRecord;
pub use ingest::KeyValue;
pub use leases::{DEFAULT_TTL, LeaseBounds, LeaseTable};
pub use view::{Entry, View};
pub use writer::{Event, Writer};

use crate::config::Catalog;

/// What the writer, the answering loops and the web endpoints share.
pub struct Store {
    catalog: Catalog,
    current: ArcSwap<View>,
    changes: Mutex<changes::ChangeLog>,
    pub leases: LeaseTable,
    pub health: Arc<Health>,
    /// What each etcd endpoint answered when last asked on its own.
    pub members: Arc<members::Members>,
    ready: tokio::sync::watch::Sender<bool>,
    /// Tells this process's snapshots from another's: generations restart at 0 with the process.
    pub epoch: u64,
    /// The last snapshots published, oldest first, for IXFR ([`Store::keep_history`] says how many).
    history: Mutex<std::collections::VecDeque<Arc<View>>>,
    history_len: std::sync::atomic::AtomicUsize,
    /// The generation of the last publication, for whoever waits for changes (NOTIFY).
    published: tokio::sync::watch::Sender<u64>,
}

/// How following etcd goes, for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct Health {
    /// Values skipped because they do not parse (each key and revision counted once).
    pub malformed: AtomicU64,
    /// Values served without their labels or scrape settings, which Prometheus would reject (each key and
    /// revision counted once).
    pub bad_labels: AtomicU64,
    /// Full reloads after the first (after compaction).
    pub resyncs: AtomicU64,
    /// How long the last full load took (read, parse, publish), in microseconds.
    last_load_micros: AtomicU64,
    connected: AtomicBool,
    /// When etcd last confirmed the view is current (a watch message or progress notification).
    synced: Mutex<Option<Instant>>,
}

impl Health {
    /// Whether a watch on etcd is established right now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub fn set_last_load(&self, took: Duration) {
        self.last_load_micros.store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn last_load(&self) -> Duration {
        Duration::from_micros(self.last_load_micros.load(Ordering::Relaxed))
    }

    pub fn mark_synced(&self) {
        if let Ok(mut synced) = self.synced.lock() {
            *synced = Some(Instant::now());
        }
    }

    /// How long ago etcd last confirmed the view is current; None before the first load.
    pub fn view_age(&self) -> Option<Duration> {
        self.synced.lock().ok().and_then(|s| *s).map(|at| at.elapsed())
    }

    pub fn malformed_skipped(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

/// A number that differs between two runs of dnsd: the start time in nanoseconds, mixed with the process id.
fn epoch() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (nanos as u64).rotate_left(17) ^ u64::from(std::process::id())
}

impl Store {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            current: ArcSwap::from_pointee(View::default()),
            changes: Mutex::new(changes::ChangeLog::default()),
            leases: LeaseTable::default(),
            health: Arc::default(),
            members: Arc::default(),
            ready: tokio::sync::watch::channel(false).0,
            epoch: epoch(),
            history: Mutex::default(),
            history_len: std::sync::atomic::AtomicUsize::new(0),
            published: tokio::sync::watch::channel(0).0,
        }
    }

    /// The zones and the key prefix the view is read through.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The current snapshot as an owned pointer, for holding on to it.
    pub fn snapshot(&self) -> Arc<View> {
        self.current.load_full()
    }

    /// The current snapshot for one query: it holds it while it answers, so a concurrent publish never tears
    /// an answer. Cheaper than [`Store::snapshot`]: no shared reference count to bump on every query.
    pub fn current(&self) -> arc_swap::Guard<Arc<View>> {
        self.current.load()
    }

    /// The keys that changed after the snapshot of `generation`, up to the current one.
    pub fn changes_since(&self, generation: u64) -> Changes {
        match self.changes.lock() {
            Ok(log) => log.since(generation),
            Err(_) => Changes::All,
        }
    }

    /// Publishes `view` (a cheap clone of the writer's copy) with what changed since the last one, and marks
    /// dnsd ready. The change log is written first: a reader that sees the new snapshot finds its changes.
    fn publish(&self, mut view: View, changed: Option<Vec<Arc<str>>>) {
        view.published = Some(std::time::SystemTime::now());
        if let Ok(mut log) = self.changes.lock() {
            log.push(view.generation, changed);
        }
        let generation = view.generation;
        let view = Arc::new(view);
        self.current.store(view.clone());
        let keep = self.history_len.load(Ordering::Relaxed);
        if keep > 0
            && let Ok(mut history) = self.history.lock()
        {
            history.push_back(view);
            while history.len() > keep {
                history.pop_front();
            }
        }
        self.ready.send_replace(true);
        self.published.send_replace(generation);
    }

    /// Keeps the last `snapshots` publications, to answer IXFR from ([`Store::history`]).
    pub fn keep_history(&self, snapshots: usize) {
        self.history_len.store(snapshots, Ordering::Relaxed);
    }

    /// The newest kept snapshot whose SOA serial is `serial`.
    pub fn history(&self, serial: u32) -> Option<Arc<View>> {
        let history = self.history.lock().ok()?;
        history.iter().rev().find(|view| view.serial == serial).cloned()
    }

    /// Changes with every publication: the generation published last.
    pub fn publications(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }
}
