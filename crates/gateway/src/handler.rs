//! The gateway's one port, as PushProx's proxy serves it: a request whose URL has a host (Prometheus's
//! `proxy_url` sends the absolute form) is a scrape of that client; everything else is `/poll`, `/push`,
//! `/clients`, `/metrics`, `/-/healthy`, `/-/ready`. With a token file every poll and push needs a token
//! whose scope names the client, and scrapes and `/clients` need one too with `--scrape.require-token`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use promsd_pushprox::{ANNOUNCE, Announce, ScrapeRequest, ScrapeResponse};
use promsd_web::Reply;
use promsd_web::response::{self, text};

use crate::coordinator::{Coordinator, PollError, PushError, ScrapeError};
use crate::tokens::{Refusal, Token, TokenSource};

/// How long a client may take to send a request's body: a slow sender holds nothing for longer.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Request headers not passed to the client with a scrape: hop-by-hop ones (RFC 9110 section 7.6.1) and
/// the credentials Prometheus gave the gateway.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub id_header: HeaderName,
    pub secret_header: HeaderName,
    pub require_scrape_token: bool,
    pub default_scrape_timeout: Duration,
    pub max_scrape_timeout: Duration,
    /// Largest request body read (a push, a poll, a scrape's body).
    pub max_body: usize,
}

/// Refusals and rejections, for `/metrics`; labels never carry a token id or secret.
#[derive(Debug, Default)]
pub struct HandlerCounts {
    pub refusals: [AtomicU64; 4],
    pub forbidden: AtomicU64,
    pub bad_requests: AtomicU64,
    pub too_large: AtomicU64,
}

pub struct Gateway {
    pub coordinator: Arc<Coordinator>,
    pub tokens: Option<Arc<TokenSource>>,
    /// `--remote-write.upstream`; without it `/api/v1/write` is 404.
    pub remote_write: Option<crate::remote_write::RemoteWrite>,
    /// `--loki.upstream`; without it `/loki/api/v1/push` is 404.
    pub loki: Option<crate::loki::Loki>,
    pub settings: Settings,
    pub counts: HandlerCounts,
    pub web: Arc<promsd_web::WebMetrics>,
}

/// Where a write goes.
#[derive(Debug, Clone, Copy)]
enum Sink {
    RemoteWrite,
    Loki,
}

/// What the credentials of a request come to.
enum Access {
    /// No token file: open, as PushProx is.
    Open,
    Token(Arc<Token>),
}

impl promsd_web::Handler for Gateway {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Reply {
        if request.uri().authority().is_some() {
            return self.proxy(request, peer).await;
        }
        match (request.method(), request.uri().path()) {
            (&Method::POST, "/poll") => self.poll(request).await,
            (&Method::POST, "/push") => self.push(request).await,
            (&Method::POST, "/api/v1/write") if self.remote_write.is_some() => {
                self.write(request, Sink::RemoteWrite).await
            }
            (&Method::POST, "/loki/api/v1/push") if self.loki.is_some() => self.write(request, Sink::Loki).await,
            (&Method::GET | &Method::HEAD, "/clients") => self.clients(&request),
            (&Method::GET | &Method::HEAD, "/metrics") => crate::metrics::reply(self, request.headers()),
            (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy\n"),
            (&Method::GET | &Method::HEAD, "/-/ready") => text(StatusCode::OK, "Ready\n"),
            (&Method::GET | &Method::HEAD, "/") => {
                response::with_type(StatusCode::OK, "text/html; charset=utf-8", INDEX)
            }
            (_, "/poll" | "/push" | "/clients" | "/metrics" | "/-/healthy" | "/-/ready" | "/") => {
                response::method_not_allowed()
            }
            _ => response::not_found(),
        }
    }
}

const INDEX: &str = "<html><head><title>promsd-gateway</title></head><body><h1>promsd-gateway</h1>\
<p><a href=\"/clients\">Clients</a></p><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

impl Gateway {
    /// The token of a request, when the gateway has a token file: the id and secret headers, or HTTP basic
    /// credentials `id:secret` in `Proxy-Authorization` (Prometheus's `proxy_url: http://id:secret@...`) or,
    /// for `/clients` and remote_write, in `Authorization` (`basic_auth`).
    fn access(&self, headers: &HeaderMap, basic_from: &[HeaderName]) -> Result<Access, Refusal> {
        let Some(source) = &self.tokens else { return Ok(Access::Open) };
        let tokens = source.current();
        let (mut id, mut secret) = (
            headers.get(&self.settings.id_header).map(|v| v.as_bytes().to_vec()),
            headers.get(&self.settings.secret_header).map(|v| v.as_bytes().to_vec()),
        );
        if id.is_none()
            && let Some((user, password)) = basic_from.iter().find_map(|h| basic(headers.get(h)?))
        {
            (id, secret) = (Some(user), Some(password));
        }
        let result = tokens.authenticate(id.as_deref(), secret.as_deref(), SystemTime::now());
        if let Err(refusal) = result {
            self.counts.refusals[refusal as usize].fetch_add(1, Ordering::Relaxed);
        }
        result.map(Access::Token)
    }

    /// 401, naming what was wrong in general terms (never which part of a token).
    fn unauthorized(refusal: Refusal, proxy: bool) -> Reply {
        let mut reply = text(StatusCode::UNAUTHORIZED, format!("Unauthorized: {}\n", refusal_text(refusal)));
        if proxy {
            reply.headers_mut().insert(header::PROXY_AUTHENTICATE, HeaderValue::from_static("Basic"));
        }
        reply
    }

    fn forbidden(&self, message: String) -> Reply {
        self.counts.forbidden.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::FORBIDDEN, format!("Forbidden: {message}\n"))
    }

    async fn body(&self, request: Request<Incoming>) -> Result<(hyper::http::request::Parts, Bytes), Reply> {
        let (parts, body) = request.into_parts();
        let limited = http_body_util::Limited::new(body, self.settings.max_body);
        match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
            Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                self.counts.too_large.fetch_add(1, Ordering::Relaxed);
                let limit = self.settings.max_body;
                Err(text(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {limit} bytes\n")))
            }
            Ok(Err(_)) => Err(self.bad_request("the body could not be read".into())),
            Err(_) => Err(text(StatusCode::REQUEST_TIMEOUT, format!("the body took longer than {BODY_TIMEOUT:?}\n"))),
        }
    }

    fn bad_request(&self, message: String) -> Reply {
        self.counts.bad_requests.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::BAD_REQUEST, format!("{message}\n"))
    }

    async fn poll(&self, request: Request<Incoming>) -> Reply {
        let access = match self.access(request.headers(), &[]) {
            Ok(access) => access,
            Err(refusal) => return Self::unauthorized(refusal, false),
        };
        let (parts, body) = match self.body(request).await {
            Ok(read) => read,
            Err(reply) => return reply,
        };
        let Some(name) = client_name(&body) else {
            return self.bad_request("the body of a poll is the client's FQDN".into());
        };
        let token = match access {
            Access::Open => None,
            Access::Token(token) if token.may_register(&name) => Some(token),
            Access::Token(token) => return self.forbidden(format!("token {} may not register {name}", token.id)),
        };
        // An agent's announcement is optional, and a malformed one is ignored rather than failing the poll.
        let announce = parts.headers.get(ANNOUNCE).and_then(|v| Announce::from_header(v.as_bytes()).ok());
        match self.coordinator.poll(&name, token, announce).await {
            Ok(scrape) => Response::new(response::full(scrape)),
            Err(error @ PollError::Taken(_)) => text(StatusCode::CONFLICT, format!("{error}\n")),
            Err(error @ PollError::TooManyClients) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
            Err(error @ PollError::Revoked) => text(StatusCode::UNAUTHORIZED, format!("{error}\n")),
            // PushProx's answer to a poll that ends without a scrape.
            Err(error) => text(StatusCode::REQUEST_TIMEOUT, format!("Error WaitForScrapeInstruction: {error}\n")),
        }
    }

    async fn push(&self, request: Request<Incoming>) -> Reply {
        let access = match self.access(request.headers(), &[]) {
            Ok(access) => access,
            Err(refusal) => return Self::unauthorized(refusal, false),
        };
        let (_, body) = match self.body(request).await {
            Ok(read) => read,
            Err(reply) => return reply,
        };
        let pushed = match ScrapeResponse::parse(&body) {
            Ok(pushed) => pushed,
            Err(error) => return self.bad_request(format!("Error pushing: {error}")),
        };
        let token = match &access {
            Access::Open => None,
            Access::Token(token) => Some(token.as_ref()),
        };
        match self.coordinator.push(pushed, token) {
            Ok(()) => text(StatusCode::OK, ""),
            Err(error @ PushError::NoId) => self.bad_request(format!("{error}")),
            Err(error @ PushError::UnknownId(_)) => text(StatusCode::NOT_FOUND, format!("{error}\n")),
            Err(error @ PushError::Forbidden(_)) => self.forbidden(error.to_string()),
        }
    }

    /// remote_write or a Loki push: a token with a tenant (when there is a token file), then the write
    /// forwarded.
    async fn write(&self, request: Request<Incoming>, sink: Sink) -> Reply {
        // Also `basic_auth` (id as user, secret as password): Debian's Prometheus 2.42 does not send
        // `remote_write.headers`.
        let access = match self.access(request.headers(), &[header::AUTHORIZATION]) {
            Ok(access) => access,
            Err(refusal) => return Self::unauthorized(refusal, false),
        };
        let tenant = match &access {
            Access::Open => None,
            Access::Token(token) => match &token.tenant {
                Some(tenant) => Some(tenant.clone()),
                None => return self.forbidden(format!("token {} has no tenant to write for", token.id)),
            },
        };
        let (parts, body) = match self.body(request).await {
            Ok(read) => read,
            Err(reply) => return reply,
        };
        let outcome = match (sink, &self.remote_write, &self.loki) {
            (Sink::RemoteWrite, Some(remote_write), _) => {
                remote_write.write(&parts.headers, &body, tenant.as_deref()).await
            }
            (Sink::Loki, _, Some(loki)) => loki.push(&parts.headers, &body, tenant.as_deref()).await,
            _ => return response::not_found(),
        };
        if outcome.status == StatusCode::FORBIDDEN {
            self.counts.forbidden.fetch_add(1, Ordering::Relaxed);
        }
        let mut reply = text(outcome.status, outcome.body);
        reply.headers_mut().extend(outcome.headers);
        reply
    }

    /// A scrape through `proxy_url`: routed by the URL's host name to the client of that name.
    async fn proxy(&self, request: Request<Incoming>, peer: SocketAddr) -> Reply {
        let name = request.uri().host().unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
        if self.settings.require_scrape_token {
            match self.access(request.headers(), &[header::PROXY_AUTHORIZATION]) {
                Ok(Access::Token(token)) if !token.may_scrape(&name) => {
                    return self.forbidden(format!("token {} may not scrape {name}", token.id));
                }
                Ok(_) => {}
                Err(refusal) => return Self::unauthorized(refusal, true),
            }
        }
        if request.method() == Method::CONNECT {
            return text(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not proxied: scrape with scheme http\n");
        }
        let timeout = promsd_pushprox::scrape_timeout(
            request.headers(),
            self.settings.default_scrape_timeout,
            self.settings.max_scrape_timeout,
        );
        let (parts, body) = match self.body(request).await {
            Ok(read) => read,
            Err(reply) => return reply,
        };
        let mut headers = parts.headers;
        let connection_named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in HOP_BY_HOP.iter().chain(&connection_named) {
            headers.remove(name);
        }
        if self.tokens.is_some() {
            headers.remove(&self.settings.id_header);
            headers.remove(&self.settings.secret_header);
        }
        append_forwarded_for(&mut headers, peer);
        let scrape = ScrapeRequest { method: parts.method, uri: parts.uri, headers, body };
        match self.coordinator.scrape(&name, scrape, timeout).await {
            Ok(pushed) => {
                let mut reply = Response::new(response::full(pushed.body));
                *reply.status_mut() = pushed.status;
                for (name, value) in &pushed.headers {
                    if !HOP_BY_HOP.contains(name) && name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING
                    {
                        reply.headers_mut().append(name, value.clone());
                    }
                }
                reply
            }
            Err(error) => {
                let status = match error {
                    ScrapeError::UnknownClient(_) | ScrapeError::Gone(_) => StatusCode::BAD_GATEWAY,
                    ScrapeError::Busy(_) | ScrapeError::Random => StatusCode::SERVICE_UNAVAILABLE,
                    ScrapeError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
                };
                tracing::debug!(client = %name, %error, "scrape failed");
                text(status, format!("Error scraping {name}: {error}\n"))
            }
        }
    }

    /// The known clients in http_sd's format. A client that polled with only its FQDN (PushProx's client) is
    /// one target without a port, exactly as PushProx lists it; an agent that announced its modules is one
    /// target per module, scraped at `/proxy?module=NAME` with its labels.
    fn clients(&self, request: &Request<Incoming>) -> Reply {
        let mut allowed: Option<Arc<Token>> = None;
        if self.settings.require_scrape_token {
            match self.access(request.headers(), &[header::AUTHORIZATION, header::PROXY_AUTHORIZATION]) {
                Ok(Access::Token(token)) => allowed = Some(token),
                Ok(Access::Open) => {}
                Err(refusal) => return Self::unauthorized(refusal, false),
            }
        }
        let groups: Vec<serde_json::Value> = self
            .coordinator
            .known()
            .into_iter()
            .filter(|client| allowed.as_ref().is_none_or(|t| t.may_scrape(&client.name)))
            .flat_map(|client| crate::discovery::groups(&client))
            .collect();
        let mut body = serde_json::to_vec(&groups).unwrap_or_else(|_| b"[]".to_vec());
        body.push(b'\n');
        response::with_type(StatusCode::OK, "application/json", body)
    }
}

fn refusal_text(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Missing => "no token",
        Refusal::Unknown | Refusal::WrongSecret => "wrong token",
        Refusal::Expired => "the token has expired",
    }
}

/// `Basic base64(user:password)` split in two.
fn basic(value: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// A poll's body: the client's FQDN (trimmed, as PushProx trims it), lower-cased.
fn client_name(body: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(body).ok()?.trim().trim_end_matches('.');
    promsd_common::name::validate_name("client", name).ok()?;
    Some(name.to_ascii_lowercase())
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let mut chain: Vec<String> =
        headers.get_all(&name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    chain.push(peer.ip().to_string());
    if let Ok(value) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_bodies_are_names() {
        assert_eq!(client_name(b"Host1.Example.org\n").as_deref(), Some("host1.example.org"));
        assert_eq!(client_name(b"  host1.example.org.  ").as_deref(), Some("host1.example.org"));
        for bad in [&b""[..], b"\xff\xfe", b"a b", b"../etc/passwd", b"x".repeat(300).as_slice()] {
            assert_eq!(client_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let value = HeaderValue::from_static("Basic c2l0ZS1hOnMzYzpyZXQ="); // site-a:s3c:ret
        assert_eq!(basic(&value), Some((b"site-a".to_vec(), b"s3c:ret".to_vec())));
        assert_eq!(basic(&HeaderValue::from_static("Bearer x")), None);
        assert_eq!(basic(&HeaderValue::from_static("Basic !!!")), None);
    }
}
