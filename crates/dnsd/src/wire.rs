//! From request bytes to response bytes: parsing, the response header, EDNS, and fitting the answer into
//! what the transport allows. Nothing a client sends can panic here; unparseable queries get FORMERR.

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};

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

/// What a request came to, for the metrics: its question type (when it had one) and the response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub qtype: Option<RecordType>,
    /// None when nothing was sent back.
    pub rcode: Option<ResponseCode>,
}

/// Answers one DNS message. Returns None for input that must not be answered (responses, runts).
pub fn respond(request: &[u8], transport: Transport, resolver: &Resolver<'_>) -> Option<Vec<u8>> {
    respond_with_outcome(request, transport, resolver).0
}

/// [`respond`], also telling what the request came to.
pub fn respond_with_outcome(
    request: &[u8],
    transport: Transport,
    resolver: &Resolver<'_>,
) -> (Option<Vec<u8>>, Outcome) {
    let request = match Message::from_vec(request) {
        Ok(message) => message,
        Err(_) => {
            let reply = formerr(request);
            let rcode = reply.is_some().then_some(ResponseCode::FormErr);
            return (reply, Outcome { qtype: None, rcode });
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return (None, Outcome { qtype: None, rcode: None });
    }
    let qtype = request.queries.first().map(|q| q.query_type());
    let limit = match transport {
        Transport::Tcp => u16::MAX,
        Transport::Udp => match &request.edns {
            Some(edns) => edns.max_payload().clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            None => PLAIN_UDP_PAYLOAD,
        },
    };
    let response = build(&request, resolver);
    let rcode = response.metadata.response_code;
    let bytes = encode(&response, limit);
    let rcode = bytes.is_some().then_some(rcode);
    (bytes, Outcome { qtype, rcode })
}

fn build(request: &Message, resolver: &Resolver<'_>) -> Message {
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
            return response;
        }
    }
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    if query.query_class() != DNSClass::IN {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }
    let answer = resolver.resolve(query);
    response.metadata.response_code = answer.rcode;
    response.metadata.authoritative = answer.authoritative;
    response.answers = answer.answers;
    response.authorities = answer.authorities;
    response.additionals = answer.additionals;
    response
}

/// Encodes the response within `limit` bytes: first without the additional section (optional data), then as
/// an empty truncated answer that tells the client to retry over TCP.
fn encode(response: &Message, limit: u16) -> Option<Vec<u8>> {
    if let Some(bytes) = encode_whole(response, limit) {
        return Some(bytes);
    }
    if !response.additionals.is_empty() {
        let mut slim = response.clone();
        slim.additionals.clear();
        if let Some(bytes) = encode_whole(&slim, limit) {
            return Some(bytes);
        }
    }
    let mut truncated = response.truncate();
    truncated.metadata.authoritative = response.metadata.authoritative;
    truncated.to_vec().ok().filter(|b| b.len() <= usize::from(limit))
}

/// The message encoded with every record, or None when it does not fit: past 65,535 bytes the encoder
/// leaves records out and sets TC itself, which must not pass for a whole answer.
fn encode_whole(response: &Message, limit: u16) -> Option<Vec<u8>> {
    let bytes = match crate::encode::encode(response) {
        Some(bytes) => bytes,
        None => response.to_vec().ok()?,
    };
    let truncated_by_encoder = bytes.get(2).is_some_and(|flags| flags & 0x02 != 0);
    (bytes.len() <= usize::from(limit) && !truncated_by_encoder).then_some(bytes)
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
    response.metadata.recursion_desired = request[2] & 0x01 != 0;
    response.to_vec().ok()
}
