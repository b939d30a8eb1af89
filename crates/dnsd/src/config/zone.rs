//! The zones dnsd is authoritative for, and how a query name finds its zone (longest match wins).

use std::net::IpAddr;

use hickory_proto::rr::Name;
use promsd_common::KeyPrefix;
use promsd_common::name::{NameError, validate_name};

/// One authoritative zone, e.g. `prom.local`.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub origin: Name,
    pub soa: SoaConfig,
}

/// The zone's SOA: `ns.dns.<zone> hostmaster.<zone> <serial> 7200 1800 86400 30` as CoreDNS writes it.
#[derive(Debug, Clone)]
pub struct SoaConfig {
    pub mname: Name,
    pub rname: Name,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    pub minimum: u32,
}

/// SOA settings for every zone: names without a trailing dot are relative to the zone (`ns.dns` is
/// `ns.dns.<zone>`), as in a zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoaSettings {
    pub mname: String,
    pub rname: String,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

impl Default for SoaSettings {
    fn default() -> Self {
        Self {
            mname: "ns.dns".into(),
            rname: "hostmaster".into(),
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: 30,
        }
    }
}

/// The zones a `--zone` value stands for: a name, or a CIDR such as `10.0.0.0/24` for its reverse zone
/// (`0.0.10.in-addr.arpa`). A prefix off an octet (nibble for IPv6) boundary gives every zone it spans, as
/// CoreDNS does: `10.0.0.0/23` is `0.0.10.in-addr.arpa` and `1.0.10.in-addr.arpa`.
pub fn zones_for(spec: &str, soa: &SoaSettings) -> Result<Vec<Zone>, NameError> {
    let Some((addr, len)) = spec.split_once('/') else { return Ok(vec![Zone::with_soa(spec, soa)?]) };
    let bad = || NameError::BadLabel { what: "zone", value: spec.into(), label: "CIDR".into() };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    // Digits of the address in reverse-zone order (octets or nibbles), each as (value, bits).
    let (digits, bits, suffix): (Vec<u32>, u32, &str) = match addr {
        IpAddr::V4(ip) => (ip.octets().iter().map(|&o| u32::from(o)).collect(), 8, "in-addr.arpa"),
        IpAddr::V6(ip) => {
            (ip.octets().iter().flat_map(|&o| [u32::from(o >> 4), u32::from(o & 0xf)]).collect(), 4, "ip6.arpa")
        }
    };
    if len > digits.len() as u32 * bits {
        return Err(bad());
    }
    let whole = (len / bits) as usize;
    let spare = len % bits;
    let fixed = &digits[..whole];
    let mut zones = Vec::new();
    let tails: Vec<Option<u32>> = if spare == 0 {
        vec![None]
    } else {
        let step = 1 << (bits - spare);
        let start = digits[whole] & !(step - 1);
        (start..start + step).map(Some).collect()
    };
    for tail in tails {
        let mut labels: Vec<String> =
            fixed.iter().map(|d| if bits == 8 { d.to_string() } else { format!("{d:x}") }).collect();
        if let Some(t) = tail {
            labels.push(if bits == 8 { t.to_string() } else { format!("{t:x}") });
        }
        labels.reverse();
        labels.push(suffix.to_string());
        zones.push(Zone::with_soa(&labels.join("."), soa)?);
    }
    Ok(zones)
}

impl Zone {
    pub fn new(name: &str) -> Result<Self, NameError> {
        Self::with_soa(name, &SoaSettings::default())
    }

    pub fn with_soa(name: &str, settings: &SoaSettings) -> Result<Self, NameError> {
        validate_name("zone", name)?;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let absolute = |relative: &str| {
            let text = if relative.ends_with('.') { relative.to_string() } else { format!("{relative}.{name}.") };
            Name::from_ascii(&text).map_err(|_| NameError::BadLabel {
                what: "SOA name",
                value: relative.into(),
                label: text,
            })
        };
        let origin = Name::from_ascii(format!("{name}.")).map_err(|_| NameError::BadLabel {
            what: "zone",
            value: name.clone(),
            label: name.clone(),
        })?;
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let soa = SoaConfig {
            mname: absolute(&settings.mname)?,
            rname: absolute(&settings.rname)?,
            refresh: clamp(settings.refresh),
            retry: clamp(settings.retry),
            expire: clamp(settings.expire),
            minimum: settings.minimum,
        };
        Ok(Self { name, origin, soa })
    }

    /// Whether `lname` (lowercase, no trailing dot) is this zone or below it.
    pub fn contains(&self, lname: &str) -> bool {
        lname == self.name
            || (lname.len() > self.name.len() && lname.ends_with(&self.name) && {
                let cut = lname.len() - self.name.len();
                lname.as_bytes()[cut - 1] == b'.'
            })
    }
}

/// The zones plus the key prefix: everything needed to map a query onto the view.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Longest name first, so the first match is the most specific zone.
    zones: Vec<Zone>,
    /// Each zone's key (`/skydns/local/prom`), in the order of `zones`.
    zone_keys: Vec<String>,
    pub prefix: KeyPrefix,
}

impl Catalog {
    pub fn new(mut zones: Vec<Zone>, prefix: KeyPrefix) -> Self {
        zones.sort_by(|a, b| b.name.len().cmp(&a.name.len()).then_with(|| a.name.cmp(&b.name)));
        zones.dedup_by(|a, b| a.name == b.name);
        let zone_keys = zones.iter().map(|z| prefix.key_for_name(&z.name)).collect();
        Self { zones, zone_keys, prefix }
    }

    /// Whether `key` (as etcd holds it) names something inside one of the zones, and the name's part below
    /// the prefix (`local/prom/node/a`): a check on the key itself, with nothing to allocate, for every key
    /// a load or a watch brings.
    pub fn relative_in_zones<'k>(&self, key: &'k str) -> Option<&'k str> {
        let inside = |zone: &String| {
            key.strip_prefix(zone.as_str()).is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
        };
        if !self.zone_keys.iter().any(inside) {
            return None;
        }
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    pub fn zone_for(&self, lname: &str) -> Option<&Zone> {
        self.zone_index_for(lname).map(|(_, zone)| zone)
    }

    /// The zone of `lname` and its place in [`Catalog::zones`], which the metrics count per zone by.
    pub fn zone_index_for(&self, lname: &str) -> Option<(usize, &Zone)> {
        self.zones.iter().enumerate().find(|(_, z)| z.contains(lname))
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_give_reverse_zones() {
        let names = |spec: &str| -> Vec<String> {
            zones_for(spec, &SoaSettings::default()).expect("zones").into_iter().map(|z| z.name).collect()
        };
        assert_eq!(names("10.0.0.0/24"), ["0.0.10.in-addr.arpa"]);
        assert_eq!(names("10.0.0.0/8"), ["10.in-addr.arpa"]);
        assert_eq!(names("10.0.0.0/23"), ["0.0.10.in-addr.arpa", "1.0.10.in-addr.arpa"]);
        assert_eq!(names("2001:db8::/32"), ["8.b.d.0.1.0.0.2.ip6.arpa"]);
        assert_eq!(names("prom.local"), ["prom.local"]);
        assert!(zones_for("10.0.0.0/33", &SoaSettings::default()).is_err());
        assert!(zones_for("x/8", &SoaSettings::default()).is_err());
    }

    #[test]
    fn longest_zone_wins() {
        let zones = vec![Zone::new("local").expect("zone"), Zone::new("Prom.Local.").expect("zone")];
        let catalog = Catalog::new(zones, KeyPrefix::new("/skydns"));
        assert_eq!(catalog.zone_for("node.prom.local").map(|z| z.name.as_str()), Some("prom.local"));
        assert_eq!(catalog.zone_for("prom.local").map(|z| z.name.as_str()), Some("prom.local"));
        assert_eq!(catalog.zone_for("xprom.local").map(|z| z.name.as_str()), Some("local"));
        assert!(catalog.zone_for("example.org").is_none());
        assert!(catalog.zone_for("xlocal").is_none());
        assert_eq!(catalog.relative_in_zones("/skydns/local/prom/node/a"), Some("local/prom/node/a"));
        assert_eq!(catalog.relative_in_zones("/skydns/local/xprom"), Some("local/xprom"), "in local");
        assert_eq!(catalog.relative_in_zones("/skydns/local"), Some("local"));
        assert!(catalog.relative_in_zones("/skydns/localx/a").is_none());
        assert!(catalog.relative_in_zones("/skydns/org/example").is_none());
        assert!(catalog.relative_in_zones("/skydnsx/local").is_none());
    }
}
