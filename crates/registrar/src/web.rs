//! `registrar run --web.listen-address`: `/metrics` and `/-/healthy`, as the official exporters serve them,
//! on promsd's one web stack (so `--web.config.file` applies).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use promsd_registration::Status;
use promsd_web::Reply;
use promsd_web::response::{self, text};

pub struct StatusPage {
    pub status: Arc<Status>,
}

impl promsd_web::Handler for StatusPage {
    async fn handle(&self, request: Request<Incoming>, _peer: SocketAddr) -> Reply {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return response::method_not_allowed();
        }
        match request.uri().path() {
            "/metrics" => text(StatusCode::OK, self.status.render()),
            "/-/healthy" => text(StatusCode::OK, "registrar is Healthy.\n"),
            _ => response::not_found(),
        }
    }
}
