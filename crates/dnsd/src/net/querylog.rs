//! One line per query, in the shape of CoreDNS's `log` plugin.

use std::net::SocketAddr;
use std::time::Duration;

use crate::wire::Transport;

/// The RCODE as DNS tools print it (NOERROR, NXDOMAIN, ...).
fn rcode_name(code: hickory_proto::op::ResponseCode) -> String {
    use hickory_proto::op::ResponseCode::*;
    match code {
        NoError => "NOERROR".into(),
        FormErr => "FORMERR".into(),
        ServFail => "SERVFAIL".into(),
        NXDomain => "NXDOMAIN".into(),
        NotImp => "NOTIMP".into(),
        Refused => "REFUSED".into(),
        BADVERS => "BADVERS".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// One line per query, in the shape of CoreDNS's `log` plugin:
/// `127.0.0.1:52638 - 8316 "SRV IN node.prom.local. udp 41 false 4096" NOERROR qr,aa,rd 120 0.000082s`.
pub(super) fn log(peer: SocketAddr, request: &[u8], response: Option<&[u8]>, transport: Transport, took: Duration) {
    use hickory_proto::op::Message;
    let Ok(query) = Message::from_vec(request) else {
        tracing::info!(%peer, "unparseable query of {} bytes", request.len());
        return;
    };
    let question = query.queries.first().map(|q| format!("{} {} {}", q.query_type(), q.query_class(), q.name()));
    let (do_bit, size) = query.edns.as_ref().map(|e| (e.flags().dnssec_ok, e.max_payload())).unwrap_or((false, 512));
    let proto = if transport == Transport::Udp { "udp" } else { "tcp" };
    let (rcode, flags, len) = match response.and_then(|r| Message::from_vec(r).ok().map(|m| (m, r.len()))) {
        Some((m, len)) => {
            let mut flags = vec!["qr"];
            for (set, name) in
                [(m.metadata.authoritative, "aa"), (m.metadata.truncation, "tc"), (m.metadata.recursion_desired, "rd")]
            {
                if set {
                    flags.push(name);
                }
            }
            (rcode_name(m.metadata.response_code), flags.join(","), len)
        }
        None => ("-".to_string(), "-".to_string(), 0),
    };
    tracing::info!(
        "{peer} - {} \"{} {proto} {} {do_bit} {size}\" {rcode} {flags} {len} {:.6}s",
        query.metadata.id,
        question.unwrap_or_default(),
        request.len(),
        took.as_secs_f64()
    );
}
