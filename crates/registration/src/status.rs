//! What `registrar run` is doing, for its `/metrics`: whether the exporter is up and registered, how many
//! writes and etcd errors there were, and the lease it holds. Plain atomics, written where things happen;
//! `registrar`'s status page reads them at scrape time through a prometheus-client collector.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Status {
    /// The lease the record is bound to, to keep alive after a reconnect and to revoke at exit.
    pub lease: Mutex<Option<i64>>,
    pub exporter_up: AtomicBool,
    pub registered: AtomicBool,
    pub registrations: AtomicU64,
    pub etcd_errors: AtomicU64,
    pub lease_grants: AtomicU64,
    pub lease_ttl_seconds: AtomicI64,
    /// Another registrar (another owner) wrote the key: this one yields until the key is deleted.
    pub yielded: AtomicBool,
    /// Times another owner was found holding the key.
    pub conflicts: AtomicU64,
    /// Times the record was found deleted or overwritten in etcd and written again.
    pub restores: AtomicU64,
}

impl Status {
    /// The record was written.
    pub fn wrote(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
        self.registered.store(true, Ordering::Relaxed);
    }

    /// Another owner holds the key now.
    pub fn yielded_to(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        self.yielded.store(true, Ordering::Relaxed);
        self.registered.store(false, Ordering::Relaxed);
    }

    pub fn is_yielded(&self) -> bool {
        self.yielded.load(Ordering::Relaxed)
    }

    /// A new lease was granted.
    pub fn granted(&self, id: i64, ttl_seconds: i64) {
        if let Ok(mut lease) = self.lease.lock() {
            *lease = Some(id);
        }
        self.lease_grants.fetch_add(1, Ordering::Relaxed);
        self.lease_ttl_seconds.store(ttl_seconds, Ordering::Relaxed);
    }
}
