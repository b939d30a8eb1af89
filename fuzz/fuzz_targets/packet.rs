//! The packet path: request bytes -> parse -> answer -> encode, over UDP, TCP and the UDP answer cache, from
//! a view loaded as dnsd loads etcd's keys. The first byte picks the path (its low bits: 0 UDP, 1 TCP, else
//! the cache, with the cached copy's header bits from the rest of it), the rest is the request. No input
//! may panic, a reply must fit the client's limit and parse, and the cache must answer as the slow path.

#![no_main]

use std::sync::{Arc, OnceLock};

use dnsd::store::{Store, View};
use libfuzzer_sys::fuzz_target;
use promsd_fuzz::{Kv, Path, catalog, exchange, load};

/// Records of every kind dnsd answers with, as SkyDNS values under `/skydns`: addresses, names with so many
/// targets that answers pass 512 bytes, 1232 bytes and 64 KiB, CNAME chains and loops, SRV, MX, TXT, groups,
/// wildcards, leases, the zone's NS and apex, and a reverse zone.
fn records() -> Vec<Kv> {
    let mut kvs = Vec::new();
    let mut put = |key: &str, value: &str, lease: i64| kvs.push(Kv::new(format!("/skydns/{key}"), value, lease));
    put("local/prom/node/web01", r#"{"host":"10.0.0.1","port":9100}"#, 0);
    put("local/prom/node/web02", r#"{"host":"2001:db8::2","port":9100,"ttl":60}"#, 0);
    put("local/prom/node/web03", r#"{"host":"web01.node.prom.local.","port":9100,"priority":20}"#, 0);
    put("local/prom/node/leased", r#"{"host":"10.0.0.4","port":9100}"#, 7);
    put("local/prom/node/noport", r#"{"host":"10.0.0.5","port":-1}"#, 0);
    put("local/prom/node/strip", r#"{"host":"10.0.0.6","port":9100,"targetstrip":1}"#, 0);
    // The zone's name servers, its apex address and a mail exchanger.
    put("local/prom/dns/ns/ns1", r#"{"host":"10.0.0.53"}"#, 0);
    put("local/prom/dns/ns/ns2", r#"{"host":"2001:db8::53"}"#, 0);
    put("local/prom/dns/ns/byname", r#"{"host":"ns.example.org"}"#, 0);
    put("local/prom/dns/apex/a", r#"{"host":"10.0.0.80"}"#, 0);
    put("local/prom/mail/mx1", r#"{"host":"web01.node.prom.local","mail":true,"priority":10}"#, 0);
    put("local/prom/mail/mx2", r#"{"host":"10.0.0.25","mail":true}"#, 0);
    // CNAMEs: a chain longer than dnsd follows, a loop, a target outside the zones, one below itself.
    for i in 1..=12 {
        put(&format!("local/prom/chain/c{i}"), &format!(r#"{{"host":"c{}.chain.prom.local"}}"#, i + 1), 0);
    }
    put("local/prom/chain/c13", r#"{"host":"10.0.0.13"}"#, 0);
    put("local/prom/loop/a", r#"{"host":"b.loop.prom.local"}"#, 0);
    put("local/prom/loop/b", r#"{"host":"a.loop.prom.local"}"#, 0);
    put("local/prom/ext", r#"{"host":"www.example.org"}"#, 0);
    put("local/prom/self/x", r#"{"host":"x.self.prom.local"}"#, 0);
    // TXT: short, long (many 255-byte strings), beside a host, and a name host followed for TXT.
    put("local/prom/txt/spf", r#"{"text":"v=spf1 -all"}"#, 0);
    put("local/prom/txt/long", &format!(r#"{{"text":"{}"}}"#, "x".repeat(3000)), 0);
    put("local/prom/txt/both", r#"{"host":"10.0.0.7","text":"hello","port":80}"#, 0);
    put("local/prom/txt/alias", r#"{"host":"spf.txt.prom.local"}"#, 0);
    // Groups: one group at the top level wins; a subtree of another group.
    put("local/prom/grp/a", r#"{"host":"10.0.1.1","group":"g1"}"#, 0);
    put("local/prom/grp/b", r#"{"host":"10.0.1.2","group":"g2"}"#, 0);
    put("local/prom/grp/sub/c", r#"{"host":"10.0.1.3","group":"g1"}"#, 0);
    put("local/prom/grp/sub/d", r#"{"host":"10.0.1.4"}"#, 0);
    // Wildcard labels in keys (questions may hold them too).
    put("local/prom/wild/*/w", r#"{"host":"10.0.2.1","port":8080}"#, 0);
    put("local/prom/wild/any", r#"{"host":"10.0.2.2"}"#, 0);
    // 100 targets: past 512 and 1232 bytes. 4,500 targets: past 64 KiB (and past the records one section holds).
    for i in 0..100 {
        put(&format!("local/prom/big/host{i:03}"), &format!(r#"{{"host":"10.1.0.{}","port":9100}}"#, i + 1), 0);
    }
    for i in 0..4500 {
        let ip = format!("10.2.{}.{}", i / 250, i % 250 + 1);
        put(&format!("local/prom/huge/host{i:04}"), &format!(r#"{{"host":"{ip}","port":{}}}"#, 9000 + i % 7), 0);
    }
    for i in 0..50 {
        put(
            &format!("local/prom/names/n{i:02}"),
            &format!(r#"{{"host":"host{i:02}.{}.example.org"}}"#, "l".repeat(50)),
            0,
        );
    }
    // The reverse zone 0.0.10.in-addr.arpa.
    put("arpa/in-addr/10/0/0/1", r#"{"host":"web01.node.prom.local"}"#, 0);
    put("arpa/in-addr/10/0/0/2", r#"{"host":"10.0.0.2"}"#, 0);
    // Keys dnsd skips: another zone, a broken value, a bad name.
    put("org/example/www", r#"{"host":"10.9.9.9"}"#, 0);
    put("local/prom/broken", r#"{"host":"#, 0);
    put("local/prom/bad name", r#"{"host":"10.0.0.9"}"#, 0);
    kvs
}

fn fixture() -> &'static (Arc<Store>, Arc<View>) {
    static FIXTURE: OnceLock<(Arc<Store>, Arc<View>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (store, _writer) = load(catalog(), records(), 100);
        let view = store.snapshot();
        assert!(view.len() > 4600, "the records are in the view: {}", view.len());
        (store, view)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, request)) = data.split_first() else { return };
    let path = match knob & 0x03 {
        0 => Path::Udp,
        1 => Path::Tcp,
        _ => {
            // The cached copy's header: a new ID (the request's with bits flipped), and the flag bits.
            let id = request.get(..2).map_or(0, |id| u16::from_be_bytes([id[0], id[1]])) ^ u16::from(knob);
            Path::UdpCached { id, flags: [knob >> 2, knob.rotate_left(3)] }
        }
    };
    let (store, view) = fixture();
    exchange(store, view, request, path);
});
