//! The HTTP endpoints on every `--web.listen-address`: `/-/healthy` answers as long as the process runs and
//! `/-/ready` once the first load from etcd has completed (Prometheus's names), `/health` and `/ready` the
//! same for Corefile users (CoreDNS's names), and `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::QueryMetrics;
use crate::store::Store;

/// What the endpoints read.
pub struct Web {
    pub store: Arc<Store>,
    pub queries: Arc<QueryMetrics>,
}

pub async fn serve(listener: TcpListener, web: Arc<Web>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "web accept failed");
                    continue;
                }
            },
        };
        let web = web.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let web = web.clone();
                async move { Ok::<_, Infallible>(route(&request, &web)) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

fn route(request: &Request<Incoming>, web: &Web) -> Response<Full<Bytes>> {
    let store = &web.store;
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Only GET and HEAD are supported.\n".into());
    }
    match request.uri().path() {
        "/-/healthy" => text(StatusCode::OK, "dnsd is Healthy.\n".into()),
        "/health" => text(StatusCode::OK, "OK".into()),
        "/ready" if store.is_ready() => text(StatusCode::OK, "OK".into()),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "waiting for the first load from etcd".into()),
        "/metrics" => {
            let accept = request.headers().get(hyper::header::ACCEPT).and_then(|a| a.to_str().ok());
            let format = crate::metrics::Format::negotiate(accept);
            match crate::metrics::encode(&crate::metrics::registry(store.clone(), web.queries.clone()), format) {
                Ok(body) => {
                    let mut response = text(StatusCode::OK, body);
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(format.content_type()),
                    );
                    response
                }
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n".into()),
            }
        }
        "/-/ready" if store.is_ready() => text(StatusCode::OK, "dnsd is Ready.\n".into()),
        "/-/ready" => {
            text(StatusCode::SERVICE_UNAVAILABLE, "dnsd is not ready: waiting for the first load from etcd.\n".into())
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
        _ => text(StatusCode::NOT_FOUND, "Not found.\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
