//! Turns one question into the sections of an authoritative answer, following the SkyDNS conventions of
//! CoreDNS's etcd plugin (docs/coredns-compat.md). Everything is read from the view: no etcd request here.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::{Catalog, LeaseBounds, Zone};
use crate::store::leases::{self, DEFAULT_TTL, LeaseTable};
use crate::store::{Entry, HostRecord, View};
/// How many CNAMEs one answer may chain (CoreDNS's maxCnameChainLength).
const MAX_CHAIN: usize = 10;
/// No DNS message holds more records of a section than this (16 bytes is the smallest record, an A with a
/// compressed owner), so building more only costs time: a name with 10,000 targets stops here.
const MAX_RECORDS: usize = 65_535 / 16;

/// The sections of a response, before it is put on the wire.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The keys of the view this answer read (a subtree for each, as a change below one can change it):
    /// what a cached copy of the answer depends on.
    pub reads: Vec<String>,
    /// Whether a TTL came from a lease: it counts down, so a copy of the answer goes stale with time.
    pub timed: bool,
}

/// What a SkyDNS `host` field holds, decided as CoreDNS's HostType does, except that a name host with a
/// `text` is still a name (CoreDNS makes it a TXT-only entry, which breaks external-dns's TXT registry), and
/// that external-dns's SRV and MX forms are those records (CoreDNS makes each a CNAME to a name with spaces).
enum Host {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// A name (lowercase, no trailing dot): CNAME, or the SRV/MX target itself.
    Name(String),
    /// `<priority> <weight> <port> <target>`: that SRV record, and nothing else.
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    /// `<preference> <exchange>`: that MX record, and nothing else.
    Mx {
        preference: u16,
        exchange: String,
    },
}

fn host_of(entry: &Entry) -> Host {
    let host = &entry.service.host;
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Host::V4(ip),
        Ok(IpAddr::V6(ip)) => Host::V6(ip),
        Err(_) => match HostRecord::parse(host) {
            Some(HostRecord::Srv { priority, weight, port, target }) => {
                Host::Srv { priority, weight, port, target: bare_name(target) }
            }
            Some(HostRecord::Mx { preference, exchange }) => Host::Mx { preference, exchange: bare_name(exchange) },
            None => Host::Name(bare_name(host)),
        },
    }
}

/// A name as the view's names are kept: lowercase, without the trailing dot.
fn bare_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn priority_of(entry: &Entry) -> i64 {
    if entry.service.priority == 0 { 10 } else { entry.service.priority }
}

fn weight_of(entry: &Entry) -> i64 {
    if entry.service.weight == 0 { 100 } else { entry.service.weight }
}

/// A name from the view as a DNS name; None for keys that do not form a valid name (they are skipped).
fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

/// `targetstrip`: drop the n leftmost labels, keeping the name whole when n would consume all of it.
fn strip_labels(name: &str, n: i64) -> &str {
    let mut rest = name;
    for _ in 0..n.max(0) {
        match rest.split_once('.') {
            Some((_, tail)) => rest = tail,
            None => return name,
        }
    }
    rest
}

/// One SRV record of a name and the entry it comes from.
pub struct SrvTarget<'v> {
    pub entry: &'v Entry,
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lowercase, without the trailing dot.
    pub target: String,
    host: Host,
}

/// Answers questions from one snapshot of the view.
pub struct Resolver<'a> {
    catalog: &'a Catalog,
    view: &'a View,
    leases: &'a LeaseTable,
    lease_bounds: LeaseBounds,
    reads: RefCell<Vec<String>>,
    timed: Cell<bool>,
    /// The zone (its index in the catalog) of the question resolved, for the metrics.
    zone: Cell<Option<usize>>,
}

impl<'a> Resolver<'a> {
    pub fn new(catalog: &'a Catalog, view: &'a View, leases: &'a LeaseTable, lease_bounds: LeaseBounds) -> Self {
        Self {
            catalog,
            view,
            leases,
            lease_bounds,
            reads: RefCell::default(),
            timed: Cell::new(false),
            zone: Cell::new(None),
        }
    }

    /// The zone of the question [`Resolver::resolve`] answered, by its index in [`Catalog::zones`]; None
    /// before, or when the name is in none of them.
    pub fn zone(&self) -> Option<usize> {
        self.zone.get()
    }

    /// Notes that the answer depends on `key` and every key below it.
    fn read(&self, key: &str) {
        self.reads.borrow_mut().push(key.to_string());
    }

    /// The answer for one question; REFUSED when its name is in none of our zones.
    pub fn resolve(&self, query: &Query) -> Answer {
        let owner = query.name();
        let lname = owner.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let Some((index, zone)) = self.catalog.zone_index_for(&lname) else {
            return Answer { rcode: ResponseCode::Refused, ..Answer::default() };
        };
        self.zone.set(Some(index));
        let mut answer = Answer { authoritative: true, ..Answer::default() };
        let apex = lname == zone.name;
        match query.query_type() {
            RecordType::A | RecordType::AAAA => {
                let mut chain = vec![lname.clone()];
                self.addresses(owner, &lname, query.query_type(), &mut chain, &mut answer.answers);
            }
            RecordType::SRV => self.srv(owner, &lname, &mut answer),
            RecordType::TXT => {
                let mut chain = vec![lname.clone()];
                self.txt(owner, &lname, &mut chain, &mut answer.answers);
            }
            RecordType::MX => self.mx(owner, &lname, &mut answer),
            RecordType::CNAME => self.cname(owner, &lname, &mut answer),
            RecordType::PTR => self.ptr(owner, &lname, &mut answer),
            RecordType::NS if apex => self.ns(owner, zone, &mut answer),
            RecordType::SOA if apex => answer.answers.push(self.soa(zone, DEFAULT_TTL)),
            RecordType::ANY => self.any(owner, &lname, zone, apex, &mut answer),
            _ => {}
        }
        let negative = if answer.answers.is_empty() {
            answer.additionals.clear();
            Some(lname)
        } else if matches!(query.query_type(), RecordType::A | RecordType::AAAA | RecordType::TXT) {
            self.dead_end(&lname, &answer.answers)
        } else {
            None
        };
        if let Some(name) = negative
            && let Some(zone) = self.catalog.zone_for(&name)
        {
            // NODATA when the name exists (even as an empty non-terminal), NXDOMAIN otherwise, for the question's
            // name or the end of its CNAME chain (RFC 6604); RFC 2308 negative answers carry the SOA with the
            // smaller of its TTL and its minimum.
            if name != zone.name && !self.exists(&name) {
                answer.rcode = ResponseCode::NXDomain;
            }
            answer.authorities.push(self.soa(zone, zone.soa.minimum.min(DEFAULT_TTL)));
        }
        answer.reads = self.reads.take();
        answer.timed = self.timed.take();
        answer
    }

    /// The name a CNAME-only answer ends at when dnsd looked that name up and found nothing of the type: the
    /// answer is then that name's NODATA or NXDOMAIN. None when the answer holds data, or its chain leaves our
    /// zones, loops or stops at the chain limit (the resolver carries on from its last target).
    fn dead_end(&self, lname: &str, answers: &[Record]) -> Option<String> {
        let mut links = HashMap::new();
        for record in answers {
            let RData::CNAME(target) = &record.data else { return None };
            links.entry(bare_name(&record.name.to_ascii())).or_insert_with(|| bare_name(&target.0.to_ascii()));
        }
        let mut end = lname.to_string();
        let mut length = 0;
        while let Some(next) = links.get(&end) {
            if length >= links.len() {
                return None; // a loop
            }
            end = next.clone();
            length += 1;
        }
        (length < MAX_CHAIN && self.catalog.zone_for(&end).is_some()).then_some(end)
    }

    /// The record TTL of an entry: its `ttl`, its lease's remaining time (clamped), or 300. A leased key whose
    /// lease time is not known yet, or whose last known time has run out (it is being kept alive: the key is
    /// still there), answers the minimum: never more than the lease may have left, never 300.
    fn ttl(&self, entry: &Entry) -> u32 {
        let lease = if entry.lease != 0 {
            self.timed.set(true);
            Some(self.leases.remaining(entry.lease).unwrap_or(0))
        } else {
            None
        };
        leases::ttl(entry.service.ttl, lease, self.lease_bounds)
    }

    fn key(&self, lname: &str) -> String {
        self.catalog.prefix.key_for_name(lname)
    }

    /// The keys a non-exact question for `lname` reads. A `*` or `any` label (the first one, counting from the
    /// zone) makes it a wildcard lookup: every key below the labels before it whose segments match the name,
    /// wildcard labels matching anything, deeper keys included.
    fn lookup(&self, lname: &str) -> Vec<&'a Entry> {
        let key = self.key(lname);
        let relative = &key[self.catalog.prefix.as_str().len()..];
        let pattern: Vec<&str> = relative.split('/').skip(1).collect();
        let Some(first_wild) = pattern.iter().position(|s| is_wildcard(s)) else {
            self.read(&key);
            return self.view.lookup(&key);
        };
        let mut base = self.catalog.prefix.as_str().to_string();
        for segment in &pattern[..first_wild] {
            base.push('/');
            base.push_str(segment);
        }
        let skip = self.catalog.prefix.as_str().len() + 1;
        self.read(&base);
        self.view
            .below(&base)
            .filter(|entry| {
                let segments: Vec<&str> = entry.key[skip..].split('/').collect();
                segments.len() >= pattern.len()
                    && pattern.iter().zip(&segments).all(|(want, have)| is_wildcard(want) || want == have)
            })
            .collect()
    }

    /// Whether `lname` exists: a key at or below it (for wildcards: any key it matches), or a stored
    /// wildcard that covers it.
    fn exists(&self, lname: &str) -> bool {
        let key = self.key(lname);
        if self.is_pattern(&key) {
            return !self.lookup(lname).is_empty();
        }
        self.read(&key);
        self.view.exists(&key) || self.covering_wildcard(lname).is_some()
    }

    /// Whether a question's key has a `*` or `any` label: it matches keys (CoreDNS's wildcard questions).
    fn is_pattern(&self, key: &str) -> bool {
        key[self.catalog.prefix.as_str().len()..].split('/').any(is_wildcard)
    }

    /// The key of the stored wildcard (a `*` label, as external-dns writes `*.example.org`) that answers for
    /// `lname`, which has no key at or below it: as in a zone (RFC 4592), the `*` child of the name's closest
    /// existing ancestor. The lowest ancestor with a `*` child is the only candidate, and it is the closest
    /// existing one exactly when nothing exists between it and the name.
    fn covering_wildcard(&self, lname: &str) -> Option<String> {
        let zone_key = self.key(&self.catalog.zone_for(lname)?.name);
        let key = self.key(lname);
        if self.is_pattern(&key) {
            return None;
        }
        let mut child = key.as_str();
        while child.len() > zone_key.len() {
            let parent = &child[..child.rfind('/')?];
            let wildcard = format!("{parent}/*");
            // What the answer depends on: each wildcard it could come from, and the names between.
            self.read(&wildcard);
            if self.view.exists(&wildcard) {
                self.read(child);
                return (!self.view.exists(child)).then_some(wildcard);
            }
            child = parent;
        }
        None
    }

    fn name_of(&self, entry: &Entry) -> Option<String> {
        self.catalog.prefix.name_for_key(&entry.key)
    }

    fn soa(&self, zone: &Zone, ttl: u32) -> Record {
        let soa = &zone.soa;
        // The serial follows the etcd revision the view reflects: it grows whenever the data changes.
        let rdata = SOA::new(
            soa.mname.clone(),
            soa.rname.clone(),
            self.view.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum,
        );
        Record::from_rdata(zone.origin.clone(), ttl, RData::SOA(rdata))
    }

    /// The entries a non-exact question sees: the subtree (or the key itself), those with a host (or a text
    /// for TXT), narrowed by `group`. Addresses of the zone apex come from `apex.dns.<zone>`, else from the
    /// zone's name servers (`ns.dns.<zone>`), and only without either from the whole zone as CoreDNS does:
    /// every exporter's address under the zone name is never what anyone asked for.
    fn entries(&self, lname: &str, rtype: RecordType) -> Vec<&'a Entry> {
        let mut found = Vec::new();
        if matches!(rtype, RecordType::A | RecordType::AAAA)
            && let Some(zone) = self.catalog.zone_for(lname)
            && zone.name == lname
        {
            found = self.lookup(&format!("apex.dns.{lname}"));
            if found.is_empty() {
                // Name servers known by name have no address to give here.
                found = self.lookup(&format!("ns.dns.{lname}"));
                found.retain(|e| e.service.host.parse::<IpAddr>().is_ok());
            }
        }
        if found.is_empty() {
            found = self.lookup(lname);
        }
        if found.is_empty()
            && let Some(wildcard) = self.covering_wildcard(lname)
        {
            found = self.view.lookup(&wildcard);
        }
        found.retain(|e| !e.service.host.is_empty() || (rtype == RecordType::TXT && !e.service.text.is_empty()));
        group_filter(found)
    }

    /// A or AAAA records for `lname`, following name hosts as CNAMEs inside our zones.
    fn addresses(&self, owner: &Name, lname: &str, rtype: RecordType, chain: &mut Vec<String>, out: &mut Vec<Record>) {
        let mut seen = HashSet::new();
        let mut targets = HashSet::new();
        for entry in self.entries(lname, rtype) {
            if out.len() >= MAX_RECORDS {
                break;
            }
            let ttl = self.ttl(entry);
            match host_of(entry) {
                Host::V4(ip) if rtype == RecordType::A && seen.insert(IpAddr::V4(ip)) => {
                    out.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(ip))));
                }
                Host::V6(ip) if rtype == RecordType::AAAA && seen.insert(IpAddr::V6(ip)) => {
                    out.push(Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(ip))));
                }
                Host::Name(target) if targets.insert(target.clone()) => {
                    self.follow_cname(owner, lname, &target, ttl, chain, out, |r, t, c, o| {
                        r.addresses(&t.0, &t.1, rtype, c, o)
                    });
                }
                _ => {}
            }
        }
    }

    /// Emits `owner CNAME target` and, for a target inside our zones, what `resolve_target` finds there: the
    /// CNAME answers even when its target has nothing of the type (RFC 1034 4.3.2; `resolve` adds the SOA
    /// that says so). A target outside our zones, already in the chain (a loop) or at the chain limit gets
    /// the CNAME alone: dnsd is authoritative only and leaves the rest to the resolver.
    #[allow(clippy::too_many_arguments)]
    fn follow_cname(
        &self,
        owner: &Name,
        lname: &str,
        target: &str,
        ttl: u32,
        chain: &mut Vec<String>,
        out: &mut Vec<Record>,
        resolve_target: impl Fn(&Self, &(Name, String), &mut Vec<String>, &mut Vec<Record>),
    ) {
        // A target at or below the name is SkyDNS's own loop: the name's subtree holds the target's keys.
        let below = target == lname || target.ends_with(&format!(".{lname}"));
        if target.is_empty() || below || chain.len() > MAX_CHAIN {
            return;
        }
        let Some(target_name) = fqdn(target) else { return };
        out.push(Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target_name.clone()))));
        if self.catalog.zone_for(target).is_none() || chain.iter().any(|c| c == target) {
            return;
        }
        chain.push(target.to_string());
        resolve_target(self, &(target_name, target.to_string()), chain, out);
        chain.pop();
    }

    fn txt(&self, owner: &Name, lname: &str, chain: &mut Vec<String>, out: &mut Vec<Record>) {
        let mut seen = HashSet::new();
        let mut targets = HashSet::new();
        for entry in self.entries(lname, RecordType::TXT) {
            if out.len() >= MAX_RECORDS {
                break;
            }
            let ttl = self.ttl(entry);
            let text = &entry.service.text;
            if text.is_empty() {
                if let Host::Name(target) = host_of(entry)
                    && targets.insert(target.clone())
                {
                    self.follow_cname(owner, lname, &target, ttl, chain, out, |r, t, c, o| r.txt(&t.0, &t.1, c, o));
                }
                continue;
            }
            if !seen.insert(text.as_str()) {
                continue;
            }
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
            out.push(Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::from_bytes(chunks))));
        }
    }

    fn srv(&self, owner: &Name, lname: &str, answer: &mut Answer) {
        let mut seen_glue = HashSet::new();
        self.each_srv_target(lname, |srv| {
            if answer.answers.len() >= MAX_RECORDS {
                return ControlFlow::Break(());
            }
            if let Some(target_name) = fqdn(&srv.target) {
                let ttl = self.ttl(srv.entry);
                let record = SRV::new(srv.priority, srv.weight, srv.port, target_name.clone());
                answer.answers.push(Record::from_rdata(owner.clone(), ttl, RData::SRV(record)));
                self.target_glue(&srv.host, target_name, &srv.target, ttl, &mut seen_glue, &mut answer.additionals);
            }
            ControlFlow::Continue(())
        });
    }

    /// Whether the answer to `rtype` at `lname` (a name without wildcard labels) can hold records owned by
    /// `lname`: false only when it surely holds none, so a zone transfer asks only questions that add to it.
    pub fn may_have(&self, lname: &str, rtype: RecordType) -> bool {
        let apex = self.catalog.zone_for(lname).is_some_and(|z| z.name == lname);
        let entries = self.view.lookup(&self.key(lname));
        let any = |wanted: &dyn Fn(&Host, &Entry) -> bool| entries.iter().any(|e| wanted(&host_of(e), e));
        match rtype {
            RecordType::A => apex || any(&|h, _| matches!(h, Host::V4(_) | Host::Name(_))),
            RecordType::AAAA => apex || any(&|h, _| matches!(h, Host::V6(_) | Host::Name(_))),
            RecordType::TXT => any(&|h, e| !e.service.text.is_empty() || matches!(h, Host::Name(_))),
            RecordType::MX => any(&|h, e| e.service.mail || matches!(h, Host::Mx { .. })),
            RecordType::SRV => any(&|_, e| !e.service.host.is_empty()),
            _ => true,
        }
    }

    /// Calls `each` with the SRV records of `lname` in order, each with the entry it comes from, until it
    /// breaks: what an SRV question answers, and what dnsd's http_sd lists, so both give Prometheus the same
    /// targets. Memory beyond the entries' list is a few words per record, so a zone of a million records
    /// can be listed while it is sent.
    pub fn each_srv_target(&self, lname: &str, mut each: impl FnMut(SrvTarget<'a>) -> ControlFlow<()>) {
        let entries = self.entries(lname, RecordType::SRV);
        // Weights are shares of 100 within each priority, counted over every entry as CoreDNS does (an SRV
        // host carries its own weight; an MX host is no SRV record).
        let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
        for entry in entries.iter().filter(|e| !matches!(host_of(e), Host::Srv { .. } | Host::Mx { .. })) {
            *totals.entry(priority_of(entry)).or_default() += weight_of(entry);
        }
        let srv_of = |entry: &'a Entry| {
            let host = host_of(entry);
            let (priority, weight, port, target) = self.srv_fields(entry, &host, &totals)?;
            fqdn(&target)?;
            Some(SrvTarget { entry, priority, weight, port, target, host })
        };
        // One record per (target, port), the first one: the set holds hashes and the index of the entries
        // with each, whose records are made again to tell a collision from a repeat.
        let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(srv) = srv_of(entry) else { continue };
            let hash = seen.hasher().hash_one((&srv.target, srv.port));
            let earlier = seen.entry(hash).or_default();
            let repeat = earlier
                .iter()
                .any(|&i| srv_of(entries[i]).is_some_and(|e| e.target == srv.target && e.port == srv.port));
            if repeat {
                continue;
            }
            earlier.push(index);
            if each(srv).is_break() {
                return;
            }
        }
    }

    /// Priority, weight, port and target of an entry's SRV record: as an SRV host writes them, else from the
    /// SkyDNS fields (None for `port: -1` or out of range).
    fn srv_fields(&self, entry: &Entry, host: &Host, totals: &BTreeMap<i64, i64>) -> Option<(u16, u16, u16, String)> {
        if let Host::Srv { priority, weight, port, target } = host {
            return Some((*priority, *weight, *port, target.clone()));
        }
        let priority = priority_of(entry);
        let total = totals.get(&priority).copied().unwrap_or(1).max(1);
        let weight = ((100.0 / total as f64) * weight_of(entry) as f64).floor().clamp(1.0, 65535.0) as u16;
        let (Ok(priority), Ok(port)) = (u16::try_from(priority), u16::try_from(entry.service.port)) else {
            return None; // port -1 among them: no SRV record
        };
        Some((priority, weight, port, self.target_of(entry, host)?))
    }

    /// The SRV/MX target of an entry: the host when it is a name, else the name of the key (each with
    /// `targetstrip` applied).
    fn target_of(&self, entry: &Entry, host: &Host) -> Option<String> {
        let name = match host {
            Host::V4(_) | Host::V6(_) => self.name_of(entry)?,
            Host::Name(name) if !name.is_empty() => name.clone(),
            Host::Name(_) | Host::Srv { .. } | Host::Mx { .. } => return None,
        };
        Some(strip_labels(&name, entry.service.targetstrip).to_string())
    }

    /// The additional records of an SRV/MX target: its address for an IP host (once per target and address),
    /// or the in-zone name's own addresses.
    fn target_glue(
        &self,
        host: &Host,
        name: Name,
        target: &str,
        ttl: u32,
        seen: &mut HashSet<(String, IpAddr)>,
        out: &mut Vec<Record>,
    ) {
        if out.len() >= MAX_RECORDS {
            return;
        }
        match *host {
            Host::V4(ip) if seen.insert((target.to_string(), IpAddr::V4(ip))) => {
                out.push(Record::from_rdata(name, ttl, RData::A(A(ip))));
            }
            Host::V6(ip) if seen.insert((target.to_string(), IpAddr::V6(ip))) => {
                out.push(Record::from_rdata(name, ttl, RData::AAAA(AAAA(ip))));
            }
            Host::Name(_) | Host::Srv { .. } | Host::Mx { .. } => self.glue(&name, target, seen, out),
            _ => {}
        }
    }

    /// A and AAAA of an in-zone SRV/MX/NS target, once per target.
    fn glue(&self, name: &Name, target: &str, seen: &mut HashSet<(String, IpAddr)>, out: &mut Vec<Record>) {
        if self.catalog.zone_for(target).is_none()
            || !seen.insert((target.to_string(), IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
        {
            return;
        }
        let start = out.len();
        for rtype in [RecordType::A, RecordType::AAAA] {
            let mut chain = vec![target.to_string()];
            let mut found = Vec::new();
            self.addresses(name, target, rtype, &mut chain, &mut found);
            // Only a chain that ends in addresses is glue; a CNAME both chains share is given once.
            if found.iter().any(|r| matches!(r.data, RData::A(_) | RData::AAAA(_))) {
                found.retain(|r| !matches!(r.data, RData::CNAME(_)) || !out[start..].contains(r));
                out.extend(found);
            }
        }
    }

    /// MX records of the entries with `mail`, and of MX hosts (external-dns's form, which has no `mail`).
    fn mx(&self, owner: &Name, lname: &str, answer: &mut Answer) {
        let mut seen_mx = HashSet::new();
        let mut seen_glue = HashSet::new();
        for entry in self.entries(lname, RecordType::MX) {
            if answer.answers.len() >= MAX_RECORDS {
                break;
            }
            let host = host_of(entry);
            let (preference, target) = match &host {
                Host::Mx { preference, exchange } => (*preference, exchange.clone()),
                _ if !entry.service.mail => continue,
                _ => {
                    let Ok(preference) = u16::try_from(priority_of(entry)) else { continue };
                    let Some(target) = self.target_of(entry, &host) else { continue };
                    (preference, target)
                }
            };
            let ttl = self.ttl(entry);
            let Some(target_name) = fqdn(&target) else { continue };
            if !seen_mx.insert((target.clone(), preference)) {
                continue;
            }
            answer.answers.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::MX(MX::new(preference, target_name.clone())),
            ));
            self.target_glue(&host, target_name, &target, ttl, &mut seen_glue, &mut answer.additionals);
        }
    }

    /// RFC 8482: one RRset for ANY, the first the name has of NS (at the apex), then in type order as Knot
    /// answers: A, MX, TXT, AAAA, SRV (never every record, which made ANY an amplifier).
    fn any(&self, owner: &Name, lname: &str, zone: &Zone, apex: bool, answer: &mut Answer) {
        if apex {
            self.ns(owner, zone, answer);
        }
        let addresses = |rtype, answer: &mut Answer| {
            let mut chain = vec![lname.to_string()];
            self.addresses(owner, lname, rtype, &mut chain, &mut answer.answers);
        };
        if answer.answers.is_empty() {
            addresses(RecordType::A, answer);
        }
        if answer.answers.is_empty() {
            self.mx(owner, lname, answer);
        }
        if answer.answers.is_empty() {
            let mut chain = vec![lname.to_string()];
            self.txt(owner, lname, &mut chain, &mut answer.answers);
        }
        if answer.answers.is_empty() {
            addresses(RecordType::AAAA, answer);
        }
        if answer.answers.is_empty() {
            self.srv(owner, lname, answer);
        }
        if answer.answers.is_empty() && apex {
            answer.answers.push(self.soa(zone, DEFAULT_TTL));
        }
    }

    fn cname(&self, owner: &Name, lname: &str, answer: &mut Answer) {
        // The subtree, as an A question sees it: a record stored one level below its name (external-dns's
        // `<name>/<prefix>` keys) is that name's CNAME for both questions (Knot answers such a zone so).
        let mut seen = HashSet::new();
        for entry in self.entries(lname, RecordType::CNAME) {
            let Host::Name(target) = host_of(entry) else { continue };
            let below = target == lname || target.ends_with(&format!(".{lname}"));
            if target.is_empty() || below {
                continue;
            }
            if let Some(target) = fqdn(&target)
                && seen.insert(target.clone())
            {
                answer.answers.push(Record::from_rdata(owner.clone(), self.ttl(entry), RData::CNAME(CNAME(target))));
            }
        }
    }

    /// PTR questions read the exact key (or the stored wildcard that covers the name) and the keys below it
    /// whose `targetstrip` leads back to it: older external-dns versions wrote reverse records as all others,
    /// `<reverse name>/<prefix>` with `targetstrip` counting the prefix's labels, as external-dns reads them
    /// back. Every name host becomes a PTR record, once.
    fn ptr(&self, owner: &Name, lname: &str, answer: &mut Answer) {
        let mut key = self.key(lname);
        self.read(&key);
        if !self.view.exists(&key)
            && let Some(wildcard) = self.covering_wildcard(lname)
        {
            key = wildcard;
        }
        let Some(name) = self.catalog.prefix.name_for_key(&key) else { return };
        let stored_below = self.view.below(&key).filter(|e| {
            e.service.targetstrip > 0
                && self.name_of(e).is_some_and(|n| strip_labels(&n, e.service.targetstrip) == name)
        });
        let mut seen = HashSet::new();
        for entry in self.view.get(&key).into_iter().chain(stored_below) {
            if answer.answers.len() >= MAX_RECORDS {
                break;
            }
            if let Host::Name(target) = host_of(entry)
                && let Some(target) = fqdn(&target)
                && seen.insert(target.clone())
            {
                answer.answers.push(Record::from_rdata(owner.clone(), self.ttl(entry), RData::PTR(PTR(target))));
            }
        }
    }

    /// NS at the apex from the `ns.dns.<zone>` keys, each with its address as glue. Name hosts cannot give
    /// glue and are skipped (CoreDNS fails the whole query instead).
    fn ns(&self, owner: &Name, zone: &Zone, answer: &mut Answer) {
        let mut seen = HashSet::new();
        for entry in self.lookup(&format!("ns.dns.{}", zone.name)) {
            let ip = match host_of(entry) {
                Host::V4(ip) => IpAddr::V4(ip),
                Host::V6(ip) => IpAddr::V6(ip),
                _ => continue,
            };
            let Some(name) = self.name_of(entry) else { continue };
            let name = strip_labels(&name, entry.service.targetstrip).to_string();
            let Some(ns_name) = fqdn(&name) else { continue };
            let ttl = self.ttl(entry);
            if seen.insert(name) {
                answer.answers.push(Record::from_rdata(owner.clone(), ttl, RData::NS(NS(ns_name.clone()))));
            }
            let glue = match ip {
                IpAddr::V4(ip) => RData::A(A(ip)),
                IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
            };
            answer.additionals.push(Record::from_rdata(ns_name, ttl, glue));
        }
    }
}

fn is_wildcard(label: &str) -> bool {
    label == "*" || label == "any"
}

/// CoreDNS's `group` rule: entries of one group answer together; entries without a group always answer.
fn group_filter(entries: Vec<&Entry>) -> Vec<&Entry> {
    let Some(first) = entries.first() else { return entries };
    let depth = |e: &Entry| e.key.matches('/').count();
    let mut group = first.service.group.as_str();
    let mut group_depth = depth(first);
    for entry in &entries[1..] {
        let d = depth(entry);
        if d < group_depth {
            if entry.service.group.is_empty() {
                break;
            }
            group = &entry.service.group;
            group_depth = d;
        }
    }
    if group.is_empty() {
        return entries;
    }
    let group = group.to_string();
    let mut kept = Vec::new();
    for entry in &entries {
        if entry.service.group.is_empty() || entry.service.group == group {
            kept.push(*entry);
        } else if depth(entry) == group_depth {
            return entries;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_labels_like_coredns() {
        assert_eq!(strip_labels("a.b.c", 0), "a.b.c");
        assert_eq!(strip_labels("a.b.c", 1), "b.c");
        assert_eq!(strip_labels("a.b.c", 2), "c");
        assert_eq!(strip_labels("a.b.c", 3), "a.b.c");
    }
}
