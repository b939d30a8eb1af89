//! One case per SkyDNS / CoreDNS etcd-plugin rule (docs/coredns-compat.md): keys loaded into a real etcd,
//! dnsd started, real DNS queries with dig, exact sections compared.

use std::time::Duration;

use promsd_tests::{Etcd, eventually, http_get};

use crate::server::Dnsd;

/// A fresh etcd holding `keys`, and dnsd started with `args` (plus the endpoint; zone prom.local by default).
fn serve(keys: &[(&str, &str)], args: &[&str]) -> (Etcd, Dnsd) {
    let etcd = Etcd::start();
    for (key, value) in keys {
        etcd.put(key, value);
    }
    let mut all = vec!["--endpoints", etcd.endpoint.as_str()];
    if !args.contains(&"--zone") && !args.contains(&"--corefile") {
        all.extend(["--zone", "prom.local"]);
    }
    all.extend_from_slice(args);
    let dnsd = Dnsd::start_args(&all);
    (etcd, dnsd)
}

fn answers(dnsd: &Dnsd, qtype: &str, name: &str) -> Vec<String> {
    dnsd.dig(&[qtype, name]).answer_sorted()
}

#[test]
fn multi_segment_path_maps_names_both_ways() {
    let (_etcd, dnsd) =
        serve(&[("/skydns/ka2/local/prom/node/a", r#"{"host":"10.0.0.1","port":9100}"#)], &["--path", "/skydns/ka2"]);
    let srv = dnsd.dig(&["SRV", "node.prom.local"]);
    assert_eq!(srv.answer, ["node.prom.local. 300 IN SRV 10 100 9100 a.node.prom.local."]);
    assert_eq!(srv.additional, ["a.node.prom.local. 300 IN A 10.0.0.1"]);
}

#[test]
fn several_zones_longest_match_wins() {
    let (_etcd, dnsd) = serve(
        &[("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1"}"#), ("/skydns/local/other/b", r#"{"host":"10.0.0.2"}"#)],
        &["--zone", "local", "--zone", "prom.local"],
    );
    assert_eq!(answers(&dnsd, "A", "a.node.prom.local"), ["a.node.prom.local. 300 IN A 10.0.0.1"]);
    assert_eq!(answers(&dnsd, "A", "b.other.local"), ["b.other.local. 300 IN A 10.0.0.2"]);
    let in_prom = dnsd.dig(&["A", "missing.prom.local"]);
    assert!(in_prom.authority[0].starts_with("prom.local. 30 IN SOA ns.dns.prom.local."), "{}", in_prom.raw);
    let in_local = dnsd.dig(&["A", "missing.other.local"]);
    assert!(in_local.authority[0].starts_with("local. 30 IN SOA ns.dns.local."), "{}", in_local.raw);
}

#[test]
fn wildcards_match_any_label() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1"}"#),
            ("/skydns/local/prom/node/b", r#"{"host":"10.0.0.2"}"#),
            ("/skydns/local/prom/mysql/a", r#"{"host":"10.0.0.3"}"#),
            ("/skydns/local/prom/mysql/a/deeper", r#"{"host":"10.0.0.4"}"#),
        ],
        &[],
    );
    assert_eq!(
        answers(&dnsd, "A", "*.node.prom.local"),
        ["*.node.prom.local. 300 IN A 10.0.0.1", "*.node.prom.local. 300 IN A 10.0.0.2"]
    );
    // `a.*`: the `a` instance of every service, deeper keys included.
    assert_eq!(
        answers(&dnsd, "A", "a.any.prom.local"),
        [
            "a.any.prom.local. 300 IN A 10.0.0.1",
            "a.any.prom.local. 300 IN A 10.0.0.3",
            "a.any.prom.local. 300 IN A 10.0.0.4"
        ]
    );
    assert_eq!(dnsd.dig(&["A", "*.nothing.prom.local"]).status, "NXDOMAIN");
}

#[test]
fn srv_rules_priority_weight_port_and_targetstrip() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/svc/a", r#"{"host":"10.0.0.1","port":80}"#),
            ("/skydns/local/prom/svc/b", r#"{"host":"10.0.0.2","port":-1}"#),
            ("/skydns/local/prom/svc/c", r#"{"host":"10.0.0.3","port":81,"priority":5,"weight":1}"#),
            ("/skydns/local/prom/svc/d", r#"{"host":"10.0.0.4","port":82,"priority":5,"weight":1000}"#),
            ("/skydns/local/prom/strip/x/y", r#"{"host":"10.0.0.5","port":83,"targetstrip":1}"#),
            ("/skydns/local/prom/named/n", r#"{"host":"host.example.org","port":84,"targetstrip":1}"#),
        ],
        &[],
    );
    // b (port -1) answers nothing but still counts toward its priority's total: a gets 100/200*100 = 50.
    // c's share floors to 0 and becomes 1.
    assert_eq!(
        answers(&dnsd, "SRV", "svc.prom.local"),
        [
            "svc.prom.local. 300 IN SRV 10 50 80 a.svc.prom.local.",
            "svc.prom.local. 300 IN SRV 5 1 81 c.svc.prom.local.",
            "svc.prom.local. 300 IN SRV 5 99 82 d.svc.prom.local.",
        ]
    );
    let strip = dnsd.dig(&["SRV", "strip.prom.local"]);
    assert_eq!(strip.answer, ["strip.prom.local. 300 IN SRV 10 100 83 x.strip.prom.local."]);
    assert_eq!(strip.additional, ["x.strip.prom.local. 300 IN A 10.0.0.5"]);
    assert_eq!(answers(&dnsd, "SRV", "named.prom.local"), ["named.prom.local. 300 IN SRV 10 100 84 example.org."]);
}

#[test]
fn group_answers_only_one_group() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/dom/a", r#"{"host":"127.0.0.1","group":"g1"}"#),
            ("/skydns/local/prom/dom/b", r#"{"host":"127.0.0.2","group":"g1"}"#),
            ("/skydns/local/prom/dom/sub/c", r#"{"host":"127.0.0.3","group":"g2"}"#),
            ("/skydns/local/prom/dom/sub/d", r#"{"host":"127.0.0.4","group":"g2"}"#),
        ],
        &[],
    );
    assert_eq!(
        answers(&dnsd, "A", "dom.prom.local"),
        ["dom.prom.local. 300 IN A 127.0.0.1", "dom.prom.local. 300 IN A 127.0.0.2"]
    );
    assert_eq!(
        answers(&dnsd, "A", "sub.dom.prom.local"),
        ["sub.dom.prom.local. 300 IN A 127.0.0.3", "sub.dom.prom.local. 300 IN A 127.0.0.4"]
    );
}

/// Entries at one level that name different groups do not choose between them: all are answered, as
/// CoreDNS's `Group()` returns every entry on a same-level disagreement.
#[test]
fn groups_that_disagree_at_one_level_are_all_answered() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/mix/a", r#"{"host":"127.0.0.1","group":"g1"}"#),
            ("/skydns/local/prom/mix/b", r#"{"host":"127.0.0.2","group":"g2"}"#),
        ],
        &[],
    );
    assert_eq!(
        answers(&dnsd, "A", "mix.prom.local"),
        ["mix.prom.local. 300 IN A 127.0.0.1", "mix.prom.local. 300 IN A 127.0.0.2"]
    );
}

#[test]
fn txt_split_and_mx() {
    let long = "x".repeat(300);
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/long", &format!(r#"{{"text":"{long}"}}"#)),
            ("/skydns/local/prom/mail/mx1", r#"{"host":"10.0.0.9","mail":true,"priority":20}"#),
            ("/skydns/local/prom/mail/web", r#"{"host":"10.0.0.8"}"#),
        ],
        &[],
    );
    let txt = dnsd.dig(&["TXT", "long.prom.local"]);
    assert_eq!(txt.answer, [format!(r#"long.prom.local. 300 IN TXT "{}" "{}""#, "x".repeat(255), "x".repeat(45))]);
    let mx = dnsd.dig(&["MX", "mail.prom.local"]);
    assert_eq!(mx.answer, ["mail.prom.local. 300 IN MX 20 mx1.mail.prom.local."]);
    assert_eq!(mx.additional, ["mx1.mail.prom.local. 300 IN A 10.0.0.9"]);
}

#[test]
fn cname_chains_loops_and_limits() {
    let mut keys: Vec<(String, String)> = vec![
        ("/skydns/local/prom/loop/a".into(), r#"{"host":"b.loop.prom.local"}"#.into()),
        ("/skydns/local/prom/loop/b".into(), r#"{"host":"a.loop.prom.local"}"#.into()),
        ("/skydns/local/prom/self".into(), r#"{"host":"x.self.prom.local"}"#.into()),
        ("/skydns/local/prom/end".into(), r#"{"host":"10.0.0.1"}"#.into()),
    ];
    // c0 -> c1 -> ... -> c11 -> end: longer than the chain limit of 10.
    for i in 0..12 {
        let next = if i == 11 { "end.prom.local".to_string() } else { format!("c{}.prom.local", i + 1) };
        keys.push((format!("/skydns/local/prom/c{i}"), format!(r#"{{"host":"{next}"}}"#)));
    }
    let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (_etcd, dnsd) = serve(&refs, &[]);
    let short = dnsd.dig(&["A", "c9.prom.local"]);
    assert_eq!(short.answer.len(), 4, "3 CNAMEs and the A: {}", short.raw);
    assert_eq!(short.answer[3], "end.prom.local. 300 IN A 10.0.0.1");
    // A chain beyond the limit answers its first 10 links (CoreDNS's limit; Knot stops at 5), without the
    // SOA: the resolver carries on from the last target.
    let long = dnsd.dig(&["A", "c0.prom.local"]);
    let links: Vec<String> = (0..10).map(|i| format!("c{i}.prom.local. 300 IN CNAME c{}.prom.local.", i + 1)).collect();
    assert_eq!(long.answer, links, "{}", long.raw);
    assert_eq!(long.status, "NOERROR");
    assert!(long.authority.is_empty(), "{}", long.raw);
    // A loop answers its links once each (as Knot; CoreDNS answers nothing).
    let looped = dnsd.dig(&["A", "a.loop.prom.local"]);
    assert_eq!(
        looped.answer,
        ["a.loop.prom.local. 300 IN CNAME b.loop.prom.local.", "b.loop.prom.local. 300 IN CNAME a.loop.prom.local."]
    );
    assert!(dnsd.dig(&["A", "self.prom.local"]).answer.is_empty(), "target below the name is not followed");
    // CNAME questions answer the CNAME and do not chase it.
    assert_eq!(answers(&dnsd, "CNAME", "c9.prom.local"), ["c9.prom.local. 300 IN CNAME c10.prom.local."]);
}

#[test]
fn ptr_in_reverse_zones_from_cidr() {
    let (_etcd, dnsd) = serve(
        &[("/skydns/arpa/in-addr/10/0/0/5", r#"{"host":"server01.node.prom.local"}"#)],
        &["--zone", "prom.local,10.0.0.0/24"],
    );
    assert_eq!(
        answers(&dnsd, "PTR", "5.0.0.10.in-addr.arpa"),
        ["5.0.0.10.in-addr.arpa. 300 IN PTR server01.node.prom.local."]
    );
    let missing = dnsd.dig(&["-x", "10.0.0.6"]);
    assert_eq!(missing.status, "NXDOMAIN");
    assert!(
        missing.authority[0].starts_with("0.0.10.in-addr.arpa. 30 IN SOA ns.dns.0.0.10.in-addr.arpa."),
        "{}",
        missing.raw
    );
    assert_eq!(dnsd.dig(&["-x", "10.0.1.5"]).status, "REFUSED");
}

#[test]
fn apex_addresses_ns_and_soa() {
    let (etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/dns/apex/x", r#"{"host":"10.9.9.9"}"#),
            ("/skydns/local/prom/dns/ns/ns1", r#"{"host":"10.0.0.53"}"#),
            ("/skydns/local/prom/dns/ns/ns2", r#"{"host":"nameserver.example.org"}"#),
            ("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1"}"#),
        ],
        &["--soa.mname", "ns1.ns.dns", "--soa.rname", "dns-admin.example.org.", "--soa.refresh", "600"],
    );
    assert_eq!(answers(&dnsd, "A", "prom.local"), ["prom.local. 300 IN A 10.9.9.9"], "apex.dns wins");
    let ns = dnsd.dig(&["NS", "prom.local"]);
    assert_eq!(ns.answer, ["prom.local. 300 IN NS ns1.ns.dns.prom.local."], "name hosts cannot be NS: skipped");
    assert_eq!(ns.additional, ["ns1.ns.dns.prom.local. 300 IN A 10.0.0.53"]);
    let soa = dnsd.dig(&["SOA", "prom.local"]).answer;
    let fields: Vec<&str> = soa[0].split(' ').collect();
    assert_eq!(fields[4..6], ["ns1.ns.dns.prom.local.", "dns-admin.example.org."]);
    assert_eq!(fields[7..], ["600", "1800", "86400", "30"]);
    // The serial follows the data.
    let serial: u32 = fields[6].parse().expect("serial");
    etcd.put("/skydns/local/prom/node/b", r#"{"host":"10.0.0.2"}"#);
    dnsd.dig_until(&["SOA", "prom.local"], |d| {
        d.answer[0].split(' ').nth(6).and_then(|s| s.parse::<u32>().ok()) > Some(serial)
    });
    // SOA for a name below the apex: NODATA with the SOA in authority.
    let below = dnsd.dig(&["SOA", "a.node.prom.local"]);
    assert_eq!((below.status.as_str(), below.answer.len(), below.authority.len()), ("NOERROR", 0, 1));
    // Without apex.dns, the zone's addresses are the name servers'.
    etcd.del("/skydns/local/prom/dns/apex/x");
    dnsd.dig_until(&["A", "prom.local"], |d| d.answer == ["prom.local. 300 IN A 10.0.0.53"]);
}

#[test]
fn zone_without_ns_keys_is_nodata_for_ns() {
    let (_etcd, dnsd) = serve(&[("/skydns/local/prom/node/a", r#"{"host":"10.0.0.1"}"#)], &[]);
    let ns = dnsd.dig(&["NS", "prom.local"]);
    assert_eq!((ns.status.as_str(), ns.answer.len()), ("NOERROR", 0), "{}", ns.raw);
    // Without apex.dns or ns.dns keys, apex addresses are every host in the zone, as CoreDNS answers.
    assert_eq!(answers(&dnsd, "A", "prom.local"), ["prom.local. 300 IN A 10.0.0.1"]);
}

#[test]
fn ttls_from_values_and_leases() {
    let etcd = Etcd::start();
    let grant = |ttl: &str| -> String {
        let out = etcd.etcdctl(&["lease", "grant", ttl]);
        out.split_whitespace().nth(1).expect("lease id").to_string()
    };
    let short = grant("10");
    let long = grant("3600");
    etcd.etcdctl(&["put", "--lease", &short, "/skydns/local/prom/ttl/short", r#"{"host":"10.0.0.1"}"#]);
    etcd.etcdctl(&["put", "--lease", &long, "/skydns/local/prom/ttl/long", r#"{"host":"10.0.0.2"}"#]);
    etcd.etcdctl(&["put", "--lease", &long, "/skydns/local/prom/ttl/both", r#"{"host":"10.0.0.3","ttl":20}"#]);
    etcd.put("/skydns/local/prom/ttl/value", r#"{"host":"10.0.0.4","ttl":45}"#);
    etcd.put("/skydns/local/prom/ttl/none", r#"{"host":"10.0.0.5"}"#);
    let dnsd = Dnsd::start_args(&["--endpoints", &etcd.endpoint, "--zone", "prom.local", "--max-lease-ttl", "1h"]);
    let ttl_of = |name: &str| -> u32 {
        let answer = dnsd.dig(&["A", name]).answer;
        answer.first().and_then(|r| r.split(' ').nth(1)).and_then(|t| t.parse().ok()).expect("a TTL")
    };
    // A 10s lease is clamped up to min-lease-ttl (30).
    eventually("the short lease's TTL", Duration::from_secs(10), || {
        (ttl_of("short.ttl.prom.local") == 30).then_some(())
    });
    // The 1h lease: its remaining time, just under an hour.
    let long_ttl = eventually("the long lease's TTL", Duration::from_secs(10), || {
        let ttl = ttl_of("long.ttl.prom.local");
        assert!(ttl <= 3600, "never more than the lease has: {ttl}");
        (ttl > 30).then_some(ttl)
    });
    assert!((3500..=3600).contains(&long_ttl), "{long_ttl}");
    assert_eq!(ttl_of("both.ttl.prom.local"), 20, "the smaller of lease and value");
    assert_eq!(ttl_of("value.ttl.prom.local"), 45);
    assert_eq!(ttl_of("none.ttl.prom.local"), 300);
}

/// A lease kept alive (as `registrar run --lease-ttl 3s` keeps its own) answers the clamped minimum the whole
/// time: it used to flip to 300 once the remaining time read at first had run out.
#[test]
fn a_kept_alive_short_lease_never_flips_to_300() {
    let etcd = Etcd::start();
    let out = etcd.etcdctl(&["lease", "grant", "3"]);
    let id = out.split_whitespace().nth(1).expect("lease id").to_string();
    etcd.etcdctl(&["put", "--lease", &id, "/skydns/local/prom/kept/a", r#"{"host":"10.0.0.1"}"#]);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut keep_alive = std::process::Command::new("etcdctl");
    keep_alive.env("ETCDCTL_API", "3").args(["--endpoints", &etcd.endpoint, "lease", "keep-alive", &id]);
    let _keeper = promsd_tests::Process::spawn("etcdctl keep-alive", keep_alive, &dir.path().join("keep.log"));
    let dnsd = Dnsd::start_args(&["--endpoints", &etcd.endpoint, "--zone", "prom.local"]);
    let ttl_of = || -> Option<u32> {
        let answer = dnsd.dig(&["A", "a.kept.prom.local"]).answer;
        answer.first().and_then(|r| r.split(' ').nth(1)).and_then(|t| t.parse().ok())
    };
    // Longer than the lease's TTL, so the first remaining time read runs out meanwhile.
    promsd_tests::holds_for(Duration::from_secs(6), || {
        assert_eq!(ttl_of(), Some(30), "the kept-alive record's TTL");
    });
}

#[test]
fn external_dns_txt_registry_entries_resolve() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/app/x", r#"{"host":"target.prom.local","text":"heritage=external-dns"}"#),
            ("/skydns/local/prom/target", r#"{"host":"10.0.0.7"}"#),
        ],
        &[],
    );
    assert_eq!(
        dnsd.dig(&["A", "x.app.prom.local"]).answer,
        ["x.app.prom.local. 300 IN CNAME target.prom.local.", "target.prom.local. 300 IN A 10.0.0.7"]
    );
    assert_eq!(
        dnsd.dig(&["TXT", "x.app.prom.local"]).answer,
        [r#"x.app.prom.local. 300 IN TXT "heritage=external-dns""#]
    );
}

/// external-dns's CoreDNS provider stores a name's record one level below it (`<name>/<prefix>`): a CNAME
/// question for the name answers the CNAME, as the A question already does (and as Knot serving the
/// equivalent zone answers).
#[test]
fn a_cname_stored_one_level_below_its_name_answers_cname_questions() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/app/x/1a2b3c4d", r#"{"host":"target.prom.local","targetstrip":1}"#),
            ("/skydns/local/prom/target", r#"{"host":"10.0.0.7"}"#),
        ],
        &[],
    );
    assert_eq!(answers(&dnsd, "CNAME", "x.app.prom.local"), ["x.app.prom.local. 300 IN CNAME target.prom.local."]);
    assert_eq!(
        dnsd.dig(&["A", "x.app.prom.local"]).answer,
        ["x.app.prom.local. 300 IN CNAME target.prom.local.", "target.prom.local. 300 IN A 10.0.0.7"]
    );
    // A name whose records are addresses has no CNAME: NODATA.
    let target = dnsd.dig(&["CNAME", "target.prom.local"]);
    assert_eq!((target.status.as_str(), target.answer.len()), ("NOERROR", 0));
}

#[test]
fn a_node_value_is_shadowed_by_its_children() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/node", r#"{"host":"10.0.0.1"}"#),
            ("/skydns/local/prom/node/a", r#"{"host":"10.0.0.2"}"#),
        ],
        &[],
    );
    assert_eq!(answers(&dnsd, "A", "node.prom.local"), ["node.prom.local. 300 IN A 10.0.0.2"]);
}

#[test]
fn malformed_values_are_counted() {
    let (_etcd, dnsd) = serve(
        &[
            ("/skydns/local/prom/node/ok", r#"{"host":"10.0.0.1"}"#),
            ("/skydns/local/prom/node/bad1", "{"),
            ("/skydns/local/prom/node/bad2", r#"{"port":"x"}"#),
        ],
        &[],
    );
    assert_eq!(answers(&dnsd, "A", "node.prom.local"), ["node.prom.local. 300 IN A 10.0.0.1"]);
    let (status, metrics) = http_get(dnsd.web, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("dnsd_malformed_entries_skipped_total 2\n"), "{metrics}");
}

/// A stored `*` label is a wildcard as in a zone (RFC 4592; CoreDNS answers NXDOMAIN): it answers for names
/// below its parent that do not exist, and cached answers follow every change that moves the closest
/// existing ancestor. A `*` in the question stays CoreDNS's: it matches every key at that level.
#[test]
fn stored_wildcards_answer_missing_names_and_follow_changes() {
    let (etcd, dnsd) = serve(&[("/skydns/local/prom/wild/*/1a2b3c4d", r#"{"host":"10.0.0.9","targetstrip":1}"#)], &[]);
    let address = |name: &str, ip: &str| format!("{name}. 300 IN A {ip}");
    assert_eq!(answers(&dnsd, "A", "foo.wild.prom.local"), [address("foo.wild.prom.local", "10.0.0.9")]);
    assert_eq!(answers(&dnsd, "A", "a.b.wild.prom.local"), [address("a.b.wild.prom.local", "10.0.0.9")]);
    // b.wild now exists, and has no wildcard of its own: a.b.wild no longer comes from *.wild.
    etcd.put("/skydns/local/prom/wild/b/c", r#"{"host":"10.0.0.2"}"#);
    dnsd.dig_until(&["A", "a.b.wild.prom.local"], |d| d.status == "NXDOMAIN");
    // An existing name answers its own records.
    etcd.put("/skydns/local/prom/wild/foo/5e6f7a8b", r#"{"host":"10.0.0.4","targetstrip":1}"#);
    dnsd.dig_until(&["A", "foo.wild.prom.local"], |d| d.answer == [address("foo.wild.prom.local", "10.0.0.4")]);
    // A wildcard written later answers names that were NXDOMAIN.
    assert_eq!(dnsd.dig(&["A", "x.other.prom.local"]).status, "NXDOMAIN");
    etcd.put("/skydns/local/prom/other/*/9c0d1e2f", r#"{"host":"10.0.0.3","targetstrip":1}"#);
    dnsd.dig_until(&["A", "x.other.prom.local"], |d| d.answer == [address("x.other.prom.local", "10.0.0.3")]);
    // A question's `*` matches every key at its level (Knot would answer the wildcard's record alone).
    assert_eq!(
        answers(&dnsd, "A", "*.wild.prom.local"),
        [
            address("*.wild.prom.local", "10.0.0.2"),
            address("*.wild.prom.local", "10.0.0.4"),
            address("*.wild.prom.local", "10.0.0.9")
        ]
    );
    etcd.del("/skydns/local/prom/wild/*/1a2b3c4d");
    dnsd.dig_until(&["A", "bar.wild.prom.local"], |d| d.status == "NXDOMAIN");
}
