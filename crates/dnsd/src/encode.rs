//! The response encoder. hickory-proto stops compressing names after the first 120 in a message (a guard
//! against CPU exhaustion when encoding untrusted data), which makes an SRV answer with 1,000 targets
//! overflow 64 KiB. Answers here hold only our own records, so this writer compresses every owner name and
//! every compressible name in RDATA (RFC 1035 4.1.4; SRV targets stay uncompressed, RFC 2782). It covers
//! the record types dnsd answers with; anything else returns None and goes through hickory.

use std::collections::HashMap;

use hickory_proto::op::{Edns, Message, MessageType};
use hickory_proto::rr::{DNSClass, Name, RData, Record};

/// Pointers can only reach the first 16 KiB of a message.
const MAX_POINTER: usize = 0x3fff;

struct Writer {
    out: Vec<u8>,
    /// Lowercased wire form of a name suffix -> where it starts.
    names: HashMap<Vec<u8>, u16>,
}

impl Writer {
    fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    /// Writes `name`, ending in a pointer to an earlier copy of its longest known suffix when `compress`.
    fn name(&mut self, name: &Name, compress: bool) -> Option<()> {
        let labels: Vec<&[u8]> = name.iter().collect();
        for i in 0..labels.len() {
            let key = suffix_key(&labels[i..]);
            if compress && let Some(&at) = self.names.get(&key) {
                self.u16(0xc000 | at);
                return Some(());
            }
            if self.out.len() <= MAX_POINTER {
                self.names.entry(key).or_insert(self.out.len() as u16);
            }
            let label = labels[i];
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            self.out.push(label.len() as u8);
            self.out.extend_from_slice(label);
        }
        self.out.push(0);
        Some(())
    }

    fn record(&mut self, record: &Record) -> Option<()> {
        self.name(&record.name, true)?;
        self.u16(u16::from(record.record_type()));
        self.u16(u16::from(record.dns_class));
        self.u32(record.ttl);
        let length_at = self.out.len();
        self.u16(0);
        match &record.data {
            RData::A(a) => self.out.extend_from_slice(&a.0.octets()),
            RData::AAAA(aaaa) => self.out.extend_from_slice(&aaaa.0.octets()),
            RData::CNAME(name) => self.name(&name.0, true)?,
            RData::NS(name) => self.name(&name.0, true)?,
            RData::PTR(name) => self.name(&name.0, true)?,
            RData::MX(mx) => {
                self.u16(mx.preference);
                self.name(&mx.exchange, true)?;
            }
            RData::SRV(srv) => {
                self.u16(srv.priority);
                self.u16(srv.weight);
                self.u16(srv.port);
                self.name(&srv.target, false)?;
            }
            RData::SOA(soa) => {
                self.name(&soa.mname, true)?;
                self.name(&soa.rname, true)?;
                self.u32(soa.serial);
                self.u32(soa.refresh as u32);
                self.u32(soa.retry as u32);
                self.u32(soa.expire as u32);
                self.u32(soa.minimum);
            }
            RData::TXT(txt) => {
                for string in txt.txt_data.iter() {
                    self.out.push(u8::try_from(string.len()).ok()?);
                    self.out.extend_from_slice(string);
                }
            }
            _ => return None,
        }
        let length = u16::try_from(self.out.len() - length_at - 2).ok()?;
        self.out[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        Some(())
    }

    fn opt(&mut self, edns: &Edns, rcode_high: u8) {
        self.out.push(0); // the root name
        self.u16(41);
        self.u16(edns.max_payload());
        let flags = if edns.flags().dnssec_ok { 0x8000u32 } else { 0 };
        self.u32((u32::from(rcode_high) << 24) | (u32::from(edns.version()) << 16) | flags);
        self.u16(0);
    }
}

fn suffix_key(labels: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::new();
    for label in labels {
        key.push(label.len() as u8);
        key.extend(label.iter().map(|b| b.to_ascii_lowercase()));
    }
    key
}

/// Encodes a response, or None when it holds something this writer does not cover or is over 64 KiB.
pub fn encode(message: &Message) -> Option<Vec<u8>> {
    let meta = &message.metadata;
    let mut w = Writer { out: Vec::with_capacity(512), names: HashMap::new() };
    w.u16(meta.id);
    let opcode: u8 = meta.op_code.into();
    let qr = u8::from(meta.message_type == MessageType::Response);
    w.out.push(
        (qr << 7)
            | ((opcode & 0x0f) << 3)
            | (u8::from(meta.authoritative) << 2)
            | (u8::from(meta.truncation) << 1)
            | u8::from(meta.recursion_desired),
    );
    w.out.push(
        (u8::from(meta.recursion_available) << 7)
            | (u8::from(meta.authentic_data) << 5)
            | (u8::from(meta.checking_disabled) << 4)
            | (meta.response_code.low() & 0x0f),
    );
    let extra = usize::from(message.edns.is_some());
    for count in
        [message.queries.len(), message.answers.len(), message.authorities.len(), message.additionals.len() + extra]
    {
        w.u16(u16::try_from(count).ok()?);
    }
    for query in &message.queries {
        w.name(query.name(), true)?;
        w.u16(u16::from(query.query_type()));
        w.u16(u16::from(query.query_class()));
    }
    for record in message.answers.iter().chain(&message.authorities).chain(&message.additionals) {
        if record.dns_class != DNSClass::IN {
            return None;
        }
        w.record(record)?;
    }
    if let Some(edns) = &message.edns {
        w.opt(edns, meta.response_code.high());
    }
    (w.out.len() <= usize::from(u16::MAX)).then_some(w.out)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("name")
    }

    #[test]
    fn round_trips_through_hickory() {
        let mut message = Message::new(4242, MessageType::Response, OpCode::Query);
        message.metadata.authoritative = true;
        message.metadata.recursion_desired = true;
        message.metadata.response_code = ResponseCode::NXDomain;
        let owner = name("Node.Prom.Local.");
        message.add_query(Query::query(owner.clone(), RecordType::SRV));
        let rdatas = [
            RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
            RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
            RData::CNAME(CNAME(name("a.node.prom.local."))),
            RData::NS(NS(name("ns1.ns.dns.prom.local."))),
            RData::PTR(PTR(name("x.example.org."))),
            RData::MX(MX::new(10, name("mx.node.prom.local."))),
            RData::SRV(SRV::new(10, 50, 9100, name("a.node.prom.local."))),
            RData::SOA(SOA::new(name("ns.dns.prom.local."), name("hostmaster.prom.local."), 7, 7200, 1800, 86400, 30)),
            RData::TXT(TXT::from_bytes(vec![&b"x".repeat(255)[..], b"tail"])),
        ];
        for rdata in rdatas {
            message.add_answer(Record::from_rdata(owner.clone(), 300, rdata));
        }
        message.add_additional(Record::from_rdata(
            name("a.node.prom.local."),
            60,
            RData::A(A(Ipv4Addr::new(10, 0, 0, 2))),
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        message.set_edns(edns);
        let bytes = super::encode(&message).expect("encodable");
        let decoded = Message::from_vec(&bytes).expect("hickory decodes it");
        assert_eq!(decoded.metadata, message.metadata);
        assert_eq!(decoded.queries, message.queries);
        assert_eq!(decoded.answers, message.answers);
        assert_eq!(decoded.additionals, message.additionals);
        assert_eq!(decoded.edns.map(|e| e.max_payload()), Some(1232));
    }

    #[test]
    fn a_thousand_srv_targets_fit_in_one_message() {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        let owner = name("svc0000.big.prom.local.");
        message.add_query(Query::query(owner.clone(), RecordType::SRV));
        for i in 0..1000 {
            let target = name(&format!("host{i:04}.svc0000.big.prom.local."));
            message.add_answer(Record::from_rdata(owner.clone(), 300, RData::SRV(SRV::new(10, 1, 9100, target))));
        }
        let bytes = super::encode(&message).expect("fits");
        assert!(bytes.len() < 60_000, "{} bytes", bytes.len());
        assert_eq!(Message::from_vec(&bytes).expect("decodes").answers.len(), 1000);
    }
}
