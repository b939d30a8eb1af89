//! What the fuzz targets share: a store loaded the way dnsd loads etcd's data, and the checks every reply
//! must pass. The targets are in `fuzz_targets/`; `scripts/fuzz` builds and runs them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsd::answer::Resolver;
use dnsd::config::{Catalog, LeaseBounds, SoaSettings, zones_for};
use dnsd::net::cache::{AnswerCache, Key};
use dnsd::store::{KeyValue, Store, View, Writer};
use dnsd::wire::{MAX_UDP_PAYLOAD, Transport, respond};
use hickory_proto::op::Message;
use promsd_common::KeyPrefix;

/// The key prefix of every record here (dnsd's default `--path`).
pub const PATH: &str = "/skydns";

/// The zones dnsd would serve with `--zone prom.local,10.0.0.0/24`.
pub fn catalog() -> Catalog {
    let soa = SoaSettings::default();
    let mut zones = Vec::new();
    for spec in ["prom.local", "10.0.0.0/24"] {
        zones.extend(zones_for(spec, &soa).expect("valid zone"));
    }
    Catalog::new(zones, KeyPrefix::new(PATH))
}

/// One etcd key-value, owned: what a range read returns.
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
}

impl Kv {
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, lease: i64) -> Self {
        Self { key: key.into(), value: value.into(), lease }
    }

    pub fn borrowed(&self, mod_revision: i64) -> KeyValue<'_> {
        KeyValue { key: &self.key, value: &self.value, lease: self.lease, mod_revision }
    }
}

/// A store and its writer after a full load of `kvs` at `revision`, as dnsd's first read of etcd makes it:
/// the keys sorted as etcd returns them, each through the ingest checks, published as one snapshot.
pub fn load(catalog: Catalog, mut kvs: Vec<Kv>, revision: i64) -> (Arc<Store>, Writer) {
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    kvs.dedup_by(|a, b| a.key == b.key);
    let store = Arc::new(Store::new(catalog));
    let mut writer = Writer::new(store.clone());
    let mut load = writer.begin_load(revision);
    writer.load_page(&mut load, kvs.iter().map(|kv| kv.borrowed(revision)));
    writer.finish_load(load, Duration::ZERO);
    (store, writer)
}

/// How a request reaches dnsd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Udp,
    Tcp,
    /// UDP through a receive loop's answer cache: the first request is answered and cached, then a second
    /// one that differs only in the header bits the cache patches (given here) is answered from the cache.
    UdpCached {
        id: u16,
        flags: [u8; 2],
    },
}

/// Answers `request` from `view` over `path` and checks the reply; panics (a crash for libFuzzer) when a
/// check fails.
pub fn exchange(store: &Store, view: &View, request: &[u8], path: Path) {
    let resolver = Resolver::new(store.catalog(), view, &store.leases, LeaseBounds::default());
    match path {
        Path::Udp => {
            let reply = respond(request, Transport::Udp, &resolver);
            check(request, reply.bytes.as_deref(), Transport::Udp);
        }
        Path::Tcp => {
            let reply = respond(request, Transport::Tcp, &resolver);
            check(request, reply.bytes.as_deref(), Transport::Tcp);
        }
        Path::UdpCached { id, flags } => cached(&resolver, view, request, id, flags),
    }
}

/// The cache's promise: it never answers anything the slow path would not.
fn cached(resolver: &Resolver<'_>, view: &View, request: &[u8], id: u16, flags: [u8; 2]) {
    let Some(key) = Key::of(request) else { return };
    let now = Instant::now();
    let mut cache = AnswerCache::default();
    let first = respond(request, Transport::Udp, resolver);
    check(request, first.bytes.as_deref(), Transport::Udp);
    let (Some(bytes), Some(reuse)) = (&first.bytes, first.reuse) else { return };
    cache.insert(key.clone(), bytes, first.outcome, reuse, now);
    // The same question with another ID and other header bits (RD, CD, and the ones a query should not set).
    let mut again = request.to_vec();
    again[..2].copy_from_slice(&id.to_be_bytes());
    again[2] = (again[2] & 0xf8) | (flags[0] & 0x07);
    again[3] = flags[1];
    assert_eq!(Key::of(&again).as_ref(), Some(&key), "the header is not part of the key");
    let fresh = respond(&again, Transport::Udp, resolver);
    let from_cache = cache.answer(&key, &again, view.serial, now);
    match (&fresh.bytes, &from_cache) {
        (Some(bytes), Some((cached, outcome))) => {
            if cached != bytes {
                panic!("the cache answers {} with {}, the slow path {}", hex(&again), hex(cached), hex(bytes));
            }
            assert_eq!(*outcome, fresh.outcome, "the cached outcome differs");
        }
        (None, Some(_)) => panic!("the cache answers what the slow path does not"),
        // A cached answer may be gone (a lease's TTL after a second); then the slow path answers.
        (_, None) => {}
    }
}

/// The limit dnsd must keep a reply to `request` within: 64 KiB over TCP; over UDP 512 bytes without EDNS,
/// else the client's advertised size within [512, MAX_UDP_PAYLOAD] (RFC 6891 6.2.5: below 512 is 512).
/// Worked out here from the request itself, not taken from dnsd.
pub fn limit(request: &[u8], transport: Transport) -> usize {
    if transport == Transport::Tcp {
        return usize::from(u16::MAX);
    }
    match Message::from_vec(request).ok().and_then(|m| m.edns) {
        Some(edns) => usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        None => 512,
    }
}

/// The checks on every reply: within the client's limit, a well-formed DNS response to the request's ID.
pub fn check(request: &[u8], reply: Option<&[u8]>, transport: Transport) {
    let Some(reply) = reply else { return };
    let limit = limit(request, transport);
    assert!(
        reply.len() <= limit,
        "a {}-byte reply over {transport:?} exceeds the client's limit of {limit}",
        reply.len()
    );
    let message = match Message::from_vec(reply) {
        Ok(message) => message,
        Err(e) => panic!("the reply does not parse ({e}): {}", hex(reply)),
    };
    assert!(reply[2] & 0x80 != 0, "the reply is not a response");
    assert!(request.len() >= 2 && reply[..2] == request[..2], "the reply's ID is not the request's");
    assert!(message.edns.is_none_or(|e| e.max_payload() == MAX_UDP_PAYLOAD), "advertises another UDP size");
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
