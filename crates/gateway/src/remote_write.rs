//! Prometheus remote_write through the gateway: a site's Prometheus writes to `/api/v1/write` with its token
//! (`remote_write.headers`), the gateway enforces the token's tenant label on every series and forwards the
//! request to `--remote-write.upstream`. The protobuf is rewritten field by field, not decoded into a
//! model: exemplars, histograms, metadata and fields newer than this code pass through untouched.
//!
//! A series of another tenant is 403 and a bad body 400 (retrying cannot help); the upstream's answers are
//! mapped by [`crate::upstream`] so that the sender keeps and retries what the upstream could not take.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderName};
use thiserror::Error;

use crate::upstream::{Outcome, Upstream};

use crate::protobuf::{Field, Fields, Malformed, Snappy, Value, put_bytes, rewrite_snappy};

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
    #[error("the body is not a remote_write WriteRequest: {}", .0.0)]
    Protobuf(Malformed),
    #[error("a series has {label}={found:?}, but this token writes for {label}={tenant:?}")]
    OtherTenant { label: String, found: String, tenant: String },
}

pub struct RemoteWrite {
    pub upstream: Upstream,
    /// The label every series carries with the token's tenant (`--remote-write.tenant-label`).
    pub tenant_label: String,
    /// Largest decompressed body accepted.
    pub max_decoded: usize,
    /// Series checked and forwarded.
    pub series: AtomicU64,
}

impl RemoteWrite {
    /// One write: the series checked and labelled for `tenant` (none on an open gateway: passed as sent),
    /// then forwarded.
    pub async fn write(&self, headers: &HeaderMap, body: &[u8], tenant: Option<&str>) -> Outcome {
        let body = match tenant {
            Some(tenant) => match self.relabel(body, tenant) {
                Ok((body, series)) => {
                    self.series.fetch_add(series, Ordering::Relaxed);
                    Bytes::from(body)
                }
                Err(error) => {
                    let status = match error {
                        WriteError::OtherTenant { .. } => StatusCode::FORBIDDEN,
                        WriteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                        _ => StatusCode::BAD_REQUEST,
                    };
                    return self.upstream.reject(status, format!("{error}\n"));
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
        self.upstream.forward(forwarded, body).await
    }

    /// The body with `tenant` enforced, snappy-compressed again, and the number of series.
    pub fn relabel(&self, body: &[u8], tenant: &str) -> Result<(Vec<u8>, u64), WriteError> {
        rewrite_snappy(body, self.max_decoded, |decoded| enforce_tenant(decoded, &self.tenant_label, tenant)).map_err(
            |error| match error {
                Snappy::NotSnappy => WriteError::Snappy,
                Snappy::TooLarge => WriteError::TooLarge(self.max_decoded),
                Snappy::Rewrite(error) => error,
            },
        )
    }
}

/// `WriteRequest` with every `TimeSeries` (field 1) carrying `label="tenant"`: added where missing (in name
/// order, as Prometheus sorts labels), kept where it already says so, refused where it names another.
pub fn enforce_tenant(request: &[u8], label: &str, tenant: &str) -> Result<(Vec<u8>, u64), WriteError> {
    let mut out = Vec::with_capacity(request.len() + 64);
    let mut series = 0u64;
    for field in Fields::new(request) {
        let field = field.map_err(WriteError::Protobuf)?;
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
        let field = field.map_err(WriteError::Protobuf)?;
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
        match field.map_err(WriteError::Protobuf)? {
            Field { number: 1, value: Value::Bytes(bytes), .. } => name = bytes,
            Field { number: 2, value: Value::Bytes(bytes), .. } => value = bytes,
            _ => {}
        }
    }
    Ok((name, value))
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
