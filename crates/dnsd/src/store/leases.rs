//! TTLs of keys under an etcd lease: the lease's remaining time, clamped to [min-lease-ttl, max-lease-ttl], as
//! CoreDNS answers, but without an etcd call per query. A tracker asks etcd once for each lease the view
//! uses, and again only for long leases (whose clamped remaining time can change) every third of their TTL.
//! A lease not known yet answers with the value's TTL rule alone.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use promsd_backoff::Backoff;
use promsd_common::EtcdArgs;
use tokio_util::sync::CancellationToken;

use super::Store;
pub use crate::config::LeaseBounds;
use crate::config::Live;

/// TTL of records whose value has no `ttl` and no lease (CoreDNS's default).
pub const DEFAULT_TTL: u32 = 300;
const ROUND: Duration = Duration::from_secs(1);
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Lease {
    granted: i64,
    remaining: i64,
    fetched: Instant,
}

/// The leases the view uses (kept by the writer as keys come and go), and what etcd said of each.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: RwLock<HashMap<i64, Option<Lease>>>,
}

impl LeaseTable {
    /// The lease's remaining seconds now, if known and still positive.
    pub fn remaining(&self, id: i64) -> Option<i64> {
        let leases = self.leases.read().ok()?;
        let lease = (*leases.get(&id)?)?;
        let elapsed = i64::try_from(lease.fetched.elapsed().as_secs()).unwrap_or(i64::MAX);
        let left = lease.remaining.saturating_sub(elapsed);
        (left > 0).then_some(left)
    }

    /// A key of the view now uses `id`.
    pub(super) fn track(&self, id: i64) {
        if let Ok(mut leases) = self.leases.write() {
            leases.entry(id).or_insert(None);
        }
    }

    /// No key of the view uses `id` any more.
    pub(super) fn untrack(&self, id: i64) {
        if let Ok(mut leases) = self.leases.write() {
            leases.remove(&id);
        }
    }

    /// The leases to ask etcd about: unknown ones, and long ones (whose clamped remaining time can change)
    /// every third of their TTL.
    fn due(&self, bounds: LeaseBounds) -> Vec<i64> {
        let Ok(leases) = self.leases.read() else { return Vec::new() };
        let due = |lease: &Option<Lease>| match lease {
            None => true,
            // Shorter leases always clamp to the minimum: asking again cannot change the answer.
            Some(lease) if lease.granted <= bounds.min.as_secs() as i64 => false,
            Some(lease) => lease.fetched.elapsed() >= Duration::from_secs((lease.granted / 3).max(1) as u64),
        };
        leases.iter().filter(|(_, lease)| due(lease)).map(|(id, _)| *id).collect()
    }

    /// Records what etcd said, for a lease the view still uses.
    fn set(&self, id: i64, lease: Option<Lease>) {
        if let Ok(mut leases) = self.leases.write()
            && let Some(known) = leases.get_mut(&id)
        {
            *known = lease;
        }
    }
}

/// The TTL to answer for a key: the clamped lease time and the value's `ttl`, the smaller when both exist,
/// else whichever exists, else 300.
pub fn ttl(value_ttl: u32, lease_remaining: Option<i64>, bounds: LeaseBounds) -> u32 {
    let lease = lease_remaining.map(|left| {
        let left = u64::try_from(left).unwrap_or(0).clamp(bounds.min.as_secs(), bounds.max.as_secs());
        u32::try_from(left).unwrap_or(u32::MAX)
    });
    match (lease, value_ttl) {
        (Some(lease), 0) => lease,
        (Some(lease), value) => lease.min(value),
        (None, 0) => DEFAULT_TTL,
        (None, value) => value,
    }
}

/// Keeps `store.leases` current for the leases the view uses, until `shutdown`.
pub async fn track(etcd: EtcdArgs, store: Arc<Store>, live: Arc<Live>, shutdown: CancellationToken) {
    let mut client = None;
    let mut ticker = tokio::time::interval(ROUND);
    // While etcd is unreachable, the shared backoff spaces the attempts (the watch reports the outage).
    let mut backoff = Backoff::new(ROUND, Duration::from_secs(30));
    let mut next_attempt = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let due = store.leases.due(live.lease_bounds());
        if due.is_empty() {
            continue;
        }
        if client.is_none() {
            if Instant::now() < next_attempt {
                continue;
            }
            client = etcd.connect().await.ok().map(|(client, _)| client);
            if client.is_none() {
                next_attempt = Instant::now() + backoff.next_delay();
            }
        }
        let Some(etcd_client) = client.as_mut() else { continue };
        for id in due {
            let asked = tokio::time::timeout(RPC_TIMEOUT, etcd_client.lease_time_to_live(id, None)).await;
            match asked {
                Ok(Ok(response)) if response.ttl() > 0 => {
                    backoff.reset();
                    store.leases.set(
                        id,
                        Some(Lease {
                            granted: response.granted_ttl(),
                            remaining: response.ttl(),
                            fetched: Instant::now(),
                        }),
                    )
                }
                // Expired or revoked: its keys' delete events are on their way through the watch.
                Ok(Ok(_)) => {
                    backoff.reset();
                    store.leases.set(id, None)
                }
                Ok(Err(e)) => {
                    tracing::debug!(lease = id, error = %e, "cannot read lease TTL");
                    client = None;
                    next_attempt = Instant::now() + backoff.next_delay();
                    break;
                }
                Err(_) => {
                    client = None;
                    next_attempt = Instant::now() + backoff.next_delay();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rules_follow_coredns() {
        let bounds = LeaseBounds::default();
        assert_eq!(ttl(0, None, bounds), 300);
        assert_eq!(ttl(60, None, bounds), 60);
        assert_eq!(ttl(0, Some(5), bounds), 30, "clamped to min-lease-ttl");
        assert_eq!(ttl(0, Some(100_000), bounds), 86400, "clamped to max-lease-ttl");
        assert_eq!(ttl(60, Some(3600), bounds), 60, "the smaller of the two");
        assert_eq!(ttl(7200, Some(3600), bounds), 3600);
        assert_eq!(ttl(0, Some(0), bounds), 30, "a lease whose time is unknown or ran out: the minimum");
    }
}
