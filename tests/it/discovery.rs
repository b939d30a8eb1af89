//! etcd found through dnsd: etcdctl's --discovery-srv, and the seed's unit environment whose ETCD_ENDPOINT
//! is a discovery domain.

use promsd_tests::eventually;
use std::time::Duration;

use crate::stack::{ETCD, Stack};

#[test]
fn etcdctl_and_the_seed_environment_find_etcd_through_dnsd() {
    promsd_tests::require("etcdctl");
    let stack = Stack::start();
    let out = stack
        .registrar()
        .args(["set", "--endpoints", ETCD, "--zone", "prom.local", "--service", "_etcd-client._tcp"])
        .args(["--instance", "etcd1", "--address", "127.0.0.1", "--port", "2379"])
        .output()
        .expect("registrar set");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let srv = stack.dig(&["SRV", "_etcd-client._tcp.prom.local"]);
    assert_eq!(
        srv.answer,
        ["_etcd-client._tcp.prom.local. 300 IN SRV 10 100 2379 etcd1._etcd-client._tcp.prom.local."],
        "dnsd log:\n{}",
        stack.dnsd.log()
    );

    // Real etcdctl 3.4, told only the domain.
    let members = eventually("etcdctl --discovery-srv to work", Duration::from_secs(10), || {
        let out = stack
            .netns
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_ENDPOINTS")
            .args(["--discovery-srv", "prom.local", "member", "list"])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(members.contains("http://127.0.0.1:2379"), "{members}");

    // The seed's prom@.service environment, unchanged: ETCD_ENDPOINT=prom.local is a discovery domain.
    let seed = |verb: &str| {
        let out = stack
            .registrar()
            .arg(verb)
            .env("EXPORTER_ADDRESS", "192.168.1.1")
            .env("EXPORTER_PORT", "9100")
            .env("ETCD_ENDPOINT", "prom.local")
            .env("ETCD_BASE_PATH", "/skydns/local/prom")
            .env("EXPORTER_TYPE", "node")
            .env("EXPORTER_INSTANCE", "server01")
            .output()
            .expect("registrar");
        assert!(out.status.success(), "registrar {verb}: {}", String::from_utf8_lossy(&out.stderr));
    };
    seed("set");
    assert_eq!(
        stack.etcd.get("/skydns/local/prom/node/server01").as_deref(),
        Some(r#"{"host":"192.168.1.1","port":9100}"#)
    );
    let node = eventually("the record in DNS", Duration::from_secs(10), || {
        let dig = stack.dig(&["SRV", "node.prom.local"]);
        (!dig.answer.is_empty()).then_some(dig)
    });
    assert_eq!(node.answer, ["node.prom.local. 300 IN SRV 10 100 9100 server01.node.prom.local."]);
    seed("rm");
    assert_eq!(stack.etcd.get("/skydns/local/prom/node/server01"), None);
}
