//! Replies every endpoint shares, worded as Prometheus's own servers word them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::server::Reply;

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    with_type(status, "text/plain; charset=utf-8", body)
}

pub fn with_type(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn not_found() -> Reply {
    text(StatusCode::NOT_FOUND, "Not found.\n")
}

pub fn method_not_allowed() -> Reply {
    text(StatusCode::METHOD_NOT_ALLOWED, "Only GET and HEAD are supported.\n")
}
