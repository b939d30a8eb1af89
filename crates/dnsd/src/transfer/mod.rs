//! Zone transfers to secondaries: AXFR (RFC 5936) of a zone at one snapshot, IXFR (RFC 1995) from any of the
//! last `--transfer.ixfr-history` snapshots (else the whole zone), NOTIFY (RFC 1996) when a zone changes,
//! behind per-network and TSIG (RFC 8945) access rules. Refused unless configured (docs/zone-transfers.md).
//!
//! - [`zone`]: which records a zone holds, from a snapshot.
//! - [`tsig`]: keys, and signing and checking messages.
//! - [`notify`]: telling the secondaries that a zone changed.
//!
//! A transfer is written on a blocking thread from the snapshot it started with, one message at a time into
//! a channel of a few messages that the connection drains, so a zone of any size costs a few messages of
//! memory and is consistent at one etcd revision.

pub mod notify;
pub mod tsig;
pub mod zone;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use ipnet::IpNet;

use crate::answer::Resolver;
use crate::config::{Catalog, LeaseBounds, Zone};
use crate::store::{Changes, LeaseTable, Store, View};
use crate::wire::encode::{self, EncodeError, Fit};

/// Records are packed into a message until their uncompressed size passes this: far below 64 KiB, so the
/// message always fits, and large enough that a 100,000-record zone is a few hundred messages.
const MESSAGE_BYTES: usize = 32 * 1024;
/// Refusals from one source are logged once a minute.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The IXFR history kept by default: snapshots share what did not change, so each costs what changed.
pub const DEFAULT_HISTORY: usize = 100;

/// Who may transfer, and whom to notify: the flags and the Corefile's `transfer` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferConfig {
    /// Networks a transfer may come from (`--transfer.allow`); none: any, if a key is configured.
    pub allow: Vec<IpNet>,
    /// Keys a transfer may be signed with (`--transfer.tsig-key-file`); with keys, every transfer must be.
    pub keys: Vec<tsig::Key>,
    /// Secondaries told of every change (`--transfer.notify`).
    pub notify: Vec<SocketAddr>,
    /// Snapshots kept to answer IXFR from.
    pub history: usize,
}

impl TransferConfig {
    /// Whether any transfer can be allowed: without a network or a key every one is refused.
    pub fn enabled(&self) -> bool {
        !self.allow.is_empty() || !self.keys.is_empty()
    }
}

/// `--transfer.allow`: a network, or one address.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| "expected a network (10.0.0.0/8) or an IP address".to_string())
}

/// `--transfer.notify`: an IP address with an optional port (53 when omitted), `[v6]:port` for IPv6.
pub fn parse_notify(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| "expected a secondary's IP address, with its port (192.0.2.1:53, [2001:db8::1]:53)".to_string())
}

/// What a Corefile `to` address allows and whom it notifies: `*` every address; an IP or IP:PORT that
/// address, notified at that port (53 by default); a network every address in it, notified at none.
pub fn parse_to(text: &str) -> Result<(Vec<IpNet>, Option<SocketAddr>), String> {
    if text == "*" {
        let any: [IpNet; 2] = ["0.0.0.0/0".parse().expect("network"), "::/0".parse().expect("network")];
        return Ok((any.to_vec(), None));
    }
    if text.contains('/') {
        return Ok((vec![parse_network(text)?], None));
    }
    let notify =
        parse_notify(text).map_err(|_| format!("to {text:?}: expected *, an IP address, IP:PORT or a network"))?;
    Ok((vec![IpNet::from(notify.ip())], Some(notify)))
}

/// Why a transfer was refused, as `/metrics` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No `--transfer.allow` or key at all.
    NotConfigured,
    /// From an address no `--transfer.allow` network holds.
    Address,
    /// Unsigned while keys are configured.
    Unsigned,
    /// Signed, but with an unknown key, a bad signature or a time too far off.
    Tsig,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [Self::NotConfigured, Self::Address, Self::Unsigned, Self::Tsig];

    pub fn label(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Address => "address",
            Self::Unsigned => "unsigned",
            Self::Tsig => "tsig",
        }
    }
}

/// The transfer settings with what `/metrics` says of them.
#[derive(Debug, Default)]
pub struct Transfers {
    pub config: TransferConfig,
    pub axfr: AtomicU64,
    pub ixfr: AtomicU64,
    /// IXFR answered with the whole zone (the client's serial was older than the history).
    pub ixfr_full: AtomicU64,
    refused: [AtomicU64; 4],
    pub notifies: AtomicU64,
    pub notify_failures: AtomicU64,
    warned: Mutex<HashMap<IpAddr, Instant>>,
}

/// A transfer request, parsed.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: u16,
    pub query: Query,
    /// The zone's index in the catalog.
    pub zone: usize,
    /// IXFR: the serial the client has.
    pub ixfr_from: Option<u32>,
}

/// What a transfer request gets.
pub enum Admission {
    Stream {
        request: Box<Request>,
        signer: Option<Box<tsig::Signer>>,
    },
    /// One response (REFUSED, NOTAUTH, NOTIMP...) to send, and nothing more.
    Refused(Vec<u8>),
}

/// The transfer question of `bytes`, if it asks for one: (id, question, the parsed message).
pub fn question(bytes: &[u8]) -> Option<Message> {
    let mut decoder = BinDecoder::new(bytes);
    let message = Message::read(&mut decoder).ok()?;
    let [query] = message.queries.as_slice() else { return None };
    let transfer = matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR);
    (transfer && message.metadata.message_type == MessageType::Query && message.metadata.op_code == OpCode::Query)
        .then_some(message)
}

impl Transfers {
    pub fn new(config: TransferConfig) -> Self {
        Self { config, ..Self::default() }
    }

    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused[reason as usize].load(Ordering::Relaxed)
    }

    /// Decides on the transfer `message` (from [`question`], `bytes` as received over TCP) asks for, from
    /// `peer`. Over UDP transfers are refused before they get here (wire::respond).
    pub fn admit(&self, catalog: &Catalog, message: &Message, bytes: &[u8], peer: IpAddr) -> Admission {
        let refuse = |reason: Refusal, rcode: ResponseCode| {
            self.refuse(peer, reason);
            Admission::Refused(error_response(message, rcode))
        };
        let query = message.queries[0].clone();
        let lname = query.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let zone = catalog.zones().iter().position(|z| z.name == lname);
        let Some(zone) = zone else {
            // Not one of our zones' apex: nothing to transfer (Knot answers NOTAUTH; REFUSED is as clear).
            return Admission::Refused(error_response(message, ResponseCode::Refused));
        };
        if !self.config.enabled() {
            return refuse(Refusal::NotConfigured, ResponseCode::Refused);
        }
        let signer = match tsig::check(bytes, &self.config.keys) {
            tsig::Checked::Refused { response, error } => {
                self.refuse(peer, Refusal::Tsig);
                tracing::debug!(%peer, %error, "transfer refused: TSIG");
                return Admission::Refused(response);
            }
            tsig::Checked::Valid(signer) => Some(signer),
            tsig::Checked::Unsigned => None,
        };
        let peer = peer.to_canonical();
        if !self.config.allow.is_empty() && !self.config.allow.iter().any(|net| net.contains(&peer)) {
            return refuse(Refusal::Address, ResponseCode::Refused);
        }
        if !self.config.keys.is_empty() && signer.is_none() {
            return refuse(Refusal::Unsigned, ResponseCode::Refused);
        }
        let ixfr_from = (query.query_type() == RecordType::IXFR)
            .then(|| {
                message.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(soa.serial),
                    _ => None,
                })
            })
            .flatten();
        if query.query_type() == RecordType::IXFR && ixfr_from.is_none() {
            return Admission::Refused(error_response(message, ResponseCode::FormErr));
        }
        Admission::Stream { request: Box::new(Request { id: message.metadata.id, query, zone, ixfr_from }), signer }
    }

    /// Counts a refusal and logs it, once a minute per source.
    fn refuse(&self, peer: IpAddr, reason: Refusal) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
        let Ok(mut warned) = self.warned.lock() else { return };
        if warned.len() > 10_000 {
            warned.retain(|_, at| at.elapsed() < WARN_EVERY);
        }
        let now = Instant::now();
        if warned.get(&peer).is_none_or(|at| now.duration_since(*at) >= WARN_EVERY) {
            warned.insert(peer, now);
            tracing::warn!(%peer, reason = reason.label(), "zone transfer refused");
        }
    }
}

/// The response to a refused request: its question, the code, nothing else.
fn error_response(request: &Message, rcode: ResponseCode) -> Vec<u8> {
    let mut response = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.response_code = rcode;
    response.add_queries(request.queries.iter().cloned());
    response.to_vec().unwrap_or_default()
}

/// Writes the transfer `request` asks for from `view` as messages into `out` (signed when `signer` is
/// given), until done or the receiver goes. Counts it.
pub fn stream(
    store: &Store,
    transfers: &Transfers,
    view: &View,
    request: &Request,
    signer: Option<Box<tsig::Signer>>,
    out: &tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    let catalog = store.catalog();
    let zone = &catalog.zones()[request.zone];
    let resolver = Resolver::new(catalog, view, &store.leases, LeaseBounds::default());
    let mut packer =
        Packer { id: request.id, question: Some(request.query.clone()), pending: Vec::new(), bytes: 0, signer, out };
    let soa = soa(&resolver, zone);
    let Some(from) = request.ixfr_from else {
        transfers.axfr.fetch_add(1, Ordering::Relaxed);
        let _ = whole_zone(&mut packer, &resolver, catalog, view, zone, &soa);
        return;
    };
    transfers.ixfr.fetch_add(1, Ordering::Relaxed);
    if from == view.serial {
        if packer.push(soa.clone()).is_continue() {
            let _ = packer.flush();
        }
        return;
    }
    let old = store.history(from).filter(|old| old.generation < view.generation);
    let changes = old.as_ref().map(|old| store.changes_since(old.generation));
    match (old, changes) {
        (Some(old), Some(Changes::Keys(keys))) => {
            let _ = difference(&mut packer, catalog, zone, &old, view, &store.leases, &keys, &soa);
        }
        _ => {
            transfers.ixfr_full.fetch_add(1, Ordering::Relaxed);
            let _ = whole_zone(&mut packer, &resolver, catalog, view, zone, &soa);
        }
    }
}

/// The zone's SOA record as dnsd answers it.
fn soa(resolver: &Resolver<'_>, zone: &Zone) -> Record {
    let answer = resolver.resolve(&Query::query(zone.origin.clone(), RecordType::SOA));
    answer.answers.into_iter().next().unwrap_or_else(|| Record::update0(zone.origin.clone(), 0, RecordType::SOA))
}

/// SOA, every record, SOA (AXFR, and IXFR answered with the whole zone).
fn whole_zone(
    packer: &mut Packer<'_>,
    resolver: &Resolver<'_>,
    catalog: &Catalog,
    view: &View,
    zone: &Zone,
    soa: &Record,
) -> ControlFlow<()> {
    packer.push(soa.clone())?;
    let mut result = ControlFlow::Continue(());
    zone::each_name(catalog, view, zone, |name| {
        for record in zone::records(resolver, zone, name) {
            if packer.push(record).is_break() {
                result = ControlFlow::Break(());
                return result;
            }
        }
        ControlFlow::Continue(())
    });
    result?;
    packer.push(soa.clone())?;
    packer.flush()
}

/// IXFR's condensed difference from `old` to `new`: new SOA, old SOA, what went, new SOA, what came, new
/// SOA. Only the names at or above a changed key can differ: a name's records come from the keys at and
/// below it.
#[allow(clippy::too_many_arguments)]
fn difference(
    packer: &mut Packer<'_>,
    catalog: &Catalog,
    zone: &Zone,
    old: &View,
    new: &View,
    leases: &LeaseTable,
    changed: &[std::sync::Arc<str>],
    soa: &Record,
) -> ControlFlow<()> {
    let mut names = BTreeSet::new();
    for key in changed {
        let Some(name) = catalog.prefix.name_for_key(key) else { continue };
        let mut name = name.as_str();
        loop {
            if catalog.zone_for(name).is_some_and(|z| z.name == zone.name) {
                names.insert(name.to_string());
            }
            if name == zone.name {
                break;
            }
            match name.split_once('.') {
                Some((_, parent)) => name = parent,
                None => break,
            }
        }
    }
    // One resolver per snapshot, for every name compared.
    let before_change = Resolver::new(catalog, old, leases, LeaseBounds::default());
    let after_change = Resolver::new(catalog, new, leases, LeaseBounds::default());
    let records_in = |resolver: &Resolver<'_>, view: &View, name: &str| -> Vec<Record> {
        let key = catalog.prefix.key_for_name(name);
        let wildcard = name.split('.').any(|l| l == "*" || l == "any");
        if wildcard || (name != zone.name && !view.exists(&key)) {
            return Vec::new();
        }
        zone::records(resolver, zone, name)
    };
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    for name in &names {
        let (before, after) = (records_in(&before_change, old, name), records_in(&after_change, new, name));
        gone.extend(before.iter().filter(|r| !after.contains(r)).cloned());
        came.extend(after.iter().filter(|r| !before.contains(r)).cloned());
    }
    let old_soa = self::soa(&before_change, zone);
    packer.push(soa.clone())?;
    packer.push(old_soa)?;
    for record in gone {
        packer.push(record)?;
    }
    packer.push(soa.clone())?;
    for record in came {
        packer.push(record)?;
    }
    packer.push(soa.clone())?;
    packer.flush()
}

/// Packs records into response messages and sends each when it is full.
struct Packer<'a> {
    id: u16,
    /// The question, in the first message only.
    question: Option<Query>,
    pending: Vec<Record>,
    bytes: usize,
    signer: Option<Box<tsig::Signer>>,
    out: &'a tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Packer<'_> {
    fn push(&mut self, record: Record) -> ControlFlow<()> {
        self.bytes += record.name.len() + 12 + record.data.to_bytes().map_or(512, |b| b.len());
        self.pending.push(record);
        if self.bytes >= MESSAGE_BYTES { self.flush() } else { ControlFlow::Continue(()) }
    }

    /// Sends what is pending as one message (or more, should it not fit in one).
    fn flush(&mut self) -> ControlFlow<()> {
        let records = std::mem::take(&mut self.pending);
        self.bytes = 0;
        self.send(records)
    }

    fn send(&mut self, records: Vec<Record>) -> ControlFlow<()> {
        let mut message = Message::new(self.id, MessageType::Response, OpCode::Query);
        message.metadata.authoritative = true;
        if let Some(question) = &self.question {
            message.add_query(question.clone());
        }
        message.answers = records;
        let mut bytes = match encode::encode(&message, usize::from(u16::MAX), Fit::Whole) {
            Ok(encoded) => encoded.bytes,
            Err(EncodeError::TooLarge) if message.answers.len() > 1 => {
                let mut first = std::mem::take(&mut message.answers);
                let second = first.split_off(first.len() / 2);
                self.send(first)?;
                return self.send(second);
            }
            Err(_) => match message.to_vec() {
                Ok(bytes) => bytes,
                Err(_) => return ControlFlow::Break(()),
            },
        };
        if let Some(signer) = &mut self.signer {
            signer.sign(&mut bytes);
        }
        self.question = None;
        match self.out.blocking_send(bytes) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()), // the connection went
        }
    }
}
