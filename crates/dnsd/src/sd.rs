//! Prometheus HTTP service discovery (`http_sd_configs`) from the view: `GET /sd/v1/<zone>` lists every
//! target of the zone and `GET /sd/v1/<zone>?service=NAME` those of one service. The targets are exactly the
//! SRV records an SRV question for the zone (or for `NAME.<zone>`) answers, so a job moved from
//! `dns_sd_configs` to `http_sd_configs` keeps its targets and `instance` labels; each comes with
//! `__meta_promsd_*` labels, the record's own labels and its scrape settings (docs/http-sd.md). Records of
//! port 0 (name servers, addresses) give SRV records but nothing to scrape, and are left out.
//!
//! The list is written while it is sent, from one snapshot, so its size costs no memory beyond a few chunks.

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use promsd_common::{Pairs, Service};
use thiserror::Error;

use crate::answer::{Resolver, SrvTarget};
use crate::config::{Catalog, LeaseBounds};
use crate::store::{LeaseTable, Store, View};

/// Chunks of this size are sent as they fill.
const CHUNK: usize = 64 * 1024;

/// What a request asks for: the zone, and the name whose SRV records are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub zone: String,
    /// The zone itself, or `<service>.<zone>`.
    pub name: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ListingError {
    #[error("dnsd serves no zone {0:?}")]
    UnknownZone(String),
    #[error("service {0:?} is not a valid name")]
    BadService(String),
}

impl Listing {
    /// The listing for `zone` (the path after `/sd/v1/`) and the request's query string.
    pub fn parse(catalog: &Catalog, zone: &str, query: Option<&str>) -> Result<Self, ListingError> {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        if !catalog.zones().iter().any(|z| z.name == zone) {
            return Err(ListingError::UnknownZone(zone));
        }
        let service = query
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
            .find(|(name, _)| name == "service")
            .map(|(_, value)| value.trim_end_matches('.').to_ascii_lowercase());
        let name = match service {
            None => zone.clone(),
            Some(service) => {
                promsd_common::name::validate_name("service", &service)
                    .map_err(|_| ListingError::BadService(service.clone()))?;
                format!("{service}.{zone}")
            }
        };
        Ok(Self { zone, name })
    }
}

/// Writes the listing's target groups (`[{"targets":[...],"labels":{...}},...]`) from `view`, calling
/// `flush` with each full chunk and the rest at the end; stops early when `flush` breaks (the client left).
pub fn write(
    catalog: &Catalog,
    view: &View,
    leases: &LeaseTable,
    listing: &Listing,
    mut flush: impl FnMut(Bytes) -> ControlFlow<()>,
) {
    let resolver = Resolver::new(catalog, view, leases, LeaseBounds::default());
    let mut out = Vec::with_capacity(CHUNK + 4096);
    out.push(b'[');
    let mut first = true;
    let mut stopped = false;
    resolver.each_srv_target(&listing.name, |srv| {
        if srv.port == 0 {
            return ControlFlow::Continue(()); // an SRV record, but nothing to scrape
        }
        let Some(record) = catalog.prefix.name_for_key(&srv.entry.key) else { return ControlFlow::Continue(()) };
        // A name in a more specific zone is that zone's target, not this one's.
        if catalog.zone_for(&record).map(|z| z.name.as_str()) != Some(listing.zone.as_str()) {
            return ControlFlow::Continue(());
        }
        if !first {
            out.push(b',');
        }
        first = false;
        group(&mut out, &listing.zone, &record, &srv);
        if out.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::replace(&mut out, Vec::with_capacity(CHUNK + 4096)));
            if flush(chunk).is_break() {
                stopped = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if !stopped {
        out.push(b']');
        let _ = flush(Bytes::from(out));
    }
}

/// The whole listing in memory, for tests and small zones.
pub fn to_vec(catalog: &Catalog, view: &View, leases: &LeaseTable, listing: &Listing) -> Vec<u8> {
    let mut body = Vec::new();
    write(catalog, view, leases, listing, |chunk| {
        body.extend_from_slice(&chunk);
        ControlFlow::Continue(())
    });
    body
}

/// One target group: the SRV record's target and port, and its labels.
fn group(out: &mut Vec<u8>, zone: &str, record: &str, srv: &SrvTarget<'_>) {
    let service: &Service = &srv.entry.service;
    let relative = record.strip_suffix(zone).map_or(record, |r| r.trim_end_matches('.'));
    let (instance, service_name) = match relative.split_once('.') {
        Some((instance, service_name)) => (instance, service_name),
        None => ("", relative),
    };
    out.extend_from_slice(b"{\"targets\":[");
    string(out, &format!("{}:{}", srv.target, srv.port));
    out.extend_from_slice(b"],\"labels\":{");
    let mut labels: Vec<(Cow<'_, str>, Cow<'_, str>)> = vec![
        ("__meta_promsd_zone".into(), zone.into()),
        ("__meta_promsd_name".into(), record.into()),
        ("__meta_promsd_service".into(), service_name.into()),
        ("__meta_promsd_instance".into(), instance.into()),
        ("__meta_promsd_host".into(), service.host.as_str().into()),
        ("__meta_promsd_port".into(), srv.port.to_string().into()),
        ("__meta_promsd_priority".into(), srv.priority.to_string().into()),
        ("__meta_promsd_weight".into(), srv.weight.to_string().into()),
    ];
    if !service.text.is_empty() {
        labels.push(("__meta_promsd_text".into(), service.text.as_str().into()));
    }
    for (name, value) in service.labels.get().into_iter().flat_map(Pairs::iter) {
        labels.push((format!("__meta_promsd_label_{name}").into(), value.into()));
        labels.push((name.into(), value.into()));
    }
    if let Some(scheme) = service.scheme.get() {
        labels.push(("__scheme__".into(), scheme.as_str().into()));
    }
    if let Some(path) = service.metrics_path.get() {
        labels.push(("__metrics_path__".into(), path.as_str().into()));
    }
    for (name, value) in service.params.get().into_iter().flat_map(Pairs::iter) {
        labels.push((format!("__param_{name}").into(), value.into()));
    }
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name);
        out.push(b':');
        string(out, value);
    }
    out.extend_from_slice(b"}}");
}

/// `text` as a JSON string.
fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The listing streamed from a blocking thread into `chunks`, holding `view` while it is sent.
pub fn stream(store: Arc<Store>, view: Arc<View>, listing: Listing, chunks: tokio::sync::mpsc::Sender<Bytes>) {
    write(store.catalog(), &view, &store.leases, &listing, |chunk| match chunks.blocking_send(chunk) {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()), // the client went away
    });
}
