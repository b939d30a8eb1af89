//! The records `load` writes: SERVICES x INSTANCES node records `svc{s:04}/host{i:04}` (the widths are
//! minimums, so svc10000 works) below the zone's key, plus two name servers. Every other subcommand derives
//! keys, names and values from the same formulas.

use promsd_common::{KeyPrefix, Service};

pub const PORT: i64 = 9100;

#[derive(Debug, Clone)]
pub struct Layout {
    pub zone: String,
    /// The etcd key of the zone: /skydns/local/prom for prom.local.
    pub zone_key: String,
    pub services: usize,
    pub instances: usize,
}

impl Layout {
    pub fn new(zone: &str, services: usize, instances: usize) -> Self {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let zone_key = KeyPrefix::new("/skydns").key_for_name(&zone);
        Self { zone, zone_key, services, instances }
    }

    /// The node records alone, without the name servers.
    pub fn targets(&self) -> usize {
        self.services * self.instances
    }

    /// The two name server keys: `load` writes them beside the node records.
    pub fn ns_keys(&self) -> [(String, String); 2] {
        [
            (format!("{}/dns/ns/ns1", self.zone_key), r#"{"host":"127.0.0.1"}"#.to_string()),
            (format!("{}/dns/ns/ns2", self.zone_key), r#"{"host":"127.0.0.2"}"#.to_string()),
        ]
    }

    /// (service, instance) of the n-th node record, in key order of services.
    pub fn nth(&self, n: usize) -> (usize, usize) {
        (n / self.instances, n % self.instances)
    }

    pub fn key(&self, s: usize, i: usize) -> String {
        format!("{}/svc{s:04}/host{i:04}", self.zone_key)
    }

    pub fn service_key(&self, s: usize) -> String {
        format!("{}/svc{s:04}", self.zone_key)
    }

    /// The host `load` gives an instance.
    pub fn host(s: usize, i: usize) -> String {
        format!("10.{}.{}.{}", s / 250, s % 250, i % 250 + 1)
    }

    pub fn value(host: &str, port: i64) -> String {
        Service { host: host.to_string(), port, ..Service::default() }.to_json()
    }

    /// The value the agent writes for module `svc{s}` of host `i`: two labels and how to scrape it.
    pub fn agent_value(s: usize, i: usize) -> String {
        use promsd_common::{Lenient, Pairs};
        let labels =
            Pairs::from_iter([("site".to_string(), format!("site{}", i % 4)), ("team".into(), format!("t{}", s % 10))]);
        let service = Service {
            host: Self::host(s, i),
            port: PORT,
            labels: Lenient::Valid(labels),
            scheme: Lenient::Valid("http".into()),
            metrics_path: Lenient::Valid("/proxy".into()),
            params: Lenient::Valid(Pairs::from_iter([("module".to_string(), format!("svc{s:04}"))])),
            ..Service::default()
        };
        service.to_json()
    }

    /// The A name of an instance: host0001.svc0002.prom.local.
    pub fn instance_name(&self, s: usize, i: usize) -> String {
        format!("host{i:04}.svc{s:04}.{}.", self.zone)
    }

    /// The SRV name of a service: svc0002.prom.local.
    pub fn service_name(&self, s: usize) -> String {
        format!("svc{s:04}.{}.", self.zone)
    }
}
