//! Where a record lives and what it says: the etcd key of an exporter instance (zone, service, instance)
//! and the SkyDNS value stored there, checked before etcd is touched.

use std::net::IpAddr;

use promsd_common::name::{NameError, validate_label, validate_name, validate_path};
use promsd_common::{KeyPrefix, Lenient, Service, labels};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("give --zone (e.g. prom.local) or --base-path (e.g. /skydns/local/prom)")]
    NoLocation,
    #[error("invalid --address {0:?}: expected an IP address or a host name")]
    Address(String),
    #[error("cannot tell the host name for --instance: {0}")]
    Hostname(String),
    #[error("--label: {0}")]
    Label(#[from] promsd_common::LabelError),
}

/// Where the records of one zone live: the base key, and the prefix used to name keys back.
#[derive(Debug, Clone)]
pub struct Location {
    pub base: String,
    pub prefix: KeyPrefix,
}

impl Location {
    /// `path` is the prefix of all SkyDNS keys (`/skydns`); the zone's records are below `base_path` when
    /// given, else below the key of `zone`.
    pub fn new(path: &str, base_path: Option<&str>, zone: Option<&str>) -> Result<Self, RegistrationError> {
        validate_path(path)?;
        let prefix = KeyPrefix::new(path);
        let base = match (base_path, zone) {
            (Some(base), _) => {
                validate_path(base)?;
                KeyPrefix::new(base).as_str().to_string()
            }
            (None, Some(zone)) => {
                validate_name("zone", zone)?;
                prefix.key_for_name(zone)
            }
            (None, None) => return Err(RegistrationError::NoLocation),
        };
        Ok(Self { base, prefix })
    }

    /// The key of `service` (a name relative to the zone: labels reversed) below the base.
    pub fn service_key(&self, service: &str) -> String {
        let mut key = self.base.clone();
        for label in service.trim_end_matches('.').rsplit('.') {
            key.push('/');
            key.push_str(&label.to_ascii_lowercase());
        }
        key
    }

    /// The service and instance a key below the base stands for.
    pub fn split_key(&self, key: &str) -> Option<(String, String)> {
        let rest = key.strip_prefix(&self.base)?.strip_prefix('/')?;
        let (service, instance) = rest.rsplit_once('/')?;
        let service: Vec<&str> = service.split('/').rev().collect();
        Some((service.join("."), instance.to_string()))
    }
}

/// Which record: the service (below the zone) and the instance (below the service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// e.g. node, or node.a for a shard.
    pub service: String,
    /// [default: the short host name]
    pub instance: Option<String>,
}

/// What the record says; `None` leaves SkyDNS's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordValue {
    /// An IP address or a host name.
    pub address: String,
    pub port: Option<u16>,
    pub priority: Option<u16>,
    pub weight: Option<u16>,
    pub ttl: Option<u32>,
    pub text: Option<String>,
    /// Labels for http_sd, in the order given (a name given twice is refused).
    pub labels: Vec<(String, String)>,
    pub scheme: Option<String>,
    pub metrics_path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Registration {
    pub key: String,
    pub service: Service,
}

/// The etcd key for an instance of a service.
pub fn key_for(location: &Location, identity: &Identity) -> Result<String, RegistrationError> {
    validate_name("service", &identity.service)?;
    let instance = match &identity.instance {
        Some(instance) => instance.clone(),
        None => short_hostname()?,
    };
    validate_label("instance", &instance)?;
    Ok(format!("{}/{}", location.service_key(&identity.service), instance.to_ascii_lowercase()))
}

/// The address a record gives Prometheus: an IP address or a host name. A name whose last label is all
/// digits is a mistyped IP address (`999.1.1.1`), never a host name (RFC 3696: top-level labels are not
/// all-numeric).
pub fn validate_address(address: &str) -> Result<(), RegistrationError> {
    let top = address.trim_end_matches('.').rsplit('.').next().unwrap_or_default();
    let numeric_top = top.bytes().all(|b| b.is_ascii_digit());
    if address.parse::<IpAddr>().is_err() && (numeric_top || validate_name("address", address).is_err()) {
        return Err(RegistrationError::Address(address.to_string()));
    }
    Ok(())
}

impl Registration {
    /// The record of `identity` in `location`, checked before etcd is touched.
    pub fn new(location: &Location, identity: &Identity, value: &RecordValue) -> Result<Self, RegistrationError> {
        let key = key_for(location, identity)?;
        let address = value.address.trim();
        validate_address(address)?;
        let mut service = Service {
            host: address.to_string(),
            port: value.port.map(i64::from).unwrap_or(0),
            priority: value.priority.map(i64::from).unwrap_or(0),
            weight: value.weight.map(i64::from).unwrap_or(0),
            ttl: value.ttl.unwrap_or(0),
            text: value.text.clone().unwrap_or_default(),
            ..Service::default()
        };
        if !value.labels.is_empty() {
            service.labels = Lenient::Valid(labels::collect(value.labels.iter().cloned())?);
        }
        if let Some(scheme) = &value.scheme {
            labels::validate_scheme(scheme)?;
            service.scheme = Lenient::Valid(scheme.clone());
        }
        if let Some(path) = &value.metrics_path {
            labels::validate_metrics_path(path)?;
            service.metrics_path = Lenient::Valid(path.clone());
        }
        Ok(Self { key, service })
    }
}

/// Who writes the records of this host: `PROMSD_OWNER` when set, else its /etc/machine-id (systemd's stable
/// host identity), else the host name. Two hosts cloned from one image without a new machine-id look like
/// one owner.
pub fn owner() -> String {
    if let Some(owner) = std::env::var("PROMSD_OWNER").ok().filter(|o| !o.trim().is_empty()) {
        return owner.trim().to_string();
    }
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .or_else(|| gethostname::gethostname().into_string().ok())
        .unwrap_or_default()
}

/// `hostname -s`: the host name up to its first dot.
fn short_hostname() -> Result<String, RegistrationError> {
    let name = gethostname::gethostname().into_string().map_err(|_| RegistrationError::Hostname("not UTF-8".into()))?;
    let short = name.split('.').next().unwrap_or_default().to_string();
    if short.is_empty() {
        return Err(RegistrationError::Hostname("the host name is empty".into()));
    }
    Ok(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(zone: Option<&str>, base: Option<&str>) -> Result<Location, RegistrationError> {
        Location::new("/skydns", base, zone)
    }

    #[test]
    fn keys_from_zone_or_base_path() {
        let by_zone = location(Some("prom.local"), None).expect("location");
        let by_base = location(None, Some("/skydns/local/prom/")).expect("location");
        assert_eq!(by_zone.base, "/skydns/local/prom");
        assert_eq!(by_base.base, "/skydns/local/prom");
        let identity = Identity { service: "node.a".into(), instance: Some("Server01".into()) };
        assert_eq!(key_for(&by_zone, &identity).expect("key"), "/skydns/local/prom/a/node/server01");
        assert_eq!(
            by_zone.split_key("/skydns/local/prom/a/node/server01"),
            Some(("node.a".to_string(), "server01".to_string()))
        );
        assert!(matches!(location(None, None), Err(RegistrationError::NoLocation)));
        assert!(location(Some("bad zone"), None).is_err());
    }

    #[test]
    fn rejects_bad_values_before_etcd() {
        let loc = location(Some("prom.local"), None).expect("location");
        let identity = Identity { service: "node".into(), instance: Some("a".into()) };
        let value = |address: &str| RecordValue { address: address.into(), port: Some(9100), ..RecordValue::default() };
        assert!(Registration::new(&loc, &identity, &value("10.0.0.5")).is_ok());
        assert!(Registration::new(&loc, &identity, &value("host.example")).is_ok());
        for mistyped in ["999.1.1.1", "10.0.0", "10.0.0.256", "1"] {
            let error = Registration::new(&loc, &identity, &value(mistyped)).expect_err(mistyped);
            assert_eq!(
                error.to_string(),
                format!("invalid --address {mistyped:?}: expected an IP address or a host name")
            );
        }
        assert!(matches!(
            Registration::new(&loc, &identity, &value("10.0.0.5:9100")),
            Err(RegistrationError::Address(_))
        ));
        let bad_instance = Identity { service: "node".into(), instance: Some("a.b".into()) };
        assert!(Registration::new(&loc, &bad_instance, &value("10.0.0.5")).is_err());
    }
}
