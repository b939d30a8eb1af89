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

/// A bounded fuzz run of the request path, in process: random bytes and mutations of valid queries. Nothing
/// may panic, and no UDP answer may exceed what the client can take (its EDNS size, or 512 bytes).
#[test]
fn fuzzed_requests_never_panic_or_overflow_the_client() {
    use std::sync::Arc;

    use dnsd::config::{Catalog, LeaseBounds, Zone};
    use dnsd::net::cache::{AnswerCache, Key};
    use dnsd::store::{Entry, LeaseTable, View};
    use dnsd::wire::{MAX_UDP_PAYLOAD, Transport, respond};
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use promsd_common::{KeyPrefix, Service};

    let mut view = View::new(42);
    for i in 0..150 {
        let service = Service { host: format!("10.0.{}.{}", i / 200, i % 200 + 1), port: 9100, ..Service::default() };
        let key = format!("/skydns/local/prom/node/host{i:03}").into();
        view.insert(Arc::new(Entry { key, service, lease: 0 }));
    }
    let named = Service { host: "host001.node.prom.local".into(), text: "t".repeat(400), ..Service::default() };
    view.insert(Arc::new(Entry { key: "/skydns/local/prom/alias".into(), service: named, lease: 0 }));
    view.serial = 42;
    // The same data one publication later: a cached answer given the new serial must equal a fresh one.
    let mut later = view.clone();
    later.serial = 43;
    let catalog = Catalog::new(vec![Zone::new("prom.local").expect("zone")], KeyPrefix::new("/skydns"));
    let leases = LeaseTable::default();
    let resolver = dnsd::answer::Resolver::new(&catalog, &view, &leases, LeaseBounds::default());
    let resolver_later = dnsd::answer::Resolver::new(&catalog, &later, &leases, LeaseBounds::default());

    let mut seeds = Vec::new();
    for (name, rtype) in [
        ("node.prom.local.", RecordType::SRV),
        ("node.prom.local.", RecordType::A),
        ("*.node.prom.local.", RecordType::AAAA),
        ("alias.prom.local.", RecordType::TXT),
        ("alias.prom.local.", RecordType::A),
        ("prom.local.", RecordType::NS),
        ("missing.prom.local.", RecordType::MX),
        ("example.org.", RecordType::ANY),
    ] {
        for payload in [None, Some(512u16), Some(1232), Some(4096)] {
            let mut query = Message::query();
            query.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
            if let Some(payload) = payload {
                let mut edns = Edns::new();
                edns.set_max_payload(payload);
                query.set_edns(edns);
            }
            seeds.push(query.to_vec().expect("encode"));
        }
    }

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let started = std::time::Instant::now();
    let mut answered = 0;
    for round in 0..300_000 {
        if started.elapsed() > Duration::from_secs(60) {
            break; // bounded in time as well as in count
        }
        let packet: Vec<u8> = if round % 3 == 0 {
            (0..next() % 600).map(|_| next() as u8).collect()
        } else {
            let mut packet = seeds[next() as usize % seeds.len()].clone();
            for _ in 0..=next() % 4 {
                let at = next() as usize % packet.len();
                match next() % 3 {
                    0 => packet[at] ^= 1 << (next() % 8),
                    1 => packet[at] = next() as u8,
                    _ => packet.truncate(at.max(1)),
                }
            }
            packet
        };
        let limit = match Message::from_vec(&packet) {
            Ok(message) => message.edns.map(|e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD)).unwrap_or(512),
            Err(_) => 512,
        };
        let reply = respond(&packet, Transport::Udp, &resolver);
        if let Some(response) = reply.bytes {
            answered += 1;
            assert!(Message::from_vec(&response).is_ok(), "an answer that does not decode: {response:?}");
            assert!(response.len() <= usize::from(limit), "{} bytes > {limit} for {packet:?}", response.len());
            // The answer cache must give what the slow path gives, for a request with another ID and RD, and
            // after a publication that changed only the serial.
            if let (Some(key), Some(reuse)) = (Key::of(&packet), reply.reuse) {
                let mut cache = AnswerCache::default();
                cache.insert(key.clone(), &response, reply.outcome, reuse, std::time::Instant::now());
                let mut again = packet.clone();
                again[0] ^= 0x5a;
                again[2] ^= 0x01;
                let cached =
                    cache.answer(&key, &again, later.serial, std::time::Instant::now()).map(|(bytes, _)| bytes);
                let fresh = respond(&again, Transport::Udp, &resolver_later).bytes;
                assert_eq!(cached, fresh, "cache differs for {packet:?}");
            }
        } else {
            let _ = Key::of(&packet);
        }
        if let Some(response) = respond(&packet, Transport::Tcp, &resolver).bytes {
            assert!(response.len() <= usize::from(u16::MAX));
        }
    }
    assert!(answered > 1000, "the fuzz run must reach the answering code, not only the parser ({answered})");
}

#[test]
fn every_kind_of_malformed_value_is_skipped_while_running() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let long_label = "a".repeat(64);
    let long_name = vec!["abcdefghij"; 26].join("/");
    let huge = format!(r#"{{"host":"10.0.0.1","text":"{}"}}"#, "x".repeat(20_000));
    let bad: Vec<(String, String)> = vec![
        ("/skydns/local/prom/node/json".into(), "{not json".into()),
        ("/skydns/local/prom/node/types".into(), r#"{"host":["10.0.0.1"],"port":"9100"}"#.into()),
        ("/skydns/local/prom/node/huge".into(), huge),
        ("/skydns/local/prom/node/badhost".into(), r#"{"host":"not a host!","port":9100}"#.into()),
        ("/skydns/local/prom/node/port".into(), r#"{"host":"10.0.0.1","port":65536}"#.into()),
        ("/skydns/local/prom/node/negative".into(), r#"{"host":"10.0.0.1","port":-7}"#.into()),
        (format!("/skydns/local/prom/node/{long_label}"), r#"{"host":"10.0.0.1","port":9100}"#.into()),
        (format!("/skydns/local/prom/node/{long_name}"), r#"{"host":"10.0.0.1","port":9100}"#.into()),
        ("/skydns/local/prom/node/hostlabel".into(), format!(r#"{{"host":"{long_label}.example.org","port":1}}"#)),
    ];
    for (key, value) in &bad {
        etcd.put(key, value);
    }
    // Another server's zone under the same path is not malformed: skipped without a word.
    etcd.put("/skydns/org/example/outside", r#"{"host":"10.0.0.1"}"#);
    etcd.put("/skydns/local/prom/node/server03", r#"{"host":"192.168.1.3","port":9100}"#);
    let srv = dnsd.dig_until(&["SRV", "node.prom.local"], |d| d.answer.len() == 3);
    assert!(srv.answer.iter().all(|r| r.contains(" 9100 server0")), "only the valid ones: {}", srv.raw);
    let (_, metrics) = promsd_tests::http_get(dnsd.web, "/metrics").expect("metrics");
    assert!(metrics.contains(&format!("dnsd_malformed_entries_skipped_total {}\n", bad.len())), "{metrics}");
    assert_eq!(dnsd.dig(&["+tcp", "SRV", "node.prom.local"]).answer.len(), 3);
}

/// A query for `name` of type `qtype` as DNS bytes (ID 0x1234, RD).
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).expect("label"));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    q
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(message.len()).expect("length").to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// The next length-prefixed message, or None when the server closed the connection (or sent nothing).
fn try_read_frame(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}

fn read_frame(stream: &mut std::net::TcpStream) -> Vec<u8> {
    try_read_frame(stream).expect("a response frame")
}

/// On TCP a message that gets no answer (a response, QR=1; a runt) is skipped and the queries pipelined
/// behind it are answered; zone transfers are refused until they are configured.
#[test]
fn tcp_skips_unanswerable_messages_and_refuses_transfers() {
    use std::io::Write;
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let mut stream = std::net::TcpStream::connect(dnsd.dns).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut response = query("node.prom.local", 33);
    response[2] |= 0x80; // QR=1
    let mut pipelined = framed(&response);
    pipelined.extend(framed(&[1, 2, 3]));
    pipelined.extend(framed(&query("node.prom.local", 33)));
    pipelined.extend(framed(&query("prom.local", 252))); // AXFR
    stream.write_all(&pipelined).expect("send");
    let srv = read_frame(&mut stream);
    assert_eq!(
        (&srv[..2], srv[3] & 0x0f, u16::from_be_bytes([srv[6], srv[7]])),
        (&[0x12, 0x34][..], 0, 2),
        "SRV answered"
    );
    let axfr = read_frame(&mut stream);
    assert_eq!(axfr[3] & 0x0f, 5, "AXFR: REFUSED");
}

/// A client that sends a length and then trickles the message loses the connection after 500 ms, not 10 s.
#[test]
fn tcp_wants_a_whole_message_within_500ms() {
    use std::io::{Read, Write};
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let mut stream = std::net::TcpStream::connect(dnsd.dns).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let message = query("node.prom.local", 33);
    stream.write_all(&framed(&message)[..5]).expect("send a part");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let read = stream.read(&mut buf);
    let took = started.elapsed();
    assert!(matches!(read, Ok(0)) || read.is_err(), "the connection is closed: {read:?}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
}

/// Bytes after the question make a malformed message: FORMERR (as Knot), never the answer to the question.
#[test]
fn bytes_after_the_question_are_formerr() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let dnsd = Dnsd::start(&etcd.endpoint, &[ZONE]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = [0u8; 4096];
    let plain = query("node.prom.local", 33);
    // Asked plainly first, so a cached answer exists that the malformed copy must not get.
    socket.send_to(&plain, dnsd.dns).expect("send");
    socket.recv(&mut buf).expect("answer");
    assert_eq!(buf[3] & 0x0f, 0, "NOERROR");
    let mut trailing = plain.clone();
    trailing.extend_from_slice(&[0xde, 0xad, 0xbe]);
    socket.send_to(&trailing, dnsd.dns).expect("send");
    socket.recv(&mut buf).expect("reply");
    assert_eq!((&buf[..2], buf[3] & 0x0f), (&[0x12, 0x34][..], 1), "FORMERR with the query's ID");
}

/// A TCP connection to `dns` from the loopback address `source`.
fn connect_from(source: [u8; 4], dns: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&std::net::SocketAddr::from((source, 0)).into()).expect("bind the source address");
    socket.connect(&dns.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream
}

/// Whether `stream` gets an answer to an SRV query (false: the server closed it).
fn answered(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Write;
    stream.write_all(&framed(&query("node.prom.local", 33))).is_ok() && try_read_frame(stream).is_some()
}

/// Clients holding connections cannot lock others out: one source gets its share and no more, and at the
/// total bound a new client is served while the connection idle longest is closed.
#[test]
fn tcp_connections_are_bounded_per_source_and_the_idlest_makes_room() {
    let etcd = Etcd::start();
    load_seed(&etcd);
    let mut config = dnsd::Config::new(
        promsd_common::EtcdArgs { endpoints: vec![etcd.endpoint.clone()], ..Default::default() },
        "/skydns",
        &[ZONE.to_string()],
    )
    .expect("config");
    config.tcp = dnsd::config::TcpLimits { max_connections: 8, max_per_source: 4 };
    let dnsd = Dnsd::start_config(config);
    dnsd.wait_ready();
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from([127, 0, 0, 2], dnsd.dns);
        assert!(answered(&mut stream), "within the per-source share");
        held.push(stream);
    }
    let mut fifth = connect_from([127, 0, 0, 2], dnsd.dns);
    assert!(!answered(&mut fifth), "a fifth connection from one source is closed");
    for _ in 0..4 {
        let mut stream = connect_from([127, 0, 0, 3], dnsd.dns);
        assert!(answered(&mut stream), "another source, up to the total");
        held.push(stream);
    }
    // The total is reached; a new client is served and the idlest (the first one opened) is closed.
    let mut newcomer = connect_from([127, 0, 0, 4], dnsd.dns);
    assert!(answered(&mut newcomer), "a new client at the total bound is served");
    assert!(!answered(&mut held[0]), "the connection idle longest made room");
    assert!(answered(&mut held[7]), "the others are kept");
}
