//! Loki's push API through the gateway (`POST /loki/api/v1/push`, forwarded to `--loki.upstream`): each
//! stream gets the token's tenant label as remote_write's series do (added where missing, a stream naming
//! another tenant refuses the push), and `X-Scope-OrgID` is set to the tenant, which is how Loki itself
//! separates tenants. Both encodings promtail and Grafana Agent send are read: JSON (plain or gzip) and
//! snappy-compressed protobuf, whose streams carry their labels as a selector string (`{job="x"}`).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use thiserror::Error;

use crate::protobuf::{Field, Fields, Malformed, Snappy, Value, put_bytes, rewrite_snappy};
use crate::upstream::{Outcome, Upstream};

/// Loki's tenant header.
const ORG_ID: HeaderName = HeaderName::from_static("x-scope-orgid");

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PushError {
    #[error("the body is not snappy-compressed (block format)")]
    Snappy,
    #[error("the body is not valid gzip")]
    Gzip,
    #[error("the body decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("the body is not a Loki push request: {0}")]
    Json(String),
    #[error("the body is not a Loki PushRequest: {}", .0.0)]
    Protobuf(Malformed),
    #[error("a stream's labels are not a selector: {0:?}")]
    Selector(String),
    #[error("a stream has {label}={found:?}, but this token writes for {label}={tenant:?}")]
    OtherTenant { label: String, found: String, tenant: String },
    #[error("Content-Type must be application/json or application/x-protobuf")]
    ContentType,
}

pub struct Loki {
    pub upstream: Upstream,
    pub tenant_label: String,
    pub max_decoded: usize,
    /// Streams checked and forwarded.
    pub streams: AtomicU64,
}

impl Loki {
    pub async fn push(&self, headers: &HeaderMap, body: &[u8], tenant: Option<&str>) -> Outcome {
        let mut forwarded = HeaderMap::new();
        for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING, header::USER_AGENT] {
            if let Some(value) = headers.get(&name) {
                forwarded.insert(name, value.clone());
            }
        }
        let body = match tenant {
            None => {
                if let Some(org) = headers.get(ORG_ID) {
                    forwarded.insert(ORG_ID, org.clone());
                }
                Bytes::copy_from_slice(body)
            }
            Some(tenant) => match self.relabel(headers, body, tenant) {
                Ok((body, streams)) => {
                    self.streams.fetch_add(streams, Ordering::Relaxed);
                    // Rewritten JSON is sent plain.
                    if forwarded.get(header::CONTENT_TYPE).is_some_and(is_json) {
                        forwarded.remove(header::CONTENT_ENCODING);
                    }
                    if let Ok(org) = HeaderValue::from_str(tenant) {
                        forwarded.insert(ORG_ID, org);
                    }
                    Bytes::from(body)
                }
                Err(error) => {
                    let status = match error {
                        PushError::OtherTenant { .. } => StatusCode::FORBIDDEN,
                        PushError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                        PushError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        _ => StatusCode::BAD_REQUEST,
                    };
                    return self.upstream.reject(status, format!("{error}\n"));
                }
            },
        };
        self.upstream.forward(forwarded, body).await
    }

    /// The body with `tenant` enforced on every stream, and the number of streams.
    pub fn relabel(&self, headers: &HeaderMap, body: &[u8], tenant: &str) -> Result<(Vec<u8>, u64), PushError> {
        let content_type = headers.get(header::CONTENT_TYPE);
        if content_type.is_some_and(is_json) {
            let gzip =
                headers.get(header::CONTENT_ENCODING).is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let plain = if gzip { gunzip(body, self.max_decoded)? } else { body.to_vec() };
            return json_with(&plain, &self.tenant_label, tenant);
        }
        if content_type.is_some_and(|t| t.as_bytes().starts_with(b"application/x-protobuf")) {
            let rewritten = rewrite_snappy(body, self.max_decoded, |d| protobuf_with(d, &self.tenant_label, tenant));
            return rewritten.map_err(|error| match error {
                Snappy::NotSnappy => PushError::Snappy,
                Snappy::TooLarge => PushError::TooLarge(self.max_decoded),
                Snappy::Rewrite(error) => error,
            });
        }
        Err(PushError::ContentType)
    }
}

fn is_json(value: &HeaderValue) -> bool {
    value.as_bytes().starts_with(b"application/json")
}

fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, PushError> {
    let mut out = Vec::new();
    let read = flate2::read::GzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out);
    read.map_err(|_| PushError::Gzip)?;
    if out.len() > limit {
        return Err(PushError::TooLarge(limit));
    }
    Ok(out)
}

fn other_tenant(label: &str, found: &str, tenant: &str) -> PushError {
    PushError::OtherTenant { label: label.to_string(), found: found.to_string(), tenant: tenant.to_string() }
}

/// `{"streams":[{"stream":{...},"values":[...]}]}` with the tenant label in every `stream`.
pub fn json_with(body: &[u8], label: &str, tenant: &str) -> Result<(Vec<u8>, u64), PushError> {
    let mut request: serde_json::Value = serde_json::from_slice(body).map_err(|e| PushError::Json(e.to_string()))?;
    let streams = request
        .get_mut("streams")
        .and_then(|s| s.as_array_mut())
        .ok_or_else(|| PushError::Json("no streams array".into()))?;
    for stream in streams.iter_mut() {
        let labels = stream
            .get_mut("stream")
            .and_then(|s| s.as_object_mut())
            .ok_or_else(|| PushError::Json("a stream without its labels object".into()))?;
        match labels.get(label) {
            Some(serde_json::Value::String(found)) if found == tenant => {}
            Some(found) => return Err(other_tenant(label, found.as_str().unwrap_or(&found.to_string()), tenant)),
            None => {
                labels.insert(label.to_string(), serde_json::Value::from(tenant));
            }
        }
    }
    let count = streams.len() as u64;
    Ok((serde_json::to_vec(&request).map_err(|e| PushError::Json(e.to_string()))?, count))
}

/// `PushRequest { repeated StreamAdapter streams = 1 }`, `StreamAdapter { string labels = 1; repeated
/// EntryAdapter entries = 2; uint64 hash = 3 }`: each stream's selector with the tenant label; its hash (of
/// the old labels) is dropped, as Loki computes its own.
pub fn protobuf_with(request: &[u8], label: &str, tenant: &str) -> Result<(Vec<u8>, u64), PushError> {
    let mut out = Vec::with_capacity(request.len() + 64);
    let mut count = 0;
    for field in Fields::new(request) {
        match field.map_err(PushError::Protobuf)? {
            Field { number: 1, value: Value::Bytes(stream), .. } => {
                let mut rewritten = Vec::with_capacity(stream.len() + 32);
                for field in Fields::new(stream) {
                    match field.map_err(PushError::Protobuf)? {
                        Field { number: 1, value: Value::Bytes(selector), .. } => {
                            let selector = std::str::from_utf8(selector)
                                .map_err(|_| PushError::Selector(String::from_utf8_lossy(selector).into_owned()))?;
                            let mut labels = parse_selector(selector)?;
                            match labels.get(label) {
                                Some(found) if found == tenant => {}
                                Some(found) => return Err(other_tenant(label, found, tenant)),
                                None => {
                                    labels.insert(label.to_string(), tenant.to_string());
                                }
                            }
                            put_bytes(&mut rewritten, 1, render_selector(&labels).as_bytes());
                        }
                        Field { number: 3, .. } => {}
                        other => rewritten.extend_from_slice(other.raw),
                    }
                }
                put_bytes(&mut out, 1, &rewritten);
                count += 1;
            }
            other => out.extend_from_slice(other.raw),
        }
    }
    Ok((out, count))
}

/// `{name="value", ...}` as Loki's clients write it (Prometheus's label syntax, `\"`, `\\` and `\n` escapes).
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, PushError> {
    let bad = || PushError::Selector(text.to_string());
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(bad)?;
    let mut labels = BTreeMap::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).ok_or_else(bad)?;
        let (name, after) = rest.split_at(end);
        if name.is_empty() {
            return Err(bad());
        }
        let after = after.trim_start().strip_prefix('=').ok_or_else(bad)?.trim_start();
        let mut chars = after.strip_prefix('"').ok_or_else(bad)?.char_indices();
        let mut value = String::new();
        let close = loop {
            match chars.next().ok_or_else(bad)? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or_else(bad)?.1 {
                    'n' => value.push('\n'),
                    c @ ('"' | '\\') => value.push(c),
                    _ => return Err(bad()),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_string(), value);
        rest = after[1 + close + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(more) => more.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(bad()),
        };
    }
    Ok(labels)
}

pub fn render_selector(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_streams_get_the_tenant_and_others_are_refused() {
        let body = br#"{"streams":[{"stream":{"job":"app"},"values":[["1700000000000000000","hello"]]}]}"#;
        let (out, count) = json_with(body, "tenant", "site-a").expect("rewritten");
        let out: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!((count, &out["streams"][0]["stream"]["tenant"]), (1, &"site-a".into()));
        assert_eq!(out["streams"][0]["values"][0][1], "hello");
        let other = br#"{"streams":[{"stream":{"tenant":"site-b"},"values":[]}]}"#;
        assert!(matches!(json_with(other, "tenant", "site-a"), Err(PushError::OtherTenant { .. })));
        assert!(matches!(json_with(b"[]", "tenant", "site-a"), Err(PushError::Json(_))));
    }

    #[test]
    fn selectors_read_and_write_back() {
        let labels = parse_selector(r#"{job="app", path="C:\\logs", msg="say \"hi\"\n"}"#).expect("parses");
        assert_eq!(labels["path"], "C:\\logs");
        assert_eq!(labels["msg"], "say \"hi\"\n");
        assert_eq!(parse_selector(&render_selector(&labels)).expect("again"), labels);
        assert_eq!(parse_selector("{}").expect("empty"), BTreeMap::new());
        for bad in ["", "job=\"a\"", "{job=a}", "{job=\"a}", "{=\"a\"}", "{job=\"a\" x=\"b\"}", "{job=\"\\q\"}"] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protobuf_streams_get_the_tenant_in_their_selector() {
        let mut stream = Vec::new();
        put_bytes(&mut stream, 1, br#"{job="app"}"#);
        put_bytes(&mut stream, 2, b"\x12\x05hello");
        stream.extend_from_slice(&[0x18, 0x2a]); // hash = 42
        let mut request = Vec::new();
        put_bytes(&mut request, 1, &stream);
        let (out, count) = protobuf_with(&request, "tenant", "site-a").expect("rewritten");
        let mut wanted_stream = Vec::new();
        put_bytes(&mut wanted_stream, 1, br#"{job="app", tenant="site-a"}"#);
        put_bytes(&mut wanted_stream, 2, b"\x12\x05hello");
        let mut wanted = Vec::new();
        put_bytes(&mut wanted, 1, &wanted_stream);
        assert_eq!((out, count), (wanted, 1));
    }
}
