//! From request bytes to response bytes: parsing, the response header, EDNS, and fitting the answer into
//! what the transport allows. Nothing a client sends can panic here; unparseable queries get FORMERR.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

pub mod encode;

use crate::answer::Resolver;

/// The largest UDP payload dnsd sends and advertises: the DNS Flag Day 2020 value, which avoids IP
/// fragmentation on any common path. Clients asking for less get less; larger answers go over TCP.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Without EDNS a UDP answer may not exceed 512 bytes (RFC 1035).
const PLAIN_UDP_PAYLOAD: u16 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What a request came to, for the metrics: its question type (when it had one), the response code, the
/// zone that answered and whether it asked for DNSSEC records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub qtype: Option<RecordType>,
    /// None when nothing was sent back.
    pub rcode: Option<ResponseCode>,
    /// The zone's index in the catalog; None when no zone answered (REFUSED, FORMERR, ...).
    pub zone: Option<usize>,
    /// The EDNS DO bit was set.
    pub dnssec_ok: bool,
}

/// A response and what a cache needs to know of it.
#[derive(Debug)]
pub struct Reply {
    /// None for input that must not be answered (responses, runts).
    pub bytes: Option<Vec<u8>>,
    pub outcome: Outcome,
    /// What the bytes depend on; None when they must not be reused for another request.
    pub reuse: Option<Reuse>,
}

/// What a cached copy of a reply depends on.
#[derive(Debug, Default)]
pub struct Reuse {
    /// The view's keys the answer read; a change at or below one of them may change it.
    pub reads: Vec<String>,
    /// Offsets of the SOA serials in the bytes, to give a cached copy the current serial.
    pub serials: Vec<usize>,
    /// Whether a TTL in it counts down (a lease's): a copy is good for a second at most.
    pub timed: bool,
}

/// Answers one DNS message.
pub fn respond(request: &[u8], transport: Transport, resolver: &Resolver<'_>) -> Reply {
    let mut decoder = BinDecoder::new(request);
    // Bytes after the last record are a malformed message (Knot answers FORMERR too), not padding to ignore.
    let parsed = Message::read(&mut decoder).ok().filter(|_| decoder.is_empty());
    let request = match parsed {
        Some(message) => message,
        None => {
            let bytes = formerr(request);
            let rcode = bytes.is_some().then_some(ResponseCode::FormErr);
            return Reply { bytes, outcome: Outcome { rcode, ..Outcome::default() }, reuse: Some(Reuse::default()) };
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return Reply { bytes: None, outcome: Outcome::default(), reuse: None };
    }
    let qtype = request.queries.first().map(|q| q.query_type());
    let limit = match transport {
        Transport::Tcp => u16::MAX,
        Transport::Udp => match &request.edns {
            Some(edns) => edns.max_payload().clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            None => PLAIN_UDP_PAYLOAD,
        },
    };
    let (response, reuse) = build(&request, resolver);
    let rcode = response.metadata.response_code;
    let encoded = encode(response, usize::from(limit), transport);
    let dnssec_ok = request.edns.as_ref().is_some_and(|edns| edns.flags().dnssec_ok);
    let outcome = Outcome { qtype, rcode: encoded.as_ref().map(|_| rcode), zone: resolver.zone(), dnssec_ok };
    match encoded {
        Some((bytes, serials)) => {
            let reuse = serials.map(|serials| Reuse { serials, ..reuse });
            Reply { bytes: Some(bytes), outcome, reuse }
        }
        None => Reply { bytes: None, outcome, reuse: None },
    }
}

/// The response to a parsed query, and what its answer depended on (serials are found when it is encoded).
fn build(request: &Message, resolver: &Resolver<'_>) -> (Message, Reuse) {
    let mut response = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.add_queries(request.queries.iter().cloned());
    if let Some(req_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        edns.set_dnssec_ok(false);
        response.set_edns(edns);
        if req_edns.version() > 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return (response, Reuse::default());
        }
    }
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return (response, Reuse::default());
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return (response, Reuse::default());
    };
    // Class ANY asks for the zone's (IN) data, as Knot answers it; other classes are not ours.
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        response.metadata.response_code = ResponseCode::Refused;
        return (response, Reuse::default());
    }
    // QTYPE 0 is reserved: NOTIMP, as Knot.
    if query.query_type() == RecordType::ZERO {
        response.metadata.response_code = ResponseCode::NotImp;
        return (response, Reuse::default());
    }
    // Zone transfers are over TCP, where net::tcp hands them to crate::transfer before they get here; over
    // UDP (or here at all) they are refused: an empty NOERROR is a protocol error to every transfer client.
    if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
        response.metadata.response_code = ResponseCode::Refused;
        return (response, Reuse::default());
    }
    let answer = resolver.resolve(query);
    response.metadata.response_code = answer.rcode;
    response.metadata.authoritative = answer.authoritative;
    response.answers = answer.answers;
    response.authorities = answer.authorities;
    response.additionals = answer.additionals;
    (response, Reuse { reads: answer.reads, serials: Vec::new(), timed: answer.timed })
}

/// Encodes the response within `limit` bytes: whole; else without the additional section (optional data);
/// else over TCP as many answer records as fit with TC set (there is no larger transport to retry on), and
/// over UDP an empty truncated answer that tells the client to retry over TCP. Returns the bytes and the
/// offsets of SOA serials (None when they are unknown: hickory encoded it).
fn encode(mut response: Message, limit: usize, transport: Transport) -> Option<(Vec<u8>, Option<Vec<usize>>)> {
    use encode::{EncodeError, Fit};
    let ours = |message: &Message, fit| encode::encode(message, limit, fit).map(|e| (e.bytes, Some(e.serials)));
    match ours(&response, Fit::Whole) {
        Ok(encoded) => return Some(encoded),
        // Records this writer does not cover (none that dnsd answers with): hickory's encoder, whole or not.
        Err(EncodeError::Unsupported) => {
            let whole = |b: &Vec<u8>| b.len() <= limit && b.get(2).is_some_and(|flags| flags & 0x02 == 0);
            return response.to_vec().ok().filter(whole).map(|b| (b, None));
        }
        Err(EncodeError::TooLarge) => {}
    }
    if !response.additionals.is_empty() {
        response.additionals.clear();
        if let Ok(encoded) = ours(&response, Fit::Whole) {
            return Some(encoded);
        }
    }
    if transport == Transport::Tcp {
        return ours(&response, Fit::Partial).ok();
    }
    response.answers.clear();
    response.authorities.clear();
    response.metadata.truncation = true;
    ours(&response, Fit::Whole).ok()
}

/// FORMERR for a message whose header can be read but whose body cannot; nothing for anything shorter or for
/// something that claims to be a response (never answer those: it could start a loop).
fn formerr(request: &[u8]) -> Option<Vec<u8>> {
    if request.len() < 12 || request[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    let op_code = OpCode::from_u8((request[2] >> 3) & 0x0f);
    let mut response = Message::error_msg(id, op_code, ResponseCode::FormErr);
    // RD and CD are copied as into every other response: the UDP cache patches both into a copy it serves.
    response.metadata.recursion_desired = request[2] & 0x01 != 0;
    response.metadata.checking_disabled = request[3] & 0x10 != 0;
    response.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use promsd_common::KeyPrefix;

    use super::{Transport, respond};
    use crate::answer::Resolver;
    use crate::config::{Catalog, LeaseBounds, Zone};
    use crate::store::{LeaseTable, View};

    /// Found by the packet fuzz target: a FORMERR to a query with CD set came back with CD clear from the
    /// slow path but with CD set from the UDP cache (which copies the bit), so the two answered differently.
    #[test]
    fn formerr_copies_rd_and_cd_as_every_response() {
        let catalog = Catalog::new(vec![Zone::new("prom.local").expect("zone")], KeyPrefix::new("/skydns"));
        let (view, leases) = (View::default(), LeaseTable::default());
        let resolver = Resolver::new(&catalog, &view, &leases, LeaseBounds::default());
        // SRV prom.local with an OPT record whose option overruns its RDATA.
        let mut request = b"\x01\x26\x01\x90\x00\x01\x00\x00\x00\x00\x00\x01\x04\x01\x00\x00\x12\x04prom\x05local\x00\
            \x00\x21\x00\x01\x00\x00\x29\x04\xd0\x00\x00\x00\x10\x00\x0c\x00\x0a\x00\x01\x01\x08\x01\x01\x39\x25\x01\x01"
            .to_vec();
        for (rd, cd) in [(true, true), (false, false), (true, false), (false, true)] {
            request[2] = u8::from(rd);
            request[3] = if cd { 0x90 } else { 0x80 };
            let bytes = respond(&request, Transport::Udp, &resolver).bytes.expect("FORMERR");
            assert_eq!(bytes[3] & 0x0f, 1, "FORMERR");
            assert_eq!((bytes[2] & 0x01 != 0, bytes[3] & 0x10 != 0), (rd, cd), "RD and CD as asked");
        }
    }
}
