//! The settings a SIGHUP changes while dnsd runs: the lease TTL bounds and the query log. Read on every
//! query, so they are atomics, not a lock; a generation tells the answer caches that cached TTLs went stale.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::LeaseBounds;

#[derive(Debug)]
pub struct Live {
    min_lease_ms: AtomicU64,
    max_lease_ms: AtomicU64,
    log_queries: AtomicBool,
    generation: AtomicU64,
}

impl Live {
    pub fn new(lease_bounds: LeaseBounds, log_queries: bool) -> Self {
        let live = Self {
            min_lease_ms: AtomicU64::new(0),
            max_lease_ms: AtomicU64::new(0),
            log_queries: AtomicBool::new(log_queries),
            generation: AtomicU64::new(0),
        };
        live.store_bounds(lease_bounds);
        live
    }

    pub fn lease_bounds(&self) -> LeaseBounds {
        LeaseBounds {
            min: Duration::from_millis(self.min_lease_ms.load(Ordering::Relaxed)),
            max: Duration::from_millis(self.max_lease_ms.load(Ordering::Relaxed)),
        }
    }

    pub fn log_queries(&self) -> bool {
        self.log_queries.load(Ordering::Relaxed)
    }

    /// Rises whenever the lease bounds change: an answer cached before holds TTLs of the old bounds.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Applies `lease_bounds` and `log_queries`; returns what changed, as `name: old -> new`, for the log.
    pub fn apply(&self, lease_bounds: LeaseBounds, log_queries: bool) -> Vec<String> {
        let mut changed = Vec::new();
        let old = self.lease_bounds();
        if old != lease_bounds {
            self.store_bounds(lease_bounds);
            self.generation.fetch_add(1, Ordering::Release);
            if old.min != lease_bounds.min {
                changed.push(format!("min-lease-ttl: {:?} -> {:?}", old.min, lease_bounds.min));
            }
            if old.max != lease_bounds.max {
                changed.push(format!("max-lease-ttl: {:?} -> {:?}", old.max, lease_bounds.max));
            }
        }
        if self.log_queries.swap(log_queries, Ordering::Relaxed) != log_queries {
            changed.push(format!("query log: {} -> {log_queries}", !log_queries));
        }
        changed
    }

    fn store_bounds(&self, bounds: LeaseBounds) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.min_lease_ms.store(ms(bounds.min), Ordering::Relaxed);
        self.max_lease_ms.store(ms(bounds.max), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_of_the_bounds_makes_cached_ttls_stale() {
        let bounds = LeaseBounds::default();
        let live = Live::new(bounds, false);
        assert!(live.apply(bounds, false).is_empty());
        assert_eq!(live.generation(), 0);
        assert_eq!(live.apply(bounds, true), ["query log: false -> true"]);
        assert_eq!(live.generation(), 0, "the query log changes no answer");
        let wider = LeaseBounds { min: Duration::from_secs(45), ..bounds };
        assert_eq!(live.apply(wider, true), ["min-lease-ttl: 30s -> 45s"]);
        assert_eq!((live.generation(), live.lease_bounds()), (1, wider));
    }
}
