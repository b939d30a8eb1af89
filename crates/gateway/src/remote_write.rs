//! Prometheus remote_write through the gateway: a site's Prometheus writes to `/api/v1/write` with its token
//! (`remote_write.headers`), the gateway enforces the token's tenant label on every series and forwards the
//! request to `--remote-write.upstream`. The protobuf is rewritten field by field, not decoded into a
//! model: exemplars, histograms, metadata and fields newer than this code pass through untouched.
//!
//! Answers are chosen for remote_write's retry rule (5xx retried, 4xx dropped): a refused token is 401/403
//! and a series of another tenant 403 (retrying cannot help); an unreachable upstream, its 5xx and its 429
//! are 5xx (503 for a 429, with its Retry-After), so the sender keeps the samples and retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Method, StatusCode};
use promsd_client::Client;
use thiserror::Error;

/// How long the upstream may take to answer one write (Prometheus's own remote_timeout default).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Request headers passed on to the upstream; everything else (the token above all) stays here.
const FORWARDED: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::USER_AGENT,
    HeaderName::from_static("x-prometheus-remote-write-version"),
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("the body is not snappy-compressed (block format)")]
    Snappy,
    #[error("the body decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("the body is not a remote_write WriteRequest: {0}")]
    Protobuf(&'static str),
    #[error("a series has {label}={found:?}, but this token writes for {label}={tenant:?}")]
    OtherTenant { label: String, found: String, tenant: String },
}

#[derive(Debug, Default)]
pub struct WriteCounts {
    pub forwarded: AtomicU64,
    pub series: AtomicU64,
    pub rejected: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub unreachable: AtomicU64,
}

pub struct RemoteWrite {
    pub upstream: Client,
    pub url: String,
    /// The label every series carries with the token's tenant (`--remote-write.tenant-label`).
    pub tenant_label: String,
    /// Largest decompressed body accepted.
    pub max_decoded: usize,
    pub counts: WriteCounts,
}

/// What to answer the sender.
pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Outcome {
    fn plain(status: StatusCode, body: impl Into<String>) -> Self {
        Self { status, headers: HeaderMap::new(), body: body.into() }
    }
}

impl RemoteWrite {
    /// One write: the series checked and labelled for `tenant` (none on an open gateway: passed as sent),
    /// then forwarded.
    pub async fn write(&self, headers: &HeaderMap, body: &[u8], tenant: Option<&str>) -> Outcome {
        let body = match tenant {
            Some(tenant) => match self.relabel(body, tenant) {
                Ok((body, series)) => {
                    self.counts.series.fetch_add(series, Ordering::Relaxed);
                    Bytes::from(body)
                }
                Err(error) => {
                    self.counts.rejected.fetch_add(1, Ordering::Relaxed);
                    let status = match error {
                        WriteError::OtherTenant { .. } => StatusCode::FORBIDDEN,
                        WriteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                        _ => StatusCode::BAD_REQUEST,
                    };
                    return Outcome::plain(status, format!("{error}\n"));
                }
            },
            None => Bytes::copy_from_slice(body),
        };
        let mut forwarded = HeaderMap::new();
        for name in &FORWARDED {
            if let Some(value) = headers.get(name) {
                forwarded.insert(name, value.clone());
            }
        }
        let sent = tokio::time::timeout(UPSTREAM_TIMEOUT, self.upstream.request(Method::POST, "", &forwarded, body));
        let answer = match sent.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                self.counts.unreachable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %self.url, %error, "remote_write upstream unreachable");
                return Outcome::plain(StatusCode::SERVICE_UNAVAILABLE, format!("upstream unreachable: {error}\n"));
            }
            Err(_) => {
                self.counts.unreachable.fetch_add(1, Ordering::Relaxed);
                return Outcome::plain(StatusCode::SERVICE_UNAVAILABLE, "upstream did not answer in time\n");
            }
        };
        if answer.status.is_success() {
            self.counts.forwarded.fetch_add(1, Ordering::Relaxed);
            return Outcome::plain(answer.status, "");
        }
        self.counts.upstream_errors.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(1024)]).to_string();
        // A rate limit is retried by every Prometheus only as a 5xx (2.42 drops a 429 unless
        // retry_on_http_429 is set); its Retry-After goes with it.
        let status = if answer.status == StatusCode::TOO_MANY_REQUESTS {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            answer.status
        };
        let mut outcome = Outcome::plain(status, format!("upstream answered {}: {text}", answer.status));
        if let Some(retry_after) = answer.headers.get(header::RETRY_AFTER) {
            outcome.headers.insert(header::RETRY_AFTER, retry_after.clone());
        }
        outcome
    }

    /// The body with `tenant` enforced, snappy-compressed again, and the number of series.
    pub fn relabel(&self, body: &[u8], tenant: &str) -> Result<(Vec<u8>, u64), WriteError> {
        let length = snap::raw::decompress_len(body).map_err(|_| WriteError::Snappy)?;
        if length > self.max_decoded {
            return Err(WriteError::TooLarge(self.max_decoded));
        }
        let decoded = snap::raw::Decoder::new().decompress_vec(body).map_err(|_| WriteError::Snappy)?;
        let (rewritten, series) = enforce_tenant(&decoded, &self.tenant_label, tenant)?;
        let compressed = snap::raw::Encoder::new().compress_vec(&rewritten).map_err(|_| WriteError::Snappy)?;
        Ok((compressed, series))
    }
}

/// `WriteRequest` with every `TimeSeries` (field 1) carrying `label="tenant"`: added where missing (in name
/// order, as Prometheus sorts labels), kept where it already says so, refused where it names another.
pub fn enforce_tenant(request: &[u8], label: &str, tenant: &str) -> Result<(Vec<u8>, u64), WriteError> {
    let mut out = Vec::with_capacity(request.len() + 64);
    let mut series = 0u64;
    for field in Fields::new(request) {
        let field = field?;
        match field {
            Field { number: 1, value: Value::Bytes(timeseries), .. } => {
                let rewritten = timeseries_with(timeseries, label, tenant)?;
                put_bytes(&mut out, 1, &rewritten);
                series += 1;
            }
            other => out.extend_from_slice(other.raw),
        }
    }
    Ok((out, series))
}

fn timeseries_with(timeseries: &[u8], label: &str, tenant: &str) -> Result<Vec<u8>, WriteError> {
    let mut labels: Vec<(&[u8], &[u8])> = Vec::new(); // (name, the whole Label message)
    let mut rest = Vec::with_capacity(timeseries.len());
    let mut present = false;
    for field in Fields::new(timeseries) {
        let field = field?;
        match field {
            Field { number: 1, value: Value::Bytes(message), .. } => {
                let (name, value) = label_pair(message)?;
                if name == label.as_bytes() {
                    if value != tenant.as_bytes() {
                        return Err(WriteError::OtherTenant {
                            label: label.to_string(),
                            found: String::from_utf8_lossy(value).into_owned(),
                            tenant: tenant.to_string(),
                        });
                    }
                    present = true;
                }
                labels.push((name, message));
            }
            other => rest.extend_from_slice(other.raw),
        }
    }
    let mut added = Vec::new();
    if !present {
        put_bytes(&mut added, 1, label.as_bytes());
        put_bytes(&mut added, 2, tenant.as_bytes());
        let at = labels.iter().position(|(name, _)| *name > label.as_bytes()).unwrap_or(labels.len());
        labels.insert(at, (label.as_bytes(), &added));
    }
    let mut out = Vec::with_capacity(timeseries.len() + added.len() + 4);
    for (_, message) in labels {
        put_bytes(&mut out, 1, message);
    }
    out.extend_from_slice(&rest);
    Ok(out)
}

/// A `Label`'s name (field 1) and value (field 2).
fn label_pair(message: &[u8]) -> Result<(&[u8], &[u8]), WriteError> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    for field in Fields::new(message) {
        match field? {
            Field { number: 1, value: Value::Bytes(bytes), .. } => name = bytes,
            Field { number: 2, value: Value::Bytes(bytes), .. } => value = bytes,
            _ => {}
        }
    }
    Ok((name, value))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One protobuf field: its number, its value, and its bytes as they were (to copy it unchanged).
struct Field<'a> {
    number: u64,
    value: Value<'a>,
    raw: &'a [u8],
}

enum Value<'a> {
    Bytes(&'a [u8]),
    Other,
}

/// The fields of one message, in order; an error ends them.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0, failed: false }
    }

    fn varint(&mut self) -> Result<u64, WriteError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(WriteError::Protobuf("truncated varint"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WriteError::Protobuf("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WriteError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(WriteError::Protobuf("truncated field"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn field(&mut self) -> Result<Field<'a>, WriteError> {
        let start = self.at;
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(WriteError::Protobuf("field number 0"));
        }
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Other
            }
            1 => {
                self.take(8)?;
                Value::Other
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| WriteError::Protobuf("length too large"))?;
                Value::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Value::Other
            }
            _ => return Err(WriteError::Protobuf("unsupported wire type")),
        };
        Ok(Field { number, value, raw: &self.bytes[start..self.at] })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WriteError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, 1, name.as_bytes());
        put_bytes(&mut out, 2, value.as_bytes());
        out
    }

    /// A TimeSeries with these labels and one sample (value 1.0 at 1000 ms): field 2 { 1: double, 2: int64 }.
    fn series(labels: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in labels {
            put_bytes(&mut out, 1, &label(name, value));
        }
        let mut sample = vec![0x09];
        sample.extend_from_slice(&1.0f64.to_le_bytes());
        sample.extend_from_slice(&[0x10, 0xe8, 0x07]);
        put_bytes(&mut out, 2, &sample);
        out
    }

    fn request(all: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in all {
            put_bytes(&mut out, 1, s);
        }
        // A metadata entry (field 3) the gateway does not read: it must pass unchanged.
        put_bytes(&mut out, 3, &[0x08, 0x01]);
        out
    }

    #[test]
    fn the_tenant_label_is_added_in_order_and_everything_else_kept() {
        let sent = request(&[
            series(&[("__name__", "up"), ("job", "node")]),
            series(&[("__name__", "up"), ("tenant", "site-a")]),
        ]);
        let (rewritten, count) = enforce_tenant(&sent, "tenant", "site-a").expect("rewritten");
        assert_eq!(count, 2);
        let wanted = request(&[
            series(&[("__name__", "up"), ("job", "node"), ("tenant", "site-a")]),
            series(&[("__name__", "up"), ("tenant", "site-a")]),
        ]);
        assert_eq!(rewritten, wanted);
        let first = series(&[("zone", "x")]);
        let (rewritten, _) = enforce_tenant(&request(&[first]), "tenant", "site-a").expect("rewritten");
        assert_eq!(rewritten, request(&[series(&[("tenant", "site-a"), ("zone", "x")])]), "before a later name");
    }

    #[test]
    fn another_tenants_series_refuse_the_whole_write() {
        let sent = request(&[series(&[("__name__", "up")]), series(&[("__name__", "up"), ("tenant", "site-b")])]);
        assert_eq!(
            enforce_tenant(&sent, "tenant", "site-a").err(),
            Some(WriteError::OtherTenant { label: "tenant".into(), found: "site-b".into(), tenant: "site-a".into() })
        );
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for bad in [&[0x0a, 0x05, 0x01][..], &[0x0a][..], &[0x0b][..], &[0xff; 11][..], &[0x00][..]] {
            assert!(matches!(enforce_tenant(bad, "tenant", "a"), Err(WriteError::Protobuf(_))), "{bad:?}");
        }
        assert_eq!(enforce_tenant(&[], "tenant", "a"), Ok((Vec::new(), 0)));
    }
}
