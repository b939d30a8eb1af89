//! What may enter the view: a key below the path that maps to a valid DNS name inside one of our zones, with
//! a value that parses and whose host is an address or a valid name. Anything else is skipped, counted once
//! per key and revision, and logged with a rate limit, so hostile or broken data can neither break answers
//! nor flood the log.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etcd_client::KeyValue;
use promsd_common::Service;

use crate::State;
use crate::view::Entry;

/// Values larger than this are refused: SkyDNS values are a few dozen bytes, and a TXT answer must still fit
/// in a DNS message.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
const WARNINGS_PER_MINUTE: u32 = 20;
const MAX_REMEMBERED: usize = 100_000;

pub struct Ingest {
    state: Arc<State>,
    reported: HashSet<(Vec<u8>, i64)>,
    window: Instant,
    warned: u32,
    suppressed: u64,
}

impl Ingest {
    pub fn new(state: Arc<State>) -> Self {
        Self { state, reported: HashSet::new(), window: Instant::now(), warned: 0, suppressed: 0 }
    }

    /// The entry for a key-value from etcd, or None (reported) when it must not be answered.
    pub fn entry(&mut self, kv: &KeyValue) -> Option<Entry> {
        match self.check(kv) {
            Ok(entry) => Some(entry),
            Err(problem) => {
                self.report(kv, &problem);
                None
            }
        }
    }

    fn check(&self, kv: &KeyValue) -> Result<Entry, String> {
        let key = kv.key_str().map_err(|_| "key is not UTF-8".to_string())?;
        if kv.value().len() > MAX_VALUE_BYTES {
            return Err(format!("value of {} bytes is larger than {MAX_VALUE_BYTES}", kv.value().len()));
        }
        let catalog = &self.state.catalog;
        let name = catalog.prefix.name_for_key(key).ok_or("key is not below the path")?;
        check_name(&name).map_err(|e| format!("key gives an invalid DNS name: {e}"))?;
        if catalog.zone_for(&name).is_none() {
            return Err(format!("{name} is outside every zone dnsd serves"));
        }
        let service = Service::parse(kv.value()).map_err(|e| e.to_string())?;
        let host = service.host.trim_end_matches('.');
        if !host.is_empty() && host.parse::<IpAddr>().is_err() {
            check_name(host)
                .map_err(|e| format!("host {:?} is neither an IP address nor a valid name: {e}", service.host))?;
        }
        Ok(Entry { key: key.to_string(), service, lease: kv.lease() })
    }

    fn report(&mut self, kv: &KeyValue, problem: &str) {
        if self.reported.len() >= MAX_REMEMBERED {
            self.reported.clear(); // only de-duplication: bounded memory, at the price of a rare repeat
        }
        if !self.reported.insert((kv.key().to_vec(), kv.mod_revision())) {
            return;
        }
        self.state.malformed.fetch_add(1, Ordering::Relaxed);
        if self.window.elapsed() >= Duration::from_secs(60) {
            if self.suppressed > 0 {
                tracing::warn!(suppressed = self.suppressed, "more malformed SkyDNS values were skipped");
            }
            self.window = Instant::now();
            self.warned = 0;
            self.suppressed = 0;
        }
        if self.warned < WARNINGS_PER_MINUTE {
            self.warned += 1;
            let key: String = String::from_utf8_lossy(kv.key()).chars().take(300).collect();
            tracing::warn!(%key, error = %problem, "skipping malformed SkyDNS value");
        } else {
            self.suppressed += 1;
        }
    }
}

/// A name that fits in DNS: labels of 1-63 bytes without dots, spaces or control characters, 253 bytes in all.
fn check_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!("{} bytes, more than 253", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {:?} is not 1-63 bytes", label.chars().take(70).collect::<String>()));
        }
        if label.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\' || b == b'"') {
            return Err(format!("label {label:?} holds a space, quote, backslash or control character"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_must_fit_in_dns() {
        assert!(check_name("server01.node.prom.local").is_ok());
        assert!(check_name("_etcd-client._tcp.prom.local").is_ok());
        assert!(check_name(&format!("{}.prom.local", "a".repeat(64))).is_err());
        assert!(check_name(&vec!["abcdefghi"; 30].join(".")).is_err());
        assert!(check_name("a..b").is_err());
        assert!(check_name("a b.c").is_err());
    }
}
