//! Replies every endpoint shares, worded as Prometheus's own servers word them.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::server::{Body, Reply};

/// A body sent at once.
pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// A body sent as its chunks arrive on `chunks`, ending when the sender is dropped: a large reply is made
/// while it is sent, in the memory of the channel's few chunks. A client that goes away drops the receiver,
/// which the producer sees as a failed send.
pub fn streamed(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    Chunks(chunks).boxed()
}

struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    with_type(status, "text/plain; charset=utf-8", body)
}

pub fn with_type(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(full(body));
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
