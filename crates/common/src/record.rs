//! The SkyDNS value stored at each key, as CoreDNS's etcd plugin reads it (`msg.Service`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("value is not valid SkyDNS JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("port {0} is out of range (0-65535, or -1 for no SRV record)")]
    Port(i64),
    #[error("{field} {value} is out of range (0-65535)")]
    Range { field: &'static str, value: i64 },
}

/// One SkyDNS entry. Every field is optional, as in CoreDNS; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub port: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub weight: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mail: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub targetstrip: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// promsd's own field: which host's registrar wrote the record (its /etc/machine-id), so a registrar can
    /// tell a record it must restore from one another host took. CoreDNS and external-dns ignore it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

impl Service {
    /// Parses a value read from etcd and checks the numeric fields fit the DNS records they end up in.
    pub fn parse(value: &[u8]) -> Result<Self, RecordError> {
        let service: Service = serde_json::from_slice(value)?;
        if service.port != -1 && !(0..=65535).contains(&service.port) {
            return Err(RecordError::Port(service.port));
        }
        for (field, value) in [("priority", service.priority), ("weight", service.weight)] {
            if !(0..=65535).contains(&value) {
                return Err(RecordError::Range { field, value });
            }
        }
        Ok(service)
    }

    /// The JSON written to etcd: `{"host":"10.0.0.5","port":9100}` plus the fields that are set.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_the_seed_format() {
        let s = Service::parse(br#"{"host":"10.0.0.5","port":9100,"extra":1}"#).expect("valid");
        assert_eq!(s.host, "10.0.0.5");
        assert_eq!(s.port, 9100);
        assert_eq!(s.to_json(), r#"{"host":"10.0.0.5","port":9100}"#);
        let full = Service {
            host: "h".into(),
            port: 1,
            priority: 5,
            weight: 7,
            text: "t".into(),
            ttl: 60,
            ..Default::default()
        };
        assert_eq!(full.to_json(), r#"{"host":"h","port":1,"priority":5,"weight":7,"text":"t","ttl":60}"#);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(matches!(Service::parse(b"{not json"), Err(RecordError::Json(_))));
        assert!(matches!(Service::parse(br#"{"host":1}"#), Err(RecordError::Json(_))));
        assert!(matches!(Service::parse(br#"{"port":70000}"#), Err(RecordError::Port(70000))));
        assert!(Service::parse(br#"{"host":"a","port":-1}"#).is_ok());
        assert!(matches!(Service::parse(br#"{"weight":-2}"#), Err(RecordError::Range { .. })));
    }
}
