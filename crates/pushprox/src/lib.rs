//! PushProx's wire protocol, as the proxy and client of PushProx 0.2 (and its main branch) speak it; the
//! gateway and the agent both use this one implementation.
//!
//! - A client `POST`s its FQDN to `/poll`; the answer's body is a scrape request serialized in HTTP/1.1
//!   proxy form (absolute URL in the request line), carrying an `Id` header and Prometheus's
//!   `X-Prometheus-Scrape-Timeout-Seconds` ([`ScrapeRequest`]).
//! - The client answers by `POST`ing to `/push` the scrape's response serialized as HTTP/1.1, with the
//!   request's `Id` and `X-Prometheus-Scrape-Timeout` (seconds left) added ([`ScrapeResponse`]).
//! - [`Announce`] is promsd's addition: what an agent serves, sent with its polls in a header PushProx
//!   ignores, so the gateway can list each module as its own target.

mod announce;
mod chunked;

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{Method, StatusCode, Uri};
use thiserror::Error;

pub use announce::{ANNOUNCE, Announce, AnnouncedModule};

/// Links a pushed response to the scrape request it answers.
pub const ID: HeaderName = HeaderName::from_static("id");
/// Prometheus's scrape timeout, in (fractional) seconds; PushProx's client refuses a request without it.
pub const SCRAPE_TIMEOUT: HeaderName = HeaderName::from_static("x-prometheus-scrape-timeout-seconds");
/// Set by the client on a push: the seconds left of the scrape's deadline.
pub const TIME_LEFT: HeaderName = HeaderName::from_static("x-prometheus-scrape-timeout");

/// At most this many headers in a message besides the framing ones (`Host`, `Content-Length`,
/// `Transfer-Encoding`), so that a message read is always one that can be written and read again.
const MAX_HEADERS: usize = 128;
/// Room for the framing headers beside them.
const PARSE_SLOTS: usize = MAX_HEADERS + 3;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not an HTTP/1.1 message: {0}")]
    Syntax(httparse::Error),
    #[error("the message ends before its headers do")]
    Incomplete,
    #[error("the request line has no absolute URL (PushProx sends scrapes in proxy form)")]
    NotAbsolute,
    #[error("bad {0}")]
    Part(&'static str),
    #[error("the body is shorter than its Content-Length")]
    ShortBody,
    #[error("bad chunked body")]
    Chunked,
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
}

/// A scrape the proxy hands to a client: what Prometheus asked the proxy for.
#[derive(Debug, Clone)]
pub struct ScrapeRequest {
    pub method: Method,
    /// Absolute: `http://<fqdn>:<port>/<path>?<query>`.
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ScrapeRequest {
    /// The request in proxy form, as Go's `Request.WriteProxy` writes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.to_string().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(authority) = self.uri.authority() {
            line(&mut out, HOST.as_str(), authority.as_str().as_bytes());
        }
        headers_and_body(&mut out, &self.headers, &self.body, |name| name == HOST);
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut headers = [httparse::EMPTY_HEADER; PARSE_SLOTS];
        let mut request = httparse::Request::new(&mut headers);
        let start = match request.parse(bytes).map_err(WireError::Syntax)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Err(WireError::Incomplete),
        };
        let method =
            Method::from_bytes(request.method.unwrap_or_default().as_bytes()).map_err(|_| WireError::Part("method"))?;
        let uri: Uri = request.path.unwrap_or_default().parse().map_err(|_| WireError::Part("URL"))?;
        if uri.authority().is_none() {
            return Err(WireError::NotAbsolute);
        }
        let headers = header_map(request.headers)?;
        // A request without a length has no body (RFC 9112 section 6.3).
        let body = body(&headers, &bytes[start..], false)?;
        Ok(Self { method, uri, headers, body })
    }

    /// The scrape's id (the `Id` header).
    pub fn id(&self) -> Option<&str> {
        self.headers.get(ID).and_then(|v| v.to_str().ok())
    }

    /// The scrape's timeout from `X-Prometheus-Scrape-Timeout-Seconds`.
    pub fn timeout(&self) -> Option<Duration> {
        header_seconds(&self.headers, &SCRAPE_TIMEOUT)
    }
}

/// A scrape's outcome, as a client pushes it.
#[derive(Debug, Clone)]
pub struct ScrapeResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ScrapeResponse {
    /// The response as Go's `Response.Write` writes one with a known length.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("status").as_bytes());
        out.extend_from_slice(b"\r\n");
        headers_and_body(&mut out, &self.headers, &self.body, |_| false);
        out
    }

    /// Reads a pushed response. Go's client writes a body of unknown length chunked, or until the end, and
    /// a failed scrape as `HTTP/0.0 500` (PushProx's client builds that response without a protocol version,
    /// and Go's reader takes it): any `HTTP/d.d` status line is read as HTTP/1.1.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let normalized;
        let bytes = match bytes {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor, b' ', rest @ ..]
                if major.is_ascii_digit() && minor.is_ascii_digit() && (*major, *minor) != (b'1', b'1') =>
            {
                normalized = [&b"HTTP/1.1 "[..], rest].concat();
                &normalized[..]
            }
            _ => bytes,
        };
        let mut headers = [httparse::EMPTY_HEADER; PARSE_SLOTS];
        let mut response = httparse::Response::new(&mut headers);
        let start = match response.parse(bytes).map_err(WireError::Syntax)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Err(WireError::Incomplete),
        };
        let status = StatusCode::from_u16(response.code.unwrap_or_default()).map_err(|_| WireError::Part("status"))?;
        let headers = header_map(response.headers)?;
        let body = body(&headers, &bytes[start..], true)?;
        Ok(Self { status, headers, body })
    }

    pub fn id(&self) -> Option<&str> {
        self.headers.get(ID).and_then(|v| v.to_str().ok())
    }
}

/// Seconds (a float, as Prometheus writes them) in header `name`; none if absent, unparsable, negative or
/// not finite.
pub fn header_seconds(headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
    let seconds: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

/// The timeout of a scrape as PushProx's proxy computes it: the header's, else `default`, at most `max`.
pub fn scrape_timeout(headers: &HeaderMap, default: Duration, max: Duration) -> Duration {
    header_seconds(headers, &SCRAPE_TIMEOUT).unwrap_or(default).min(max)
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The headers (framing ones replaced by our own `Content-Length`) and the body.
fn headers_and_body(out: &mut Vec<u8>, headers: &HeaderMap, body: &[u8], skip: impl Fn(&HeaderName) -> bool) {
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || skip(name) {
            continue;
        }
        line(out, canonical(name).as_str(), value.as_bytes());
    }
    if !body.is_empty() {
        line(out, "Content-Length", body.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// `content-type` as `Content-Type`: how Go writes header names (HTTP/1.1 names are case-insensitive; this
/// only keeps the messages familiar to read).
fn canonical(name: &HeaderName) -> String {
    let mut upper = true;
    name.as_str()
        .chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c };
            upper = c == '-';
            out
        })
        .collect()
}

fn header_map(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, WireError> {
    let framing =
        |name: &str| ["host", "content-length", "transfer-encoding"].iter().any(|f| name.eq_ignore_ascii_case(f));
    if parsed.iter().filter(|h| !framing(h.name)).count() > MAX_HEADERS {
        return Err(WireError::TooManyHeaders);
    }
    let mut map = HeaderMap::with_capacity(parsed.len());
    for header in parsed {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| WireError::Part("header name"))?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| WireError::Part("header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn body(headers: &HeaderMap, rest: &[u8], to_end: bool) -> Result<Bytes, WireError> {
    let chunked = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("chunked"))));
    if chunked {
        return chunked::decode(rest).map(Bytes::from);
    }
    match headers.get(CONTENT_LENGTH) {
        Some(length) => {
            let length: usize =
                length.to_str().ok().and_then(|l| l.trim().parse().ok()).ok_or(WireError::Part("Content-Length"))?;
            rest.get(..length).map(Bytes::copy_from_slice).ok_or(WireError::ShortBody)
        }
        None if to_end => Ok(Bytes::copy_from_slice(rest)),
        None => Ok(Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What PushProx's proxy sends (Go's `WriteProxy` of Prometheus's request with the `Id` added).
    const FROM_PUSHPROX: &[u8] = b"GET http://host1.site-a.example.org:9100/metrics HTTP/1.1\r\n\
        Host: host1.site-a.example.org:9100\r\nUser-Agent: Prometheus/2.42.0\r\n\
        Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\
        Accept-Encoding: gzip\r\nId: 6a3e3b2c-0d5e-4b7e-9a51-2f1c0f0c8a11\r\n\
        X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";

    #[test]
    fn reads_and_writes_pushprox_scrape_requests() {
        let request = ScrapeRequest::parse(FROM_PUSHPROX).expect("parses");
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.uri.host(), Some("host1.site-a.example.org"));
        assert_eq!(request.uri.port_u16(), Some(9100));
        assert_eq!(request.id(), Some("6a3e3b2c-0d5e-4b7e-9a51-2f1c0f0c8a11"));
        assert_eq!(request.timeout(), Some(Duration::from_secs(10)));
        assert!(request.body.is_empty());
        let again = ScrapeRequest::parse(&request.encode()).expect("round trip");
        assert_eq!(again.uri, request.uri);
        assert_eq!(again.headers, {
            let mut h = request.headers.clone();
            h.remove(HOST);
            h.insert(HOST, HeaderValue::from_static("host1.site-a.example.org:9100"));
            h
        });
        let text = String::from_utf8(request.encode()).expect("utf-8");
        assert!(text.starts_with("GET http://host1.site-a.example.org:9100/metrics HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("\r\nId: 6a3e3b2c"), "{text}");
    }

    #[test]
    fn a_request_must_be_in_proxy_form() {
        assert_eq!(
            ScrapeRequest::parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").err(),
            Some(WireError::NotAbsolute)
        );
        assert_eq!(ScrapeRequest::parse(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n").err(), Some(WireError::Incomplete));
        assert!(matches!(ScrapeRequest::parse(b"\x00\x01 nonsense"), Err(WireError::Syntax(_))));
        let many: String = (0..129).map(|i| format!("X-{i}: v\r\n")).collect();
        let request = format!("GET http://x/ HTTP/1.1\r\n{many}\r\n");
        assert_eq!(ScrapeRequest::parse(request.as_bytes()).err(), Some(WireError::TooManyHeaders));
        let most: String = (0..128).map(|i| format!("X-{i}: v\r\n")).collect();
        let response = format!("HTTP/1.1 200 OK\r\n{most}Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n");
        let parsed = ScrapeResponse::parse(response.as_bytes()).expect("128 headers and the framing");
        assert_eq!(&ScrapeResponse::parse(&parsed.encode()).expect("written back").body[..], b"x");
        assert!(ScrapeRequest::parse(b"").is_err());
    }

    #[test]
    fn reads_responses_of_every_framing_go_writes() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nId: a\r\n\r\nhello";
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nId: a\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n";
        let to_end = b"HTTP/1.1 500 Internal Server Error\r\nId: a\r\nConnection: close\r\n\r\nhello";
        // PushProx 0.2's client, pushing a failed scrape (seen on the wire): no protocol version, no length.
        let failed =
            b"HTTP/0.0 500 Internal Server Error\r\nId: a\r\nX-Prometheus-Scrape-Timeout: 2.999829\r\n\r\nhello";
        for (bytes, status) in [(&sized[..], 200), (&chunked[..], 200), (&to_end[..], 500), (&failed[..], 500)] {
            let response = ScrapeResponse::parse(bytes).expect("parses");
            assert_eq!(
                (response.status.as_u16(), &response.body[..], response.id()),
                (status, &b"hello"[..], Some("a"))
            );
        }
        assert_eq!(
            ScrapeResponse::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello").err(),
            Some(WireError::ShortBody)
        );
        assert_eq!(
            ScrapeResponse::parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").err(),
            Some(WireError::Chunked)
        );
        let mut headers = HeaderMap::new();
        headers.insert(ID, HeaderValue::from_static("b"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        let response = ScrapeResponse { status: StatusCode::OK, headers, body: Bytes::from_static(b"# EOF\n") };
        let again = ScrapeResponse::parse(&response.encode()).expect("round trip");
        assert_eq!((again.id(), &again.body[..]), (Some("b"), &b"# EOF\n"[..]));
    }

    #[test]
    fn timeouts_as_pushprox_computes_them() {
        let mut headers = HeaderMap::new();
        let (default, max) = (Duration::from_secs(15), Duration::from_secs(300));
        assert_eq!(scrape_timeout(&headers, default, max), default);
        headers.insert(SCRAPE_TIMEOUT, HeaderValue::from_static("2.5"));
        assert_eq!(scrape_timeout(&headers, default, max), Duration::from_millis(2500));
        headers.insert(SCRAPE_TIMEOUT, HeaderValue::from_static("9000"));
        assert_eq!(scrape_timeout(&headers, default, max), max);
        for bad in ["-1", "NaN", "inf", "x"] {
            headers.insert(SCRAPE_TIMEOUT, HeaderValue::from_static(bad));
            assert_eq!(scrape_timeout(&headers, default, max), default, "{bad}");
        }
    }
}
