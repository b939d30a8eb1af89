//! What may enter the view: a key below the path that maps to a valid DNS name inside one of our zones, with
//! a value that parses and whose host is an address or a valid name. Anything else is skipped, counted once
//! per key and revision, and logged with a rate limit, so hostile or broken data can neither break answers
//! nor flood the log. Keys of zones dnsd does not serve are skipped silently: they are other servers' data.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use promsd_common::{RecordError, Service};
use thiserror::Error;

use super::Health;
use super::host_record::HostRecord;
use super::view::Entry;
use crate::config::Catalog;

/// Values larger than this are refused: SkyDNS values are a few dozen bytes, and a TXT answer must still fit
/// in a DNS message.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
const WARNINGS_PER_MINUTE: u32 = 20;
const MAX_REMEMBERED: usize = 100_000;

/// One key and value as etcd holds it.
#[derive(Debug, Clone, Copy)]
pub struct KeyValue<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub lease: i64,
    pub mod_revision: i64,
}

impl<'a> From<&'a etcd_client::KeyValue> for KeyValue<'a> {
    fn from(kv: &'a etcd_client::KeyValue) -> Self {
        Self { key: kv.key(), value: kv.value(), lease: kv.lease(), mod_revision: kv.mod_revision() }
    }
}

/// Why a key does not enter the view.
#[derive(Debug, Error)]
pub enum Skip {
    /// Another server's zone under the same path: not ours to answer, and not an error.
    #[error("key is outside every zone dnsd serves")]
    OutsideZones,
    #[error("key is not UTF-8")]
    KeyNotUtf8,
    #[error("key is not below the path")]
    NotBelowPath,
    #[error("value of {0} bytes is larger than {MAX_VALUE_BYTES}")]
    TooLarge(usize),
    #[error("key gives an invalid DNS name: {0}")]
    BadName(BadName),
    #[error(transparent)]
    Value(#[from] RecordError),
    #[error("host {host:?} is neither an IP address nor a valid name: {problem}")]
    BadHost { host: String, problem: BadName },
}

/// What is reported of a value: skipped whole, or served without its broken Prometheus fields.
#[derive(Clone, Copy)]
enum Problem<'a> {
    Skipped(&'a Skip),
    Fields(&'a promsd_common::LabelError),
}

/// Decides what enters the view, and reports what does not.
pub struct Ingest {
    catalog: Catalog,
    health: Arc<Health>,
    reported: HashSet<(Vec<u8>, i64)>,
    window: Instant,
    warned: u32,
    suppressed: u64,
}

impl Ingest {
    pub fn new(catalog: Catalog, health: Arc<Health>) -> Self {
        Self { catalog, health, reported: HashSet::new(), window: Instant::now(), warned: 0, suppressed: 0 }
    }

    /// The entry for a key-value from etcd, or None (reported when malformed) when it must not be answered.
    pub fn entry(&mut self, kv: KeyValue<'_>) -> Option<Entry> {
        match self.check(kv) {
            Ok(mut entry) => {
                // Labels Prometheus would reject are dropped; the record still answers, DNS and http_sd.
                let problems = entry.service.drop_invalid_prometheus_fields();
                if let Some(problem) = problems.first() {
                    self.report(kv, Problem::Fields(problem));
                }
                Some(entry)
            }
            Err(Skip::OutsideZones) => None,
            Err(problem) => {
                self.report(kv, Problem::Skipped(&problem));
                None
            }
        }
    }

    /// Whether the key may be in the view at all: a delete of any other key is ignored without a lookup.
    pub fn in_zones(&self, key: &[u8]) -> bool {
        std::str::from_utf8(key).ok().and_then(|key| self.catalog.relative_in_zones(key)).is_some()
    }

    fn check(&self, kv: KeyValue<'_>) -> Result<Entry, Skip> {
        let key = std::str::from_utf8(kv.key).map_err(|_| Skip::KeyNotUtf8)?;
        // Zones before anything costly: other servers' keys under the same path are common and cheap to skip.
        let Some(relative) = self.catalog.relative_in_zones(key) else {
            return Err(if key.starts_with(self.catalog.prefix.as_str()) {
                Skip::OutsideZones
            } else {
                Skip::NotBelowPath
            });
        };
        if kv.value.len() > MAX_VALUE_BYTES {
            return Err(Skip::TooLarge(kv.value.len()));
        }
        // The name is the key's segments reversed and joined with dots, as many bytes: no need to build it to
        // check its labels (a segment may hold dots, which make more labels of it, as in the name).
        check_labels(relative, &['/', '.']).map_err(Skip::BadName)?;
        let service = Service::parse(kv.value)?;
        // An SRV or MX host (external-dns's forms) is checked for its target.
        let host = HostRecord::parse(&service.host).map_or(service.host.as_str(), |record| record.target());
        let host = host.trim_end_matches('.');
        if !host.is_empty() && host.parse::<IpAddr>().is_err() {
            check_name(host).map_err(|problem| Skip::BadHost { host: service.host.clone(), problem })?;
        }
        Ok(Entry { key: key.into(), service, lease: kv.lease })
    }

    fn report(&mut self, kv: KeyValue<'_>, problem: Problem<'_>) {
        if self.reported.len() >= MAX_REMEMBERED {
            self.reported.clear(); // only de-duplication: bounded memory, at the price of a rare repeat
        }
        if !self.reported.insert((kv.key.to_vec(), kv.mod_revision)) {
            return;
        }
        let counter = match problem {
            Problem::Skipped(_) => &self.health.malformed,
            Problem::Fields(_) => &self.health.bad_labels,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
            let key: String = String::from_utf8_lossy(kv.key).chars().take(300).collect();
            match problem {
                Problem::Skipped(error) => tracing::warn!(%key, %error, "skipping malformed SkyDNS value"),
                Problem::Fields(error) => tracing::warn!(%key, %error, "serving a SkyDNS value without its labels"),
            }
        } else {
            self.suppressed += 1;
        }
    }
}

/// Why a name cannot be a DNS name.
#[derive(Debug, Error)]
pub enum BadName {
    #[error("{0} bytes, more than 253")]
    TooLong(usize),
    #[error("label {0:?} is not 1-63 bytes")]
    LabelLength(String),
    #[error("label {0:?} holds a space, quote, backslash or control character")]
    LabelCharacters(String),
}

/// A name that fits in DNS: labels of 1-63 bytes without dots, spaces or control characters, 253 bytes in all.
fn check_name(name: &str) -> Result<(), BadName> {
    check_labels(name, &['.'])
}

/// [`check_name`] for labels separated by any of `separators`.
fn check_labels(name: &str, separators: &[char]) -> Result<(), BadName> {
    if name.len() > 253 {
        return Err(BadName::TooLong(name.len()));
    }
    for label in name.split(separators) {
        if label.is_empty() || label.len() > 63 {
            return Err(BadName::LabelLength(label.chars().take(70).collect()));
        }
        if label.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\' || b == b'"') {
            return Err(BadName::LabelCharacters(label.to_string()));
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
