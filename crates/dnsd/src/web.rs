//! The HTTP endpoints on every `--web.listen-address`: `/-/healthy` answers as long as the process runs and
//! `/-/ready` once the first load from etcd has completed (Prometheus's names), `/health` and `/ready` the
//! same for Corefile users (CoreDNS's names), `/metrics`, and Prometheus's HTTP service discovery at
//! `/sd/v1/<zone>` ([`crate::sd`]). Served by promsd-web, so `--web.config.file` (TLS, client certificates,
//! basic auth, headers) applies as on every other promsd port.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LAST_MODIFIED};
use hyper::{Method, Request, Response, StatusCode};
use promsd_web::response::{self, text};
use promsd_web::{Reply, WebMetrics};
use tokio::sync::Semaphore;

use crate::metrics::QueryMetrics;
use crate::sd::Listing;
use crate::store::{Store, View};

/// Listings made at once; more wait. Each holds a snapshot and walks it, so a burst of requests for a huge
/// zone costs at most this many walks.
const LISTINGS_AT_ONCE: usize = 4;

/// What the endpoints read.
pub struct Web {
    pub store: Arc<Store>,
    pub queries: Arc<QueryMetrics>,
    pub transfers: Arc<crate::transfer::Transfers>,
    /// The web stack's refusals, shared with [`promsd_web::serve`] on every web port.
    pub web: Arc<WebMetrics>,
    listings: Arc<Semaphore>,
}

impl promsd_web::Handler for Web {
    async fn handle(&self, request: Request<Incoming>, _peer: SocketAddr) -> Reply {
        match request.uri().path().strip_prefix("/sd/v1/") {
            Some(zone) if matches!(*request.method(), Method::GET | Method::HEAD) => {
                self.service_discovery(zone, request.uri().query(), request.headers()).await
            }
            _ => self.route(&request),
        }
    }
}

impl Web {
    pub fn new(
        store: Arc<Store>,
        queries: Arc<QueryMetrics>,
        transfers: Arc<crate::transfer::Transfers>,
        web: Arc<WebMetrics>,
    ) -> Self {
        Self { store, queries, transfers, web, listings: Arc::new(Semaphore::new(LISTINGS_AT_ONCE)) }
    }

    /// `GET /sd/v1/<zone>[?service=NAME]`: the targets as Prometheus's http_sd reads them, streamed from one
    /// snapshot. 503 before the first load (Prometheus then keeps the targets it has), 304 when the client's
    /// `If-None-Match` names the snapshot's ETag.
    async fn service_discovery(&self, zone: &str, query: Option<&str>, headers: &HeaderMap) -> Reply {
        let listing = match Listing::parse(self.store.catalog(), zone, query) {
            Ok(listing) => listing,
            Err(error @ crate::sd::ListingError::UnknownZone(_)) => {
                return text(StatusCode::NOT_FOUND, format!("{error}\n"));
            }
            Err(error) => return text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        };
        if !self.store.is_ready() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "dnsd is not ready: waiting for the first load from etcd.\n");
        }
        let Ok(permit) = self.listings.clone().acquire_owned().await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "dnsd is shutting down.\n");
        };
        let view = self.store.snapshot();
        let (etag, published) = (etag(self.store.epoch, &view), view.published);
        let mut reply = if if_none_match(headers, &etag) {
            let mut reply = Response::new(response::full(""));
            *reply.status_mut() = StatusCode::NOT_MODIFIED;
            reply
        } else {
            let (sender, chunks) = tokio::sync::mpsc::channel(4);
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || {
                crate::sd::stream(store, view, listing, sender);
                drop(permit);
            });
            let mut reply = Response::new(response::streamed(chunks));
            reply.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            reply
        };
        if let Ok(value) = HeaderValue::from_str(&etag) {
            reply.headers_mut().insert(ETAG, value);
        }
        if let Some(published) = published
            && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(published))
        {
            reply.headers_mut().insert(LAST_MODIFIED, value);
        }
        reply
    }

    fn route(&self, request: &Request<Incoming>) -> Reply {
        let store = &self.store;
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return response::method_not_allowed();
        }
        match request.uri().path() {
            "/-/healthy" => text(StatusCode::OK, "dnsd is Healthy.\n"),
            "/health" => text(StatusCode::OK, "OK"),
            "/ready" if store.is_ready() => text(StatusCode::OK, "OK"),
            "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "waiting for the first load from etcd"),
            "/metrics" => {
                let (queries, transfers) = (self.queries.clone(), self.transfers.clone());
                let registry = crate::metrics::registry(store.clone(), queries, transfers, self.web.clone());
                promsd_web::metrics::reply(&registry, request.headers())
            }
            "/-/ready" if store.is_ready() => text(StatusCode::OK, "dnsd is Ready.\n"),
            "/-/ready" => {
                text(StatusCode::SERVICE_UNAVAILABLE, "dnsd is not ready: waiting for the first load from etcd.\n")
            }
            "/" => {
                let view = store.snapshot();
                let zones: Vec<&str> = store.catalog().zones().iter().map(|z| z.name.as_str()).collect();
                text(
                    StatusCode::OK,
                    format!(
                        "dnsd\nzones: {}\nkeys: {}\nrevision: {}\nready: {}\n\n/-/healthy\n/-/ready\n",
                        zones.join(" "),
                        view.len(),
                        view.revision,
                        store.is_ready()
                    ),
                )
            }
            _ => response::not_found(),
        }
    }
}

/// The ETag of every listing of a snapshot: it changes with every publication, and between two runs.
fn etag(epoch: u64, view: &View) -> String {
    format!("\"{epoch:x}-{:x}\"", view.generation)
}

/// Whether `If-None-Match` names `etag` (or is `*`), weak or strong.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}
