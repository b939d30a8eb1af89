//! Bad input loses nothing: malformed values in etcd are skipped, hostile packets get FORMERR or nothing.

use std::net::UdpSocket;
use std::time::Duration;

use promsd_tests::Etcd;

use crate::server::{Dnsd, ZONE, load_seed};

#[test]
fn malformed_values_are_skipped_and_the_rest_answers() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    etcd.put("/skydns/local/prom/node/broken", "{not json");
    etcd.put("/skydns/local/prom/node/wrongtype", r#"{"host":42}"#);
    etcd.put("/skydns/local/prom/node/badport", r#"{"host":"10.0.0.9","port":700000}"#);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    assert_eq!(dnsd.dig(&["SRV", "node.prom.local"]).answer.len(), 2);
    // Also when they arrive through the watch.
    etcd.put("/skydns/local/prom/node/server03", r#"{"host":"10.0.0.7","port":9100}"#);
    etcd.put("/skydns/local/prom/node/later", "[]");
    let answer = dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.len() == 3);
    assert_eq!(answer.status, "NOERROR");
    // A valid value overwritten with garbage is gone: etcd no longer holds it.
    etcd.put("/skydns/local/prom/node/server03", "garbage");
    dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.len() == 2);
}

#[test]
fn hostile_packets_get_formerr_or_nothing() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let mut buf = [0u8; 4096];

    // A valid header with a question count that the body does not hold: FORMERR with the same ID.
    let broken = [0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, b'a'];
    socket.send_to(&broken, dnsd.dns).expect("send");
    let len = socket.recv(&mut buf).expect("FORMERR reply");
    assert_eq!(&buf[..2], &[0xab, 0xcd]);
    assert_eq!(buf[3] & 0x0f, 1, "rcode FORMERR");
    assert!(len >= 12);

    // Runts and responses get no reply at all (no reflection, no loops).
    for packet in [&[1u8, 2, 3][..], &[0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0][..]] {
        socket.send_to(packet, dnsd.dns).expect("send");
        assert!(socket.recv(&mut buf).is_err(), "no reply expected for {packet:?}");
    }
    // A bounded burst of pseudo-random packets, then the server still answers.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 300) as usize;
        let packet: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        let _ = socket.send_to(&packet, dnsd.dns);
    }
    assert_eq!(dnsd.dig(&["SRV", "node.prom.local"]).answer.len(), 2);
}
