//! dnsd side by side with Knot DNS serving the equivalent zone: the rules where dnsd follows Knot rather
//! than CoreDNS (ANY, QTYPE 0, class ANY, a CNAME stored one level below its name) answer the same.

use promsd_tests::{Dig, Etcd, Knot, dig, require};

use crate::server::{Dnsd, ZONE};

/// The same data as SkyDNS keys and as a zone file.
const KEYS: [(&str, &str); 5] = [
    ("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.1"}"#),
    ("/skydns/local/prom/x", r#"{"host":"10.0.0.5","text":"hello"}"#),
    ("/skydns/local/prom/app/y/1a2b3c4d", r#"{"host":"target.prom.local"}"#),
    ("/skydns/local/prom/target", r#"{"host":"10.0.0.7"}"#),
    ("/skydns/local/prom/v6", r#"{"host":"fd00::6"}"#),
];
const ZONE_FILE: &str = "$ORIGIN prom.local.\n$TTL 300\n@ SOA ns1.ns.dns.prom.local. hostmaster.prom.local. 1 7200 1800 86400 30\n@ NS ns1.ns.dns.prom.local.\nns1.ns.dns A 10.0.0.1\nx A 10.0.0.5\nx TXT \"hello\"\ny.app CNAME target\ntarget A 10.0.0.7\nv6 AAAA fd00::6\n";

/// What is compared: the status and the answer section (authority sections carry each server's own SOA).
fn seen(d: &Dig) -> (String, Vec<String>) {
    (d.status.clone(), d.answer.clone())
}

#[test]
fn answers_as_knot_serving_the_equivalent_zone() {
    require("knotd");
    let etcd = Etcd::start();
    for (key, value) in KEYS {
        etcd.put(key, value);
    }
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let knot = Knot::start(ZONE, ZONE_FILE);
    assert_eq!(dig(knot.addr, &["ANY", "x.prom.local"]).answer, ["x.prom.local. 300 IN A 10.0.0.5"]);
    for question in [
        &["ANY", "x.prom.local"][..],
        &["ANY", "prom.local"],
        &["ANY", "v6.prom.local"],
        &["ANY", "nothing.prom.local"],
        &["TYPE0", "x.prom.local"],
        &["-c", "ANY", "A", "x.prom.local"],
        &["CNAME", "y.app.prom.local"],
        &["A", "y.app.prom.local"],
        &["CNAME", "target.prom.local"],
        &["+tcp", "ANY", "x.prom.local"],
    ] {
        let (ours, theirs) = (dig(dnsd.dns, question), dig(knot.addr, question));
        assert!(!theirs.status.is_empty(), "{question:?}: Knot answered nothing:\n{}", theirs.raw);
        assert_eq!(seen(&ours), seen(&theirs), "{question:?}\ndnsd:\n{}\nknot:\n{}", ours.raw, theirs.raw);
    }
}
