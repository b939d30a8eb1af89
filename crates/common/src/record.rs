//! The SkyDNS value stored at each key, as CoreDNS's etcd plugin reads it (`msg.Service`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::labels::{self, LabelError, Lenient, Pairs};

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
    /// promsd's own fields for Prometheus's http_sd ([`crate::labels`]): the target's labels, and how it is
    /// scraped. A wrong type makes the field invalid, never the record.
    #[serde(skip_serializing_if = "Lenient::is_absent_or_invalid")]
    pub labels: Lenient<Pairs>,
    #[serde(skip_serializing_if = "Lenient::is_absent_or_invalid")]
    pub scheme: Lenient<String>,
    #[serde(skip_serializing_if = "Lenient::is_absent_or_invalid")]
    pub metrics_path: Lenient<String>,
    /// URL parameters of the scrape, one value each (`__param_<name>`).
    #[serde(skip_serializing_if = "Lenient::is_absent_or_invalid")]
    pub params: Lenient<Pairs>,
}

/// Makes `field` absent unless it holds a value that passes `validate`, noting why in `problems`.
fn keep_valid<T>(
    field: &mut Lenient<T>,
    wrong_type: LabelError,
    validate: impl Fn(&T) -> Result<(), LabelError>,
    problems: &mut Vec<LabelError>,
) {
    let problem = match field {
        Lenient::Absent => return,
        Lenient::Invalid => wrong_type,
        Lenient::Valid(value) => match validate(value) {
            Ok(()) => return,
            Err(problem) => problem,
        },
    };
    problems.push(problem);
    *field = Lenient::Absent;
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

    /// Drops each of the Prometheus fields that Prometheus would reject, returning why: the record still
    /// answers, without them.
    pub fn drop_invalid_prometheus_fields(&mut self) -> Vec<LabelError> {
        let mut problems = Vec::new();
        let names = |pairs: &Pairs| labels::validate_labels(pairs.names());
        keep_valid(&mut self.labels, LabelError::NotAMap, names, &mut problems);
        let params = |pairs: &Pairs| pairs.names().try_for_each(labels::validate_param_name);
        keep_valid(&mut self.params, LabelError::ParamsNotAMap, params, &mut problems);
        let path = |path: &String| labels::validate_metrics_path(path);
        keep_valid(&mut self.metrics_path, LabelError::NotAString("metrics_path"), path, &mut problems);
        let scheme = |scheme: &String| labels::validate_scheme(scheme);
        keep_valid(&mut self.scheme, LabelError::NotAString("scheme"), scheme, &mut problems);
        problems
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

    #[test]
    fn prometheus_fields_round_trip_and_bad_ones_are_dropped() {
        let json = r#"{"host":"h","port":9998,"labels":{"env":"prod"},"scheme":"https","metrics_path":"/proxy","params":{"module":"node"}}"#;
        let mut service = Service::parse(json.as_bytes()).expect("valid");
        assert_eq!(service.to_json(), json);
        assert!(service.drop_invalid_prometheus_fields().is_empty());
        let broken = br#"{"host":"h","port":1,"labels":{"__x":"1"},"scheme":"ftp","metrics_path":7,"params":[]}"#;
        let mut service = Service::parse(broken).expect("a broken label never fails the record");
        assert_eq!(service.drop_invalid_prometheus_fields().len(), 4);
        assert_eq!(service.to_json(), r#"{"host":"h","port":1}"#);
    }
}
