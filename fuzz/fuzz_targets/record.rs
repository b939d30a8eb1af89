//! Record values from etcd: a key and a value go through the ingest checks (SkyDNS JSON, names, hosts) into
//! a view, as a full load or as a watch event, and questions about the key's name and its parent are answered
//! over UDP (with and without EDNS) and TCP. No value may panic, and every reply must fit and parse.
//!
//! Input: one byte of knobs, the key below `/skydns/local/prom/` up to the first newline, then the value.
//! The value is also stored at a fixed key, so it is answered even when the fuzzed key is not valid. Knobs:
//! bit 0 puts the key under a lease, bit 1 makes it a watch event after the load, bits 2-3 pick the EDNS
//! size UDP questions advertise, bit 4 sends UDP through the answer cache.

#![no_main]

use dnsd::store::{Event, KeyValue};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;
use promsd_fuzz::{Kv, PATH, Path, catalog, exchange, load};

const ZONE_KEY: &str = "/skydns/local/prom/";
const FIXED_KEY: &str = "/skydns/local/prom/value/v";

/// What the fuzzed record lives beside: a sibling with a group, a CNAME target, a name server.
fn neighbours() -> Vec<Kv> {
    vec![
        Kv::new("/skydns/local/prom/value/w", r#"{"host":"10.0.0.2","port":9100,"group":"g"}"#, 0),
        Kv::new("/skydns/local/prom/node/web01", r#"{"host":"10.0.0.1","port":9100}"#, 0),
        Kv::new("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.53"}"#, 0),
    ]
}

const QUESTIONS: [RecordType; 8] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::MX,
    RecordType::ANY,
];

fn request(name: &Name, rtype: RecordType, udp_size: Option<u16>) -> Vec<u8> {
    let mut message = Message::query();
    message.add_query(Query::query(name.clone(), rtype));
    if let Some(size) = udp_size {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        message.set_edns(edns);
    }
    message.to_vec().expect("a query encodes")
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else { return };
    let (suffix, value) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };
    let key = [ZONE_KEY.as_bytes(), suffix].concat();
    let lease = if knob & 0x01 != 0 { 42 } else { 0 };
    let mut kvs = neighbours();
    kvs.push(Kv::new(FIXED_KEY, value, lease));
    // As part of the first read of etcd, or as a watch event on a loaded view.
    let store = if knob & 0x02 != 0 {
        let (store, mut writer) = load(catalog(), kvs, 10);
        let kv = KeyValue { key: &key, value, lease, mod_revision: 11 };
        writer.apply([Event::Put(kv)], 11);
        store
    } else {
        kvs.push(Kv::new(key.clone(), value, lease));
        load(catalog(), kvs, 10).0
    };
    let view = store.snapshot();

    let mut names: Vec<Name> = Vec::new();
    let prefix = promsd_common::KeyPrefix::new(PATH);
    for key in [std::str::from_utf8(&key).ok(), Some(FIXED_KEY)].into_iter().flatten() {
        let Some(name) = prefix.name_for_key(key) else { continue };
        let Ok(name) = Name::from_ascii(format!("{name}.")) else { continue };
        let parent = name.base_name();
        for name in [name, parent] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    // The EDNS size the client advertises (none, or one at, between or above dnsd's bounds) and whether UDP
    // goes through the answer cache: from the knobs.
    let udp_size = [None, Some(512), Some(1000), Some(4096)][usize::from(knob >> 2 & 0x03)];
    let udp_path = if knob & 0x10 != 0 { Path::UdpCached { id: 0xbeef, flags: [0x01, 0x10] } } else { Path::Udp };
    for name in &names {
        for rtype in QUESTIONS {
            let udp = request(name, rtype, udp_size);
            exchange(&store, &view, &udp, udp_path);
            exchange(&store, &view, &request(name, rtype, None), Path::Tcp);
        }
    }
});
