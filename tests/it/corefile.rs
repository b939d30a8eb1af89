//! The seed's Corefile, unchanged, runs dnsd as it ran CoreDNS: zone prom.local on port 53, etcd at
//! http://localhost:2379, query log on.

use promsd_tests::eventually;
use std::time::Duration;

use crate::stack::Stack;

/// The seed walkthrough's Corefile, byte for byte.
const SEED_COREFILE: &str = "prom.local {
    etcd prom.local {
        path /skydns
        endpoint http://localhost:2379
    }
    errors
    log
}
";

#[test]
fn the_seed_corefile_runs_unchanged() {
    let stack = Stack::start_with(|dir| {
        let corefile = dir.join("Corefile");
        std::fs::write(&corefile, SEED_COREFILE).expect("write Corefile");
        vec!["--corefile".into(), corefile.display().to_string()]
    });
    stack.etcd.put("/skydns/local/prom/dns/ns/ns1", r#"{"host":"192.168.0.1"}"#);
    stack.etcd.put("/skydns/local/prom/node/server01", r#"{"host":"192.168.1.1","port":9100}"#);
    stack.etcd.put("/skydns/local/prom/node/server02", r#"{"host":"192.168.1.2","port":9100}"#);
    let srv = eventually("the records in DNS", Duration::from_secs(10), || {
        let dig = stack.dig(&["SRV", "node.prom.local"]);
        (dig.answer.len() == 2).then_some(dig)
    });
    assert_eq!(
        srv.answer_sorted(),
        [
            "node.prom.local. 300 IN SRV 10 50 9100 server01.node.prom.local.",
            "node.prom.local. 300 IN SRV 10 50 9100 server02.node.prom.local.",
        ]
    );
    assert_eq!(stack.dig(&["NS", "prom.local"]).answer, ["prom.local. 300 IN NS ns1.ns.dns.prom.local."]);
    eventually("the query log", Duration::from_secs(5), || {
        stack.dnsd.log().contains("\"SRV IN node.prom.local. udp ").then_some(())
    });
}
