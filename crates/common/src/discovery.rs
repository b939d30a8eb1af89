//! `--discovery-srv DOMAIN`: find etcd's client endpoints through DNS SRV records, as etcdctl 3.4 does.
//! `_etcd-client-ssl._tcp.DOMAIN` gives https endpoints and `_etcd-client._tcp.DOMAIN` http ones; the lookup
//! fails only when both do. The SRV targets stay names in the URLs, resolved later by the system resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::DecodeError;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const RESOLV_CONF: &str = "/etc/resolv.conf";
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error("invalid discovery domain {domain:?}: {reason}")]
    Domain { domain: String, reason: String },
    #[error("no etcd endpoints found via SRV records for {domain:?} (tried {tried}): {reason}")]
    NotFound { domain: String, tried: String, reason: String },
}

/// Why one SRV lookup got no answer; the last one becomes the `reason` of `DiscoveryError::NotFound`.
#[derive(Debug, Error)]
enum LookupError {
    #[error("no nameserver")]
    NoNameserver,
    #[error("{server}: {source}")]
    Query { server: SocketAddr, source: QueryError },
    #[error("{0}: timed out")]
    Timeout(SocketAddr),
}

/// Why one nameserver gave no usable answer.
#[derive(Debug, Error)]
enum QueryError {
    #[error("{0}")]
    Encode(#[source] ProtoError),
    #[error("{0}")]
    Decode(#[source] DecodeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("request too large")]
    TooLarge,
    #[error("{name} {rtype}: {code}")]
    Rcode { name: Name, rtype: RecordType, code: ResponseCode },
}

/// Looks up etcd client endpoints for `domain`, `srv_name` appended as etcdctl's `--discovery-srv-name` does.
pub async fn etcd_client_endpoints(domain: &str, srv_name: Option<&str>) -> Result<Vec<String>, DiscoveryError> {
    let servers = nameservers(&std::fs::read_to_string(RESOLV_CONF).unwrap_or_default());
    let suffix = srv_name.filter(|s| !s.is_empty()).map(|s| format!("-{s}")).unwrap_or_default();
    let domain = domain.trim_end_matches('.');
    let mut endpoints = Vec::new();
    let mut tried = Vec::new();
    let mut last_error = String::from("no SRV records");
    for (service, scheme) in [("_etcd-client-ssl", "https"), ("_etcd-client", "http")] {
        let qname = format!("{service}{suffix}._tcp.{domain}.");
        tried.push(qname.clone());
        let name = Name::from_ascii(&qname)
            .map_err(|e| DiscoveryError::Domain { domain: domain.into(), reason: e.to_string() })?;
        match lookup(&servers, &name, RecordType::SRV).await {
            Ok(answer) => {
                for record in answer.answers {
                    if let RData::SRV(srv) = record.data {
                        let target = srv.target.to_ascii();
                        endpoints.push(format!("{scheme}://{}:{}", target.trim_end_matches('.'), srv.port));
                    }
                }
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    if endpoints.is_empty() {
        return Err(DiscoveryError::NotFound { domain: domain.into(), tried: tried.join(", "), reason: last_error });
    }
    Ok(endpoints)
}

/// The `nameserver` lines of a resolv.conf, port 53; the local host when there are none (as glibc does).
fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    let servers: Vec<SocketAddr> = resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|addr| addr.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() { vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)] } else { servers }
}

/// Asks each server in turn; an answer with NOERROR or NXDOMAIN ends the search, as Go's resolver does.
async fn lookup(servers: &[SocketAddr], name: &Name, rtype: RecordType) -> Result<Message, LookupError> {
    let mut last = LookupError::NoNameserver;
    for &server in servers {
        match tokio::time::timeout(QUERY_TIMEOUT, query(server, name, rtype)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(source)) => last = LookupError::Query { server, source },
            Err(_) => last = LookupError::Timeout(server),
        }
    }
    Err(last)
}

async fn query(server: SocketAddr, name: &Name, rtype: RecordType) -> Result<Message, QueryError> {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(QueryError::Encode)?;

    let unspecified =
        if server.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0)).await?;
    socket.connect(server).await?;
    socket.send(&bytes).await?;
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let len = socket.recv(&mut buf).await?;
        match Message::from_vec(&buf[..len]) {
            Ok(answer) if answer.metadata.id == request.metadata.id => break answer,
            _ => continue, // a stray or spoofed datagram: keep waiting for ours
        }
    };
    let answer = if answer.metadata.truncation { query_tcp(server, &bytes).await? } else { answer };
    match answer.metadata.response_code {
        ResponseCode::NoError => Ok(answer),
        code => Err(QueryError::Rcode { name: name.clone(), rtype, code }),
    }
}

async fn query_tcp(server: SocketAddr, request: &[u8]) -> Result<Message, QueryError> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(request.len()).map_err(|_| QueryError::TooLarge)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(request).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(QueryError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_from_resolv_conf() {
        let conf = "# comment\nsearch example\nnameserver 127.0.0.53\nnameserver ::1\nnameserver fe80::1%eth0\nnameserver bogus\n";
        let servers = nameservers(conf);
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[0], "127.0.0.53:53".parse().expect("addr"));
        assert_eq!(nameservers(""), vec!["127.0.0.1:53".parse().expect("addr")]);
    }
}
