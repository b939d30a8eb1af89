//! etcd replaced under dnsd: a new cluster on the same URL (wiped and restarted: lower revision, other keys)
//! is noticed on reconnect and loaded whole; the old cluster's records do not linger.

use promsd_tests::Etcd;

use crate::server::{Dnsd, ZONE};

/// `same_id`: the new etcd has the old one's name and peer URL too, so its cluster ID is the same and only
/// its lower revision tells it apart (a wiped data directory, or a restore of an older snapshot).
fn replaced_cluster_is_loaded_whole(same_id: bool) {
    let (port, peer) = (promsd_tests::free_port(), promsd_tests::free_port());
    let old = Etcd::start_on_ports(port, peer);
    // A revision the new cluster will not reach soon.
    for i in 0..30 {
        old.put("/skydns/local/prom/node/old", &format!(r#"{{"host":"10.0.0.1","port":{}}}"#, 9000 + i));
    }
    let dnsd = Dnsd::start(&old.endpoint, &[ZONE]);
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.iter().any(|a| a.contains("9029 old.node")));
    let serial_before = serial(&dnsd);
    drop(old); // stopped, its data directory gone

    let new = if same_id { Etcd::start_on_ports(port, peer) } else { Etcd::start_on_port(port) };
    new.put("/skydns/local/prom/node/new", r#"{"host":"10.0.0.2","port":9100}"#);
    let back = std::time::Instant::now();
    let answer = dnsd.dig_until(&["SRV", "node.prom.local"], |d| {
        d.answer.iter().any(|a| a.contains("new.node")) && !d.answer.iter().any(|a| a.contains("old.node"))
    });
    assert_eq!(answer.answer, ["node.prom.local. 300 IN SRV 10 100 9100 new.node.prom.local."]);
    // The retry backoff's cap (4 s) plus the load: current within 5 s of etcd answering again.
    let took = back.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "converged {took:?} after etcd was back");
    // The new cluster's revision is lower, but secondaries and caches compare serials: it still rises.
    let serial_after = serial(&dnsd);
    assert!(serial_after > serial_before, "SOA serial {serial_before} -> {serial_after}");
}

fn serial(dnsd: &Dnsd) -> u64 {
    let soa = dnsd.dig(&["SOA", "prom.local"]);
    let record = soa.answer.first().unwrap_or_else(|| panic!("no SOA:\n{}", soa.raw));
    record.split_whitespace().nth(6).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("serial in {record}"))
}

#[test]
fn a_new_cluster_on_the_same_url_is_loaded_whole() {
    replaced_cluster_is_loaded_whole(false);
}

#[test]
fn a_wiped_cluster_with_the_same_id_is_loaded_whole() {
    replaced_cluster_is_loaded_whole(true);
}

/// An operator restores last night's snapshot (`etcdctl snapshot restore`) onto the same URL: the same
/// cluster ID, the older data at its older revision. dnsd answers the snapshot's records, not the ones
/// written after it.
#[test]
fn a_restored_older_snapshot_is_loaded_whole() {
    let (port, peer) = (promsd_tests::free_port(), promsd_tests::free_port());
    let old = Etcd::start_on_ports(port, peer);
    old.put("/skydns/local/prom/node/kept", r#"{"host":"10.0.0.1","port":9100}"#);
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshot = dir.path().join("backup.db");
    old.snapshot(&snapshot);
    for i in 0..20 {
        old.put("/skydns/local/prom/node/later", &format!(r#"{{"host":"10.0.0.2","port":{}}}"#, 9000 + i));
    }
    old.del("/skydns/local/prom/node/kept");
    let dnsd = Dnsd::start(&old.endpoint, &[ZONE]);
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.iter().any(|a| a.contains("9019 later.node")));
    drop(old);

    let _restored = Etcd::restored_from(&snapshot, port, peer);
    let answer = dnsd.dig_until(&["SRV", "node.prom.local"], |d| {
        d.answer.iter().any(|a| a.contains("kept.node")) && !d.answer.iter().any(|a| a.contains("later.node"))
    });
    assert_eq!(answer.answer, ["node.prom.local. 300 IN SRV 10 100 9100 kept.node.prom.local."]);
}
