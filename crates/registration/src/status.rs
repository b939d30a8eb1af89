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
}

impl Status {
    /// The record was written.
    pub fn wrote(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
        self.registered.store(true, Ordering::Relaxed);
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
