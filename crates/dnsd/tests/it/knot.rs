//! dnsd side by side with Knot DNS serving the equivalent zone: the rules where dnsd follows Knot rather
//! than CoreDNS (ANY, QTYPE 0, class ANY, meta types, a CNAME stored one level below its name, and the
//! records external-dns's CoreDNS provider writes) answer the same.

use promsd_tests::{Dig, Etcd, Knot, dig, require};

use crate::server::{Dnsd, ZONE};

/// The SOA and NS every zone file starts with (Knot needs both to load a zone).
fn zone_file(origin: &str, records: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns1.ns.dns.prom.local. hostmaster.prom.local. 1 7200 1800 86400 30\n@ NS ns1.ns.dns.prom.local.\n{records}"
    )
}

/// What is compared: the status, the answer section, the types in the authority section (its SOA is each
/// server's own) and the additional section.
fn seen(d: &Dig) -> (String, Vec<String>, Vec<String>, Vec<String>) {
    let types = d.authority.iter().filter_map(|r| r.split_whitespace().nth(3)).map(str::to_string).collect();
    (d.status.clone(), d.answer_sorted(), types, d.additional_sorted())
}

/// dnsd serving `keys` from etcd and Knot serving `records` for `zone` get every question; all differences
/// are reported at once.
fn side_by_side(zone: &str, keys: &[(&str, &str)], records: &str, questions: &[Vec<String>]) {
    require("knotd");
    let etcd = Etcd::start();
    for (key, value) in keys {
        etcd.put(key, value);
    }
    let dnsd = Dnsd::start(&etcd.endpoint, &[zone]);
    let knot = Knot::start(zone, &zone_file(zone, records));
    let mut differences = Vec::new();
    for question in questions {
        let question: Vec<&str> = question.iter().map(String::as_str).collect();
        let question = question.as_slice();
        let (ours, theirs) = (dig(dnsd.dns, question), dig(knot.addr, question));
        assert!(!theirs.status.is_empty(), "{question:?}: Knot answered nothing:\n{}", theirs.raw);
        if seen(&ours) != seen(&theirs) {
            differences.push(format!("{question:?}\n  dnsd: {:?}\n  knot: {:?}", seen(&ours), seen(&theirs)));
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
}

#[test]
fn answers_as_knot_serving_the_equivalent_zone() {
    let keys = [
        ("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.1"}"#),
        ("/skydns/local/prom/x", r#"{"host":"10.0.0.5","text":"hello"}"#),
        ("/skydns/local/prom/app/y/1a2b3c4d", r#"{"host":"target.prom.local"}"#),
        ("/skydns/local/prom/target", r#"{"host":"10.0.0.7"}"#),
        ("/skydns/local/prom/v6", r#"{"host":"fd00::6"}"#),
    ];
    let records = "ns1.ns.dns A 10.0.0.1\nx A 10.0.0.5\nx TXT \"hello\"\ny.app CNAME target\ntarget A 10.0.0.7\nv6 AAAA fd00::6\n";
    let mut questions: Vec<Vec<String>> = [
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
    ]
    .iter()
    .map(|q| q.iter().map(|s| s.to_string()).collect())
    .collect();
    // Meta and obsolete types (MAILA, MAILB, OPT, TSIG, TKEY) and a private-use type, for a name that exists
    // and one that does not: plain types without data to Knot.
    let meta = ["TYPE254", "TYPE253", "TYPE41", "TYPE250", "TYPE249", "TYPE65280"];
    questions.extend(each(&meta, &["x.prom.local", "nothing.prom.local"]));
    side_by_side(ZONE, &keys, records, &questions);
}

/// Every question of one of `types` for each of `names`.
fn each(types: &[&str], names: &[&str]) -> Vec<Vec<String>> {
    names.iter().flat_map(|name| types.iter().map(move |qtype| vec![qtype.to_string(), name.to_string()])).collect()
}

/// external-dns writes each target of a name to `<name>/<random prefix>` with `targetstrip: 1`.
#[test]
fn external_dns_cnames_chase_for_a_and_aaaa_as_knot() {
    let keys = [
        ("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.1"}"#),
        ("/skydns/local/prom/web/1a2b3c4d", r#"{"host":"lb.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/lb/5e6f7a8b", r#"{"host":"10.0.0.10","targetstrip":1}"#),
        ("/skydns/local/prom/lb/9c0d1e2f", r#"{"host":"fd00::10","targetstrip":1}"#),
        ("/skydns/local/prom/web6/0a1b2c3d", r#"{"host":"v6only.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/v6only/4e5f6a7b", r#"{"host":"fd00::11","targetstrip":1}"#),
        ("/skydns/local/prom/web4/8c9d0e1f", r#"{"host":"v4only.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/v4only/2a3b4c5d", r#"{"host":"10.0.0.11","targetstrip":1}"#),
        ("/skydns/local/prom/alias/6e7f8a9b", r#"{"host":"web.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/ext/0c1d2e3f", r#"{"host":"www.example.org","targetstrip":1}"#),
        ("/skydns/local/prom/dangling/4a5b6c7d", r#"{"host":"missing.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/loop-a/8e9f0a1b", r#"{"host":"loop-b.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/loop-b/2c3d4e5f", r#"{"host":"loop-a.prom.local","targetstrip":1}"#),
    ];
    let records = "ns1.ns.dns A 10.0.0.1\nweb CNAME lb\nlb A 10.0.0.10\nlb AAAA fd00::10\nweb6 CNAME v6only\nv6only AAAA fd00::11\nweb4 CNAME v4only\nv4only A 10.0.0.11\nalias CNAME web\next CNAME www.example.org.\ndangling CNAME missing\nloop-a CNAME loop-b\nloop-b CNAME loop-a\n";
    let names = ["web", "web6", "web4", "alias", "ext", "dangling", "loop-a"].map(|n| format!("{n}.prom.local"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let questions = each(&["A", "AAAA", "TXT"], &names);
    side_by_side(ZONE, &keys, records, &questions);
}

/// external-dns writes `*.wild.prom.local` to `/skydns/local/prom/wild/*/<prefix>`: a wildcard, as in a zone.
#[test]
fn external_dns_wildcards_answer_as_knot() {
    let keys = [
        ("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.1"}"#),
        ("/skydns/local/prom/wild/*/1a2b3c4d", r#"{"host":"10.0.0.9","targetstrip":1}"#),
        ("/skydns/local/prom/wild/explicit/5e6f7a8b", r#"{"host":"10.0.0.8","targetstrip":1}"#),
        ("/skydns/local/prom/cw/*/9c0d1e2f", r#"{"host":"lb.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/lb/0a1b2c3d", r#"{"host":"fd00::10","targetstrip":1}"#),
        ("/skydns/local/prom/to-wild/4e5f6a7b", r#"{"host":"via.wild.prom.local","targetstrip":1}"#),
    ];
    let records = "ns1.ns.dns A 10.0.0.1\n*.wild A 10.0.0.9\nexplicit.wild A 10.0.0.8\n*.cw CNAME lb\nlb AAAA fd00::10\nto-wild CNAME via.wild\n";
    let names = [
        "foo.wild.prom.local",
        "a.b.wild.prom.local",
        "explicit.wild.prom.local",
        "below.explicit.wild.prom.local",
        "foo.cw.prom.local",
        "to-wild.prom.local",
        "foo.nowild.prom.local",
    ];
    side_by_side(ZONE, &keys, records, &each(&["A", "AAAA", "TXT", "CNAME"], &names));
}

/// Older external-dns versions wrote reverse records as every other record, below a random prefix
/// (`/skydns/arpa/in-addr/10/0/0/5/<prefix>`, `targetstrip: 1`); newer ones write the exact key.
#[test]
fn external_dns_reverse_records_in_both_layouts_answer_as_knot() {
    let zone = "0.0.10.in-addr.arpa";
    let keys = [
        ("/skydns/arpa/in-addr/10/0/0/5/1a2b3c4d", r#"{"host":"web.prom.local.","targetstrip":1}"#),
        ("/skydns/arpa/in-addr/10/0/0/6", r#"{"host":"db.prom.local."}"#),
    ];
    let records = "5 PTR web.prom.local.\n6 PTR db.prom.local.\n";
    let names = ["5.0.0.10.in-addr.arpa", "6.0.0.10.in-addr.arpa", "7.0.0.10.in-addr.arpa", zone];
    side_by_side(zone, &keys, records, &each(&["PTR"], &names));
}

/// external-dns keeps an SRV record's data in its target, `"<priority> <weight> <port> <target>"`, and the
/// CoreDNS provider writes that string as the `host`.
#[test]
fn external_dns_srv_records_answer_as_knot() {
    let keys = [
        ("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.1"}"#),
        ("/skydns/local/prom/svc/_tcp/_http/1a2b3c4d", r#"{"host":"10 5 8080 lb.prom.local.","targetstrip":1}"#),
        ("/skydns/local/prom/svc/_tcp/_http/5e6f7a8b", r#"{"host":"20 0 8081 www.example.org","targetstrip":1}"#),
        ("/skydns/local/prom/lb/9c0d1e2f", r#"{"host":"10.0.0.10","targetstrip":1}"#),
    ];
    let records = "ns1.ns.dns A 10.0.0.1\n_http._tcp.svc SRV 10 5 8080 lb\n_http._tcp.svc SRV 20 0 8081 www.example.org.\nlb A 10.0.0.10\n";
    side_by_side(ZONE, &keys, records, &each(&["SRV", "A", "AAAA", "TXT", "CNAME"], &["_http._tcp.svc.prom.local"]));
}

/// external-dns keeps an MX record's data in its target, `"<preference> <exchange>"`, and the CoreDNS provider
/// writes that string as the `host` (no `mail`); a TXT of the same name goes into the `text` of its first key.
/// A host of neither form with spaces stays malformed: skipped, its name does not exist.
#[test]
fn external_dns_mx_records_answer_as_knot() {
    let keys = [
        ("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.1"}"#),
        ("/skydns/local/prom/mail/1a2b3c4d", r#"{"host":"10 mx1.prom.local","targetstrip":1}"#),
        ("/skydns/local/prom/mail/5e6f7a8b", r#"{"host":"20 mx.example.org.","targetstrip":1}"#),
        ("/skydns/local/prom/mx1/9c0d1e2f", r#"{"host":"10.0.0.20","targetstrip":1}"#),
        ("/skydns/local/prom/mx1/0a1b2c3d", r#"{"host":"fd00::20","targetstrip":1}"#),
        ("/skydns/local/prom/spf/4e5f6a7b", r#"{"host":"5 mx1.prom.local","text":"v=spf1 mx -all","targetstrip":1}"#),
        ("/skydns/local/prom/nomail/8c9d0e1f", r#"{"host":"0 .","targetstrip":1}"#),
        ("/skydns/local/prom/v6txt/2a3b4c5d", r#"{"host":"fd00::5","text":"v6 and text","targetstrip":1}"#),
        ("/skydns/local/prom/bad/6e7f8a9b", r#"{"host":"10 5 mx1.prom.local","targetstrip":1}"#),
    ];
    let records = "ns1.ns.dns A 10.0.0.1\nmail MX 10 mx1\nmail MX 20 mx.example.org.\nmx1 A 10.0.0.20\nmx1 AAAA fd00::20\nspf MX 5 mx1\nspf TXT \"v=spf1 mx -all\"\nnomail MX 0 .\nv6txt AAAA fd00::5\nv6txt TXT \"v6 and text\"\n";
    let names = ["mail", "spf", "nomail", "bad"].map(|n| format!("{n}.prom.local"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut questions = each(&["MX", "A", "AAAA", "ANY", "TXT", "CNAME", "SRV"], &names);
    // ANY takes Knot's type order, MX and TXT before AAAA (SRV of an IP host is SkyDNS's own, see the docs).
    questions.extend(each(&["ANY", "AAAA", "TXT", "MX"], &["v6txt.prom.local"]));
    side_by_side(ZONE, &keys, records, &questions);
}
