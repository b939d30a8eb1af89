//! The HTTP endpoints on every `--web.listen-address`: `/-/healthy` answers as long as the process runs and
//! `/-/ready` once the first load from etcd has completed (Prometheus's names), `/health` and `/ready` the
//! same for Corefile users (CoreDNS's names), and `/metrics`. Served by promsd-web, so `--web.config.file`
//! (TLS, client certificates, basic auth, headers) applies as on every other promsd port.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use promsd_web::response::{self, text};
use promsd_web::{Reply, WebMetrics};

use crate::metrics::QueryMetrics;
use crate::store::Store;

/// What the endpoints read.
pub struct Web {
    pub store: Arc<Store>,
    pub queries: Arc<QueryMetrics>,
    /// The web stack's refusals, shared with [`promsd_web::serve`] on every web port.
    pub web: Arc<WebMetrics>,
}

impl promsd_web::Handler for Web {
    async fn handle(&self, request: Request<Incoming>, _peer: SocketAddr) -> Reply {
        self.route(&request)
    }
}

impl Web {
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
                let registry = crate::metrics::registry(store.clone(), self.queries.clone(), self.web.clone());
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
