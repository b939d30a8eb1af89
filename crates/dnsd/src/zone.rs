//! The zones dnsd is authoritative for, and how a query name finds its zone (longest match wins).

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

impl Zone {
    pub fn new(name: &str) -> Result<Self, NameError> {
        validate_name("zone", name)?;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let fqdn = |s: String| {
            Name::from_ascii(&s).map_err(|_| NameError::BadLabel { what: "zone", value: name.clone(), label: s })
        };
        let origin = fqdn(format!("{name}."))?;
        let soa = SoaConfig {
            mname: fqdn(format!("ns.dns.{name}."))?,
            rname: fqdn(format!("hostmaster.{name}."))?,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: 30,
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
    pub prefix: KeyPrefix,
}

impl Catalog {
    pub fn new(mut zones: Vec<Zone>, prefix: KeyPrefix) -> Self {
        zones.sort_by(|a, b| b.name.len().cmp(&a.name.len()).then_with(|| a.name.cmp(&b.name)));
        zones.dedup_by(|a, b| a.name == b.name);
        Self { zones, prefix }
    }

    pub fn zone_for(&self, lname: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.contains(lname))
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_zone_wins() {
        let zones = vec![Zone::new("local").expect("zone"), Zone::new("Prom.Local.").expect("zone")];
        let catalog = Catalog::new(zones, KeyPrefix::new("/skydns"));
        assert_eq!(catalog.zone_for("node.prom.local").map(|z| z.name.as_str()), Some("prom.local"));
        assert_eq!(catalog.zone_for("prom.local").map(|z| z.name.as_str()), Some("prom.local"));
        assert_eq!(catalog.zone_for("xprom.local").map(|z| z.name.as_str()), Some("local"));
        assert!(catalog.zone_for("example.org").is_none());
        assert!(catalog.zone_for("xlocal").is_none());
    }
}
