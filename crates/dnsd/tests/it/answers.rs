//! What dnsd answers, checked record by record against the SkyDNS/CoreDNS conventions.

use promsd_tests::Etcd;

use crate::server::{Dnsd, ZONE, load_seed};

fn soa_line(dig: &promsd_tests::Dig) -> String {
    dig.authority.first().cloned().unwrap_or_default()
}

#[test]
fn seed_walkthrough_answers() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);

    let ns = dnsd.dig(&["NS", "prom.local"]);
    assert_eq!(ns.status, "NOERROR");
    assert!(ns.has_flag("aa"), "authoritative: {}", ns.raw);
    assert_eq!(
        ns.answer_sorted(),
        [
            "prom.local. 300 IN NS ns1.ns.dns.prom.local.",
            "prom.local. 300 IN NS ns2.ns.dns.prom.local.",
            "prom.local. 300 IN NS ns3.ns.dns.prom.local.",
        ]
    );
    assert_eq!(
        ns.additional_sorted(),
        [
            "ns1.ns.dns.prom.local. 300 IN A 192.168.0.1",
            "ns2.ns.dns.prom.local. 300 IN A 192.168.0.2",
            "ns3.ns.dns.prom.local. 300 IN A 192.168.0.3",
        ]
    );

    let a = dnsd.dig(&["A", "prom.local"]);
    assert_eq!(
        a.answer_sorted(),
        ["prom.local. 300 IN A 192.168.0.1", "prom.local. 300 IN A 192.168.0.2", "prom.local. 300 IN A 192.168.0.3"]
    );

    let soa = dnsd.dig(&["SOA", "prom.local"]);
    assert_eq!(soa.answer.len(), 1, "{}", soa.raw);
    let fields: Vec<&str> = soa.answer[0].split(' ').collect();
    assert_eq!(fields[..6], ["prom.local.", "300", "IN", "SOA", "ns.dns.prom.local.", "hostmaster.prom.local."]);
    assert!(fields[6].parse::<u32>().expect("serial") > 0);
    assert_eq!(fields[7..], ["7200", "1800", "86400", "30"]);

    let etcd_srv = dnsd.dig(&["SRV", "_etcd-client._tcp.prom.local"]);
    assert_eq!(
        etcd_srv.answer_sorted(),
        (1..=3)
            .map(|i| format!(
                "_etcd-client._tcp.prom.local. 300 IN SRV 10 33 2379 coreos-coredns0{i}._etcd-client._tcp.prom.local."
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        etcd_srv.additional_sorted(),
        (1..=3)
            .map(|i| format!("coreos-coredns0{i}._etcd-client._tcp.prom.local. 300 IN A 192.168.0.{i}"))
            .collect::<Vec<_>>()
    );

    let node = dnsd.dig(&["SRV", "node.prom.local"]);
    assert_eq!(
        node.answer_sorted(),
        [
            "node.prom.local. 300 IN SRV 10 50 9100 server01.node.prom.local.",
            "node.prom.local. 300 IN SRV 10 50 9100 server02.node.prom.local.",
        ]
    );
    assert_eq!(
        node.additional_sorted(),
        ["server01.node.prom.local. 300 IN A 192.168.1.1", "server02.node.prom.local. 300 IN A 192.168.1.2"]
    );

    // Every SRV target answers A itself: Prometheus and etcdctl resolve targets with separate queries.
    let target = dnsd.dig(&["A", "server01.node.prom.local"]);
    assert_eq!(target.answer, ["server01.node.prom.local. 300 IN A 192.168.1.1"]);
    // A for a service name gives every IP host below it (dns_sd_configs with type A).
    let node_a = dnsd.dig(&["A", "node.prom.local"]);
    assert_eq!(
        node_a.answer_sorted(),
        ["node.prom.local. 300 IN A 192.168.1.1", "node.prom.local. 300 IN A 192.168.1.2"]
    );
}

#[test]
fn negative_answers_carry_the_soa() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);

    let missing = dnsd.dig(&["SRV", "mysql.prom.local"]);
    assert_eq!(missing.status, "NXDOMAIN");
    assert!(missing.has_flag("aa"));
    assert!(missing.answer.is_empty());
    assert!(soa_line(&missing).starts_with("prom.local. 30 IN SOA ns.dns.prom.local. hostmaster.prom.local."));

    // An existing name without records of the asked type: NODATA.
    let nodata = dnsd.dig(&["MX", "node.prom.local"]);
    assert_eq!(nodata.status, "NOERROR");
    assert!(nodata.answer.is_empty());
    assert!(soa_line(&nodata).contains(" SOA "), "{}", nodata.raw);

    // An empty non-terminal (only names below it exist) is NODATA too, not NXDOMAIN.
    let ent = dnsd.dig(&["A", "_tcp.prom.local"]);
    assert_eq!(ent.status, "NOERROR");

    let elsewhere = dnsd.dig(&["A", "example.org"]);
    assert_eq!(elsewhere.status, "REFUSED");
    assert!(!elsewhere.has_flag("aa"));

    // Owner names echo the question as sent, case included.
    let mixed = dnsd.dig(&["SRV", "Node.Prom.Local"]);
    assert_eq!(mixed.answer.len(), 2);
    assert!(mixed.answer.iter().all(|r| r.starts_with("Node.Prom.Local. ")), "{}", mixed.raw);
}

#[test]
fn txt_cname_aaaa_and_weights() {
    let etcd = Etcd::start();
    etcd.put("/skydns/local/prom/info/a", r#"{"text":"hello world","host":""}"#);
    etcd.put("/skydns/local/prom/web/x", r#"{"host":"server01.node.prom.local"}"#);
    etcd.put("/skydns/local/prom/node/server01", r#"{"host":"10.0.0.1","port":9100}"#);
    etcd.put("/skydns/local/prom/ext/y", r#"{"host":"www.example.org"}"#);
    etcd.put("/skydns/local/prom/v6/h", r#"{"host":"2001:db8::1","port":9100,"ttl":60}"#);
    etcd.put("/skydns/local/prom/w/a", r#"{"host":"10.0.1.1","port":1,"weight":300}"#);
    etcd.put("/skydns/local/prom/w/b", r#"{"host":"10.0.1.2","port":1,"weight":100}"#);
    etcd.put("/skydns/local/prom/w/c", r#"{"host":"10.0.1.3","port":1,"priority":20}"#);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);

    assert_eq!(dnsd.dig(&["TXT", "info.prom.local"]).answer, [r#"info.prom.local. 300 IN TXT "hello world""#]);
    // A name host is a CNAME, followed inside the zone.
    assert_eq!(
        dnsd.dig(&["A", "x.web.prom.local"]).answer,
        ["x.web.prom.local. 300 IN CNAME server01.node.prom.local.", "server01.node.prom.local. 300 IN A 10.0.0.1"]
    );
    assert_eq!(
        dnsd.dig(&["CNAME", "x.web.prom.local"]).answer,
        ["x.web.prom.local. 300 IN CNAME server01.node.prom.local."]
    );
    // Out of zone: the CNAME alone; the resolver chases it (dnsd does not recurse).
    assert_eq!(dnsd.dig(&["A", "y.ext.prom.local"]).answer, ["y.ext.prom.local. 300 IN CNAME www.example.org."]);
    assert_eq!(dnsd.dig(&["AAAA", "h.v6.prom.local"]).answer, ["h.v6.prom.local. 60 IN AAAA 2001:db8::1"]);
    let v6_srv = dnsd.dig(&["SRV", "v6.prom.local"]);
    assert_eq!(v6_srv.additional, ["h.v6.prom.local. 60 IN AAAA 2001:db8::1"]);
    // Weights are shares of 100 within a priority: 300 and 100 give 75 and 25; priority 20 alone gives 100.
    assert_eq!(
        dnsd.dig(&["SRV", "w.prom.local"]).answer_sorted(),
        [
            "w.prom.local. 300 IN SRV 10 25 1 b.w.prom.local.",
            "w.prom.local. 300 IN SRV 10 75 1 a.w.prom.local.",
            "w.prom.local. 300 IN SRV 20 100 1 c.w.prom.local.",
        ]
    );
}

#[test]
fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let etcd = Etcd::start();
    for i in 0..100 {
        etcd.put(
            &format!("/skydns/local/prom/big/instance{i:03}"),
            &format!(r#"{{"host":"10.1.0.{}","port":9100}}"#, i + 1),
        );
    }
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);

    let udp = dnsd.dig(&["+ignore", "+bufsize=1232", "SRV", "big.prom.local"]);
    assert!(udp.has_flag("tc"), "expected TC over UDP: {}", udp.raw);
    assert!(udp.answer.is_empty());
    let plain = dnsd.dig(&["+ignore", "+noedns", "SRV", "big.prom.local"]);
    assert!(plain.has_flag("tc"), "{}", plain.raw);
    let tcp = dnsd.dig(&["+tcp", "SRV", "big.prom.local"]);
    assert_eq!(tcp.answer.len(), 100, "{}", tcp.raw);
    assert_eq!(tcp.additional.len(), 100);
    // dig retries over TCP on TC by itself, as Prometheus does.
    assert_eq!(dnsd.dig(&["SRV", "big.prom.local"]).answer.len(), 100);
}

#[test]
fn edns_is_honoured() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let with_edns = dnsd.dig(&["+bufsize=4096", "SRV", "node.prom.local"]);
    assert!(with_edns.raw.contains("; EDNS: version: 0"), "{}", with_edns.raw);
    assert!(with_edns.raw.contains("udp: 1232"), "{}", with_edns.raw);
    let without = dnsd.dig(&["+noedns", "SRV", "node.prom.local"]);
    assert!(!without.raw.contains("EDNS:"), "{}", without.raw);
    assert_eq!(without.answer.len(), 2);
    let bad_version = dnsd.dig(&["+edns=1", "+noednsneg", "SRV", "node.prom.local"]);
    assert_eq!(bad_version.status, "BADVERS", "{}", bad_version.raw);
}

#[test]
fn repeated_questions_get_their_own_id_and_flags() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    // The same question twice: the second comes from the answer cache, patched for this request.
    let first = dnsd.dig(&["SRV", "node.prom.local"]);
    let second = dnsd.dig(&["+norecurse", "SRV", "node.prom.local"]);
    assert!(first.has_flag("rd") && !second.has_flag("rd"), "{}\n{}", first.raw, second.raw);
    assert_eq!(first.answer_sorted(), second.answer_sorted());
    let third = dnsd.dig(&["+cdflag", "SRV", "node.prom.local"]);
    assert!(third.has_flag("cd"), "{}", third.raw);
    // A different case is a different question: its owners echo it.
    let upper = dnsd.dig(&["SRV", "NODE.prom.local"]);
    assert!(upper.answer.iter().all(|r| r.starts_with("NODE.prom.local. ")), "{}", upper.raw);
}
