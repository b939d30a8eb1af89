//! The response encoder. hickory-proto stops compressing names after the first 120 in a message (a guard
//! against CPU exhaustion when encoding untrusted data), which makes an SRV answer with 1,000 targets
//! overflow 64 KiB. Answers here hold only our own records, so this writer compresses every owner name and
//! every compressible name in RDATA (RFC 1035 4.1.4; SRV targets stay uncompressed, RFC 2782). It covers
//! the record types dnsd answers with; anything else is refused and goes through hickory. A message over
//! the limit can be cut after the last record that fits (for TCP, where there is no retry).

use std::collections::HashMap;

use hickory_proto::op::{Edns, Message, MessageType};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use thiserror::Error;

/// Pointers can only reach the first 16 KiB of a message.
const MAX_POINTER: usize = 0x3fff;

struct Writer {
    out: Vec<u8>,
    /// Lowercased wire form of a name suffix -> where it starts.
    names: HashMap<Vec<u8>, u16>,
    serials: Vec<usize>,
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
                self.serials.push(self.out.len());
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

/// Why a message was not encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("the message holds a record this writer does not cover")]
    Unsupported,
    #[error("the message does not fit in the limit")]
    TooLarge,
}

/// How to treat a message larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Every record or nothing.
    Whole,
    /// As many records as fit, in section order, with TC set (RFC 2181 9: a partial RRset may stay).
    Partial,
}

/// An encoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// Where each SOA serial sits, so a cached copy can be given the current serial.
    pub serials: Vec<usize>,
    /// Whether records were left out to stay within the limit (TC is set).
    pub truncated: bool,
}

/// Encodes a response within `limit` bytes (at most 65,535).
pub fn encode(message: &Message, limit: usize, fit: Fit) -> Result<Encoded, EncodeError> {
    let limit = limit.min(usize::from(u16::MAX));
    let meta = &message.metadata;
    let mut w = Writer { out: Vec::with_capacity(512), names: HashMap::new(), serials: Vec::new() };
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
    w.out.extend_from_slice(&[0; 8]); // the four counts, written at the end
    let too_large = EncodeError::TooLarge;
    for query in &message.queries {
        w.name(query.name(), true).ok_or(EncodeError::Unsupported)?;
        w.u16(u16::from(query.query_type()));
        w.u16(u16::from(query.query_class()));
    }
    // The OPT record goes last, and must always fit.
    let reserve = if message.edns.is_some() { 11 } else { 0 };
    if w.out.len() + reserve > limit {
        return Err(too_large);
    }
    let mut counts = [message.queries.len(), 0, 0, 0];
    let mut truncated = false;
    'sections: for (section, records) in
        [&message.answers, &message.authorities, &message.additionals].iter().enumerate()
    {
        for record in records.iter() {
            if record.dns_class != DNSClass::IN {
                return Err(EncodeError::Unsupported);
            }
            let mark = w.out.len();
            w.record(record).ok_or(EncodeError::Unsupported)?;
            if w.out.len() + reserve > limit {
                if fit == Fit::Whole {
                    return Err(too_large);
                }
                // Nothing written after this point refers back into the dropped bytes: no record follows,
                // and the OPT record holds no names.
                w.out.truncate(mark);
                w.serials.retain(|&at| at < mark);
                truncated = true;
                break 'sections;
            }
            counts[section + 1] += 1;
        }
    }
    if let Some(edns) = &message.edns {
        w.opt(edns, meta.response_code.high());
        counts[3] += 1;
    }
    for (i, count) in counts.into_iter().enumerate() {
        let count = u16::try_from(count).map_err(|_| too_large)?;
        w.out[4 + 2 * i..6 + 2 * i].copy_from_slice(&count.to_be_bytes());
    }
    if truncated {
        w.out[2] |= 0x02;
    }
    Ok(Encoded { bytes: w.out, serials: w.serials, truncated })
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
        let bytes = super::encode(&message, 65535, super::Fit::Whole).expect("encodable").bytes;
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
        let bytes = super::encode(&message, 65535, super::Fit::Whole).expect("fits").bytes;
        assert!(bytes.len() < 60_000, "{} bytes", bytes.len());
        assert_eq!(Message::from_vec(&bytes).expect("decodes").answers.len(), 1000);
    }

    #[test]
    fn ten_thousand_targets_are_cut_to_what_fits() {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        let owner = name("huge.big.prom.local.");
        message.add_query(Query::query(owner.clone(), RecordType::SRV));
        for i in 0..10_000 {
            let target = name(&format!("host{i:05}.huge.big.prom.local."));
            message.add_answer(Record::from_rdata(owner.clone(), 300, RData::SRV(SRV::new(10, 1, 9100, target))));
        }
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        message.set_edns(edns);
        assert_eq!(super::encode(&message, 65535, super::Fit::Whole), Err(super::EncodeError::TooLarge));
        let cut = super::encode(&message, 65535, super::Fit::Partial).expect("cut");
        assert!(cut.truncated && cut.bytes.len() <= 65535);
        let decoded = Message::from_vec(&cut.bytes).expect("decodes");
        assert!(decoded.metadata.truncation);
        assert!(decoded.answers.len() > 1000, "{} records", decoded.answers.len());
        assert_eq!(decoded.answers[..], message.answers[..decoded.answers.len()]);
        assert_eq!(decoded.edns.map(|e| e.max_payload()), Some(1232), "the OPT record stays");
    }

    #[test]
    fn soa_serials_are_located() {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        let soa = SOA::new(name("ns.dns.prom.local."), name("hostmaster.prom.local."), 0xdead, 7200, 1800, 86400, 30);
        message.add_authority(Record::from_rdata(name("prom.local."), 30, RData::SOA(soa)));
        let encoded = super::encode(&message, 512, super::Fit::Whole).expect("fits");
        let [at] = encoded.serials[..] else { panic!("one serial: {:?}", encoded.serials) };
        assert_eq!(encoded.bytes[at..at + 4], 0xdead_u32.to_be_bytes());
    }
}
