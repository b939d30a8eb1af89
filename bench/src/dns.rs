//! A minimal DNS client: one question over UDP or TCP, the reply parsed by hickory-proto.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

fn request(name: &Name, rtype: RecordType, edns: bool) -> Message {
    let mut query = Message::query();
    query.add_query(Query::query(name.clone(), rtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        query.set_edns(e);
    }
    query
}

/// One question over UDP (with EDNS, 1232 bytes); None when no matching reply came within the socket's read
/// timeout.
pub fn query_udp(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> anyhow::Result<Option<Message>> {
    let query = request(name, rtype, true);
    socket.send_to(&query.to_vec()?, server)?;
    let mut buf = [0u8; 4096];
    // Replies to earlier questions that timed out may still arrive: skip them (a bounded number).
    for _ in 0..16 {
        let Ok(len) = socket.recv(&mut buf) else { return Ok(None) };
        let reply = Message::from_vec(&buf[..len]).context("parsing a UDP reply")?;
        if reply.metadata.id == query.metadata.id {
            return Ok(Some(reply));
        }
    }
    Ok(None)
}

/// A TCP connection to a DNS server, reconnected when a query fails.
pub struct TcpDns {
    server: SocketAddr,
    timeout: Duration,
    stream: Option<TcpStream>,
}

/// A TCP reply: the message and its size on the wire.
pub struct TcpReply {
    pub message: Message,
    pub size: usize,
}

impl TcpDns {
    pub fn new(server: SocketAddr, timeout: Duration) -> Self {
        Self { server, timeout, stream: None }
    }

    fn stream(&mut self) -> anyhow::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.server, self.timeout)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        self.stream.as_mut().context("no TCP connection")
    }

    /// One question; on any error the connection is dropped (the next query opens a new one).
    pub fn query(&mut self, name: &Name, rtype: RecordType) -> anyhow::Result<TcpReply> {
        let result = self.exchange(name, rtype);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, name: &Name, rtype: RecordType) -> anyhow::Result<TcpReply> {
        let query = request(name, rtype, false);
        let bytes = query.to_vec()?;
        let stream = self.stream()?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&u16::try_from(bytes.len())?.to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).context("reading the TCP reply's length")?;
        let size = usize::from(u16::from_be_bytes(len));
        let mut buf = vec![0u8; size];
        stream.read_exact(&mut buf).context("reading the TCP reply")?;
        let message = Message::from_vec(&buf).context("parsing a TCP reply")?;
        if message.metadata.id != query.metadata.id {
            anyhow::bail!("TCP reply with ID {} to query {}", message.metadata.id, query.metadata.id);
        }
        Ok(TcpReply { message, size })
    }
}

/// The IPv4 addresses in a reply's answer section.
pub fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The number of SRV records in a reply's answer section.
pub fn srv_count(message: &Message) -> usize {
    message.answers.iter().filter(|r| matches!(r.data, RData::SRV(_))).count()
}
