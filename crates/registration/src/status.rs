//! What `registrar run` is doing, for its `/metrics`: whether the exporter is up and registered, how many
//! writes and etcd errors there were, and the lease it holds.

use std::fmt::Write;
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

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let flag = |b: &AtomicBool| u8::from(b.load(Ordering::Relaxed)).to_string();
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        metric(
            "registrar_exporter_up",
            "gauge",
            "Whether the exporter accepts connections on its port.",
            flag(&self.exporter_up),
        );
        metric(
            "registrar_registered",
            "gauge",
            "Whether the exporter's record is written in etcd.",
            flag(&self.registered),
        );
        metric("registrar_registrations_total", "counter", "Writes of the record to etcd.", count(&self.registrations));
        metric(
            "registrar_etcd_errors_total",
            "counter",
            "Failed attempts to register or keep the lease.",
            count(&self.etcd_errors),
        );
        metric(
            "registrar_lease_grants_total",
            "counter",
            "etcd leases granted for the record.",
            count(&self.lease_grants),
        );
        let ttl = self.lease_ttl_seconds.load(Ordering::Relaxed);
        metric(
            "registrar_lease_ttl_seconds",
            "gauge",
            "TTL of the lease the record is bound to (0: no lease).",
            ttl.to_string(),
        );
        let held = self.lease.lock().ok().and_then(|l| *l).is_some();
        metric("registrar_lease_held", "gauge", "Whether a lease is held for the record.", u8::from(held).to_string());
        let version = env!("CARGO_PKG_VERSION");
        let _ = writeln!(
            out,
            "# HELP registrar_build_info registrar's version.\n# TYPE registrar_build_info gauge\nregistrar_build_info{{version=\"{version}\"}} 1"
        );
        out
    }
}
