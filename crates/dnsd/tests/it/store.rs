//! The store and the answer cache in process, without sockets or etcd: etcd's events go straight to the
//! writer, questions straight to the resolver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsd::config::{Catalog, LeaseBounds, Zone};
use dnsd::net::cache::{AnswerCache, Key};
use dnsd::store::{Event, KeyValue, Store, Writer};
use dnsd::wire::{Transport, respond};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use promsd_common::KeyPrefix;

fn store() -> (Arc<Store>, Writer) {
    let catalog = Catalog::new(vec![Zone::new("prom.local").expect("zone")], KeyPrefix::new("/skydns"));
    let store = Arc::new(Store::new(catalog));
    let writer = Writer::new(store.clone());
    (store, writer)
}

fn put<'a>(key: &'a str, value: &'a str) -> Event<'a> {
    Event::Put(KeyValue { key: key.as_bytes(), value: value.as_bytes(), lease: 0, mod_revision: 1 })
}

fn query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    query.to_vec().expect("encode")
}

/// What the slow path answers now, as a message.
fn ask(store: &Store, request: &[u8]) -> Message {
    let view = store.snapshot();
    let resolver = dnsd::answer::Resolver::new(store.catalog(), &view, &store.leases, LeaseBounds::default());
    Message::from_vec(&respond(request, Transport::Udp, &resolver).bytes.expect("answered")).expect("decodes")
}

#[test]
fn batches_apply_in_place_and_publish_whole() {
    let (store, mut writer) = store();
    let load = writer.begin_load(10);
    writer.finish_load(load, Duration::ZERO);
    assert!(store.is_ready());
    let before = store.snapshot();
    writer.apply(
        [
            put("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1","port":9100}"#),
            put("/skydns/local/prom/node/b", r#"{"host":"10.0.0.2","port":9100}"#),
            put("/skydns/local/prom/web/c", r#"{"host":"10.0.0.3","port":80}"#),
            put("/skydns/org/example/x", r#"{"host":"10.9.9.9"}"#),
        ],
        11,
    );
    let after = store.snapshot();
    assert_eq!((before.len(), after.len()), (0, 3), "the old snapshot is untouched; other zones stay out");
    assert_eq!((after.revision, after.serial, after.names), (11, 11, 2));
    assert_eq!(ask(&store, &query("node.prom.local.", RecordType::SRV)).answers.len(), 2);

    // A value that no longer parses removes the key: answering the old value would be wrong.
    writer.apply([put("/skydns/local/prom/node/a", "{broken")], 12);
    writer.apply([Event::Delete(b"/skydns/local/prom/web/c"), Event::Delete(b"/skydns/org/example/x")], 13);
    let now = store.snapshot();
    assert_eq!((now.len(), now.names, now.serial), (1, 1, 13));
    assert_eq!(store.health.malformed_skipped(), 1);
    assert_eq!(ask(&store, &query("web.prom.local.", RecordType::SRV)).metadata.response_code, ResponseCode::NXDomain);

    // Events that change nothing publish nothing.
    let generation = store.snapshot().generation;
    writer.apply([Event::Delete(b"/skydns/local/prom/none")], 14);
    assert_eq!(store.snapshot().generation, generation);
}

#[test]
fn a_reload_shares_unchanged_values_with_the_view_it_replaces() {
    let (store, mut writer) = store();
    let values = [
        ("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1","port":9100}"#),
        ("/skydns/local/prom/node/b", r#"{"host":"10.0.0.2","port":9100}"#),
    ];
    let kvs = |changed: &'static str| {
        values.map(|(key, value)| KeyValue {
            key: key.as_bytes(),
            value: if key.ends_with('b') { changed.as_bytes() } else { value.as_bytes() },
            lease: 0,
            mod_revision: 1,
        })
    };
    let mut load = writer.begin_load(5);
    writer.load_page(&mut load, kvs(r#"{"host":"10.0.0.2","port":9100}"#));
    writer.finish_load(load, Duration::ZERO);
    let first = store.snapshot();
    let mut load = writer.begin_load(9);
    writer.load_page(&mut load, kvs(r#"{"host":"10.0.0.22","port":9100}"#));
    let broken = KeyValue { key: b"/skydns/local/prom/node/c", value: b"{", lease: 0, mod_revision: 8 };
    writer.load_page(&mut load, [broken]);
    writer.finish_load(load, Duration::ZERO);
    assert_eq!(store.health.malformed_skipped(), 1, "a reload skips and counts what does not parse");
    let second = store.snapshot();
    let shared =
        |key: &str| Arc::ptr_eq(first.get_shared(key).expect("first"), second.get_shared(key).expect("second"));
    assert!(shared(values[0].0), "an unchanged value is stored once");
    assert!(!shared(values[1].0), "a changed one is new");
    assert_eq!(second.get(values[1].0).map(|e| e.service.host.as_str()), Some("10.0.0.22"));
    assert_eq!(store.health.resyncs.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(second.serial > first.serial);
}

/// A change drops the cached answers that read it, and only those: the others are still served from the
/// cache, and everything served equals what the slow path answers at that moment (serial included).
#[test]
fn a_change_drops_only_the_cached_answers_that_read_it() {
    let (store, mut writer) = store();
    let load = writer.begin_load(1);
    writer.finish_load(load, Duration::ZERO);
    let mut events = Vec::new();
    let keys: Vec<String> =
        (0..4).flat_map(|s| (0..3).map(move |i| format!("/skydns/local/prom/svc{s}/host{i}"))).collect();
    for (n, key) in keys.iter().enumerate() {
        events.push((key.clone(), format!(r#"{{"host":"10.0.0.{}","port":9100}}"#, n + 1)));
    }
    writer.apply(events.iter().map(|(k, v)| put(k, v)), 2);

    let questions = [
        query("svc0.prom.local.", RecordType::SRV),
        query("svc1.prom.local.", RecordType::SRV),
        query("host0.svc2.prom.local.", RecordType::A),
        query("new.svc3.prom.local.", RecordType::A),
        query("prom.local.", RecordType::SOA),
    ];
    let mut cache = AnswerCache::default();
    let fill = |cache: &mut AnswerCache| {
        let view = store.snapshot();
        cache.refresh(&view, &store, 0);
        let resolver = dnsd::answer::Resolver::new(store.catalog(), &view, &store.leases, LeaseBounds::default());
        for request in &questions {
            let key = Key::of(request).expect("cacheable");
            if cache.answer(&key, request, view.serial, Instant::now()).is_none() {
                let reply = respond(request, Transport::Udp, &resolver);
                cache.insert(
                    key,
                    reply.bytes.as_deref().expect("answered"),
                    reply.outcome,
                    reply.reuse.expect("reusable"),
                    Instant::now(),
                );
            }
        }
    };
    fill(&mut cache);
    let cached = |cache: &mut AnswerCache| -> Vec<bool> {
        let view = store.snapshot();
        cache.refresh(&view, &store, 0);
        questions
            .iter()
            .map(|request| {
                let hit = cache.answer(&Key::of(request).expect("key"), request, view.serial, Instant::now());
                if let Some((bytes, _)) = &hit {
                    let fresh = ask(&store, request);
                    assert_eq!(Message::from_vec(bytes).expect("decodes"), fresh, "a stale cached answer");
                }
                hit.is_some()
            })
            .collect()
    };
    assert_eq!(cached(&mut cache), [true; 5]);

    writer.apply([put("/skydns/local/prom/svc1/host9", r#"{"host":"10.0.1.9","port":9100}"#)], 3);
    assert_eq!(cached(&mut cache), [true, false, true, true, true], "only svc1's SRV read svc1");
    fill(&mut cache);
    writer.apply([put("/skydns/local/prom/svc3/new", r#"{"host":"10.0.3.1"}"#)], 4);
    assert_eq!(cached(&mut cache), [true, true, true, false, true], "the NXDOMAIN read the name it lacked");
    assert_eq!(ask(&store, &questions[3]).answers.len(), 1);
    fill(&mut cache);
    // Several publications between two looks at the cache: it catches up over all of them.
    writer.apply([Event::Delete(b"/skydns/local/prom/svc0/host0")], 5);
    writer.apply([Event::Delete(b"/skydns/local/prom/svc2/host0")], 6);
    assert_eq!(cached(&mut cache), [false, true, false, true, true]);
    // A reload may change anything: the cache starts over.
    fill(&mut cache);
    let load = writer.begin_load(7);
    writer.finish_load(load, Duration::ZERO);
    assert_eq!(cached(&mut cache), [false; 5]);
}

/// A lease's TTL counts down: an answer with one is served from the cache for a second at most, while one
/// without stays until what it read changes.
#[test]
fn cached_answers_with_lease_ttls_expire() {
    let (store, mut writer) = store();
    let load = writer.begin_load(1);
    writer.finish_load(load, Duration::ZERO);
    let leased = Event::Put(KeyValue {
        key: b"/skydns/local/prom/leased/a",
        value: br#"{"host":"10.0.0.1","port":9100}"#,
        lease: 77,
        mod_revision: 2,
    });
    writer.apply([leased, put("/skydns/local/prom/plain/a", r#"{"host":"10.0.0.2","port":9100}"#)], 2);
    let view = store.snapshot();
    let resolver = dnsd::answer::Resolver::new(store.catalog(), &view, &store.leases, LeaseBounds::default());
    let mut cache = AnswerCache::default();
    cache.refresh(&view, &store, 0);
    let now = Instant::now();
    let requests = [query("leased.prom.local.", RecordType::SRV), query("plain.prom.local.", RecordType::SRV)];
    for request in &requests {
        let reply = respond(request, Transport::Udp, &resolver);
        let bytes = reply.bytes.as_deref().expect("answered");
        cache.insert(Key::of(request).expect("key"), bytes, reply.outcome, reply.reuse.expect("reusable"), now);
    }
    let hit = |request: &[u8], at: Instant| cache.answer(&Key::of(request).expect("key"), request, view.serial, at);
    assert!(hit(&requests[0], now).is_some() && hit(&requests[1], now).is_some());
    let later = now + Duration::from_secs(2);
    assert!(hit(&requests[0], later).is_none(), "the leased answer went stale");
    assert!(hit(&requests[1], later).is_some(), "nothing changed for the plain one");
}
