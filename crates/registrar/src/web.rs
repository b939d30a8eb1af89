//! `registrar run --web.listen-address`: `/metrics` and `/-/healthy`, as the official exporters serve them.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::status::Status;

pub async fn serve(listener: TcpListener, status: Arc<Status>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let status = status.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (code, body) = match request.uri().path() {
                    "/metrics" => (StatusCode::OK, status.render()),
                    "/-/healthy" => (StatusCode::OK, "registrar is Healthy.\n".to_string()),
                    _ => (StatusCode::NOT_FOUND, "Not found.\n".to_string()),
                };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = code;
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
