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

use crate::State;

pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
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
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&request, &state)) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

fn route(request: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Only GET and HEAD are supported.\n".into());
    }
    match request.uri().path() {
        "/-/healthy" => text(StatusCode::OK, "dnsd is Healthy.\n".into()),
        "/health" => text(StatusCode::OK, "OK".into()),
        "/ready" if state.is_ready() => text(StatusCode::OK, "OK".into()),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "waiting for the first load from etcd".into()),
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics(state));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/-/ready" if state.is_ready() => text(StatusCode::OK, "dnsd is Ready.\n".into()),
        "/-/ready" => {
            text(StatusCode::SERVICE_UNAVAILABLE, "dnsd is not ready: waiting for the first load from etcd.\n".into())
        }
        "/" => {
            let view = state.view();
            let zones: Vec<&str> = state.catalog.zones().iter().map(|z| z.name.as_str()).collect();
            text(
                StatusCode::OK,
                format!(
                    "dnsd\nzones: {}\nkeys: {}\nrevision: {}\nready: {}\n\n/-/healthy\n/-/ready\n",
                    zones.join(" "),
                    view.len(),
                    view.revision,
                    state.is_ready()
                ),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "Not found.\n".into()),
    }
}

/// The view's state in the Prometheus text format.
fn metrics(state: &State) -> String {
    let view = state.view();
    let ready = u8::from(state.is_ready());
    format!(
        "# HELP dnsd_ready Whether the first load from etcd has completed.\n# TYPE dnsd_ready gauge\ndnsd_ready {ready}\n\
         # HELP dnsd_view_keys SkyDNS keys in the view answers come from.\n# TYPE dnsd_view_keys gauge\ndnsd_view_keys {}\n\
         # HELP dnsd_view_revision etcd revision the view reflects.\n# TYPE dnsd_view_revision gauge\ndnsd_view_revision {}\n\
         # HELP dnsd_malformed_entries_skipped_total Values skipped because they do not parse.\n\
         # TYPE dnsd_malformed_entries_skipped_total counter\ndnsd_malformed_entries_skipped_total {}\n",
        view.len(),
        view.revision,
        state.malformed_skipped()
    )
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
