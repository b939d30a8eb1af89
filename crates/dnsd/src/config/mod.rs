//! dnsd's configuration: flags and Corefile, merged in one place into the plain [`Config`] the library runs
//! with. A flag given explicitly (or through its environment variable) overrides what the Corefile says.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use promsd_common::duration::parse_duration;
use promsd_common::listen::parse_listen_address;
use promsd_common::name::{NameError, validate_path};
use promsd_common::{EtcdArgs, KeyPrefix};
use promsd_web::{WebConfigError, WebSource};
use thiserror::Error;

pub mod corefile;
pub mod live;
pub mod zone;

use corefile::CorefileError;
pub use live::Live;
pub use zone::{Catalog, SoaSettings, Zone, zones_for};

/// The clamp CoreDNS applies to lease TTLs (`min-lease-ttl`, `max-lease-ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseBounds {
    pub min: Duration,
    pub max: Duration,
}

impl Default for LeaseBounds {
    fn default() -> Self {
        Self { min: Duration::from_secs(30), max: Duration::from_secs(86400) }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Corefile(#[from] CorefileError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("no zone to answer for: give --zone (or a Corefile with --corefile)")]
    NoZones,
    #[error("--min-lease-ttl {min:?} is larger than --max-lease-ttl {max:?}")]
    LeaseBounds { min: Duration, max: Duration },
    /// Not a source: its message already names the file and the cause, and main prints the chain, so the
    /// error stays one line.
    #[error("{0}")]
    WebConfig(WebConfigError),
    /// etcd settings no retry can fix (a malformed endpoint, an unreadable CA): refused at start.
    #[error("{0}")]
    Etcd(promsd_common::EtcdError),
    /// Not a source, as above: the key error names the file and the key.
    #[error("--transfer.tsig-key-file {0}")]
    TsigKeys(crate::transfer::tsig::KeyError),
}

/// The transfer settings: the flags, else the Corefile's `transfer { to ... }`.
fn transfer_config(
    allow: Vec<ipnet::IpNet>,
    key_file: Option<&std::path::Path>,
    notify: Vec<SocketAddr>,
    history: usize,
    corefile_to: &[String],
) -> Result<crate::transfer::TransferConfig, ConfigError> {
    let keys = key_file.map(crate::transfer::tsig::load_keys).transpose().map_err(ConfigError::TsigKeys)?;
    let keys = keys.unwrap_or_default();
    let mut config = crate::transfer::TransferConfig { allow, keys, notify, history };
    if config.allow.is_empty() && config.notify.is_empty() {
        for to in corefile_to {
            // Checked when the Corefile was read.
            if let Ok((allow, notify)) = crate::transfer::parse_to(to) {
                config.allow.extend(allow);
                config.notify.extend(notify);
            }
        }
    }
    Ok(config)
}

/// Authoritative DNS for the SkyDNS records in etcd, answered from memory.
#[derive(Debug, Parser)]
#[command(name = "dnsd", version, long_version = promsd_buildinfo::LONG_VERSION)]
pub struct Cli {
    #[command(flatten, next_help_heading = "etcd")]
    pub etcd: EtcdArgs,
    /// Read zones, etcd settings and addresses from a CoreDNS Corefile; flags given beside it override it
    #[arg(help_heading = "Zones and records", long, value_name = "FILE")]
    pub corefile: Option<PathBuf>,
    /// etcd key prefix the records live under (CoreDNS's `path`) [default: /skydns]
    #[arg(help_heading = "Zones and records", long, value_name = "PATH")]
    pub path: Option<String>,
    /// Zone to answer for: a name, or a CIDR for its reverse zone; repeat or separate with commas
    #[arg(help_heading = "Zones and records", long = "zone", value_delimiter = ',', value_name = "ZONE")]
    pub zones: Vec<String>,
    /// Address for DNS over UDP and TCP: IP:PORT, or :PORT for every address [default: 0.0.0.0:53]
    #[arg(help_heading = "Listening", long = "dns.listen-address", value_name = "ADDR", value_parser = parse_listen_address)]
    pub dns_listen_address: Option<SocketAddr>,
    /// Address for /metrics, /-/healthy and /-/ready: IP:PORT, or :PORT for every address; repeatable
    /// [default: 0.0.0.0:9153]
    #[arg(help_heading = "Listening", long = "web.listen-address", value_name = "ADDR", value_parser = parse_listen_address)]
    pub web_listen_address: Vec<SocketAddr>,
    /// TLS, client certificates and basic auth for the web addresses, in exporter-toolkit's web configuration
    /// format; read at startup (an invalid file stops dnsd) and again when it changes
    #[arg(help_heading = "Listening", long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Lower bound of the TTL of records under an etcd lease [default: 30s]
    #[arg(help_heading = "Leases", long, value_parser = parse_duration, value_name = "DURATION")]
    pub min_lease_ttl: Option<Duration>,
    /// Upper bound of the TTL of records under an etcd lease [default: 24h]
    #[arg(help_heading = "Leases", long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_lease_ttl: Option<Duration>,
    /// SOA primary name server; relative names are below the zone
    #[arg(help_heading = "SOA", long = "soa.mname", default_value = "ns.dns", value_name = "NAME")]
    pub soa_mname: String,
    /// SOA mailbox of the zone's administrator; relative names are below the zone
    #[arg(help_heading = "SOA", long = "soa.rname", default_value = "hostmaster", value_name = "NAME")]
    pub soa_rname: String,
    /// SOA refresh, in seconds
    #[arg(help_heading = "SOA", long = "soa.refresh", default_value_t = 7200, value_name = "SECONDS")]
    pub soa_refresh: u32,
    /// SOA retry, in seconds
    #[arg(help_heading = "SOA", long = "soa.retry", default_value_t = 1800, value_name = "SECONDS")]
    pub soa_retry: u32,
    /// SOA expire, in seconds
    #[arg(help_heading = "SOA", long = "soa.expire", default_value_t = 86400, value_name = "SECONDS")]
    pub soa_expire: u32,
    /// SOA minimum: the TTL of negative answers, in seconds
    #[arg(help_heading = "SOA", long = "soa.minimum", default_value_t = 30, value_name = "SECONDS")]
    pub soa_minimum: u32,
    /// Log one line per query (the Corefile's `log`)
    #[arg(help_heading = "Logging", long = "log.queries")]
    pub log_queries: bool,
    /// Only log messages with the given severity or above: debug, info, warn, error [default: info, or debug
    /// with the Corefile's `debug`]
    #[arg(help_heading = "Logging", long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<tracing::Level>,
    /// Output format of log lines: logfmt or json
    #[arg(help_heading = "Logging", long = "log.format", value_enum, default_value_t, value_name = "FORMAT")]
    pub log_format: promsd_log::LogFormat,
    /// Allow zone transfers (AXFR, IXFR) from this network or address; repeatable. Without it (or a TSIG
    /// key) every transfer is refused
    #[arg(help_heading = "Zone transfers", long = "transfer.allow", value_name = "CIDR", value_parser = crate::transfer::parse_network)]
    pub transfer_allow: Vec<ipnet::IpNet>,
    /// TSIG keys (BIND's `key` clauses, Knot's `key:` list or ALGORITHM:NAME:SECRET lines): every transfer
    /// must then be signed with one, and come from an allowed network when --transfer.allow is given too
    #[arg(help_heading = "Zone transfers", long = "transfer.tsig-key-file", value_name = "FILE")]
    pub transfer_tsig_key_file: Option<PathBuf>,
    /// Secondary to send NOTIFY to when a zone changes: IP:PORT (port 53 when omitted); repeatable
    #[arg(help_heading = "Zone transfers", long = "transfer.notify", value_name = "ADDR", value_parser = crate::transfer::parse_notify)]
    pub transfer_notify: Vec<SocketAddr>,
    /// Snapshots kept to answer IXFR from; a secondary further behind gets the whole zone
    #[arg(help_heading = "Zone transfers", long = "transfer.ixfr-history", default_value_t = crate::transfer::DEFAULT_HISTORY, value_name = "N")]
    pub transfer_ixfr_history: usize,
    /// Leave CoreDNS's metric names (coredns_dns_requests_total, ...) out of /metrics: by default they are
    /// there beside dnsd's, so CoreDNS's dashboards and alerts keep working
    #[arg(long = "no-metrics.coredns")]
    pub no_coredns_metrics: bool,
}

/// What [`crate::run`] needs: how to reach etcd and what to answer for.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd: EtcdArgs,
    pub catalog: Catalog,
    /// The lease TTL bounds and the query log, which a SIGHUP changes while dnsd runs.
    pub live: Arc<Live>,
    /// `--web.config.file`, already read: None serves plain HTTP without authentication.
    pub web: Option<Arc<WebSource>>,
    /// How many DNS-over-TCP connections are served at once, in all and from one source address.
    pub tcp: TcpLimits,
    /// Whether `/metrics` has CoreDNS's families beside dnsd's (not `--no-metrics.coredns`).
    pub coredns_metrics: bool,
    /// Who may transfer the zones, and whom to notify of changes.
    pub transfer: crate::transfer::TransferConfig,
}

/// Bounds on DNS over TCP. At the total, the connection idle longest is closed for a new client; beyond the
/// per-source bound a new connection from that address is closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_source: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self { max_connections: 1024, max_per_source: 64 }
    }
}

impl Config {
    /// A configuration with CoreDNS's defaults for everything but etcd, the path and the zones.
    pub fn new(etcd: EtcdArgs, path: &str, zones: &[String]) -> Result<Self, ConfigError> {
        Self::build(etcd, path, zones, &SoaSettings::default(), LeaseBounds::default(), false)
    }

    fn build(
        etcd: EtcdArgs,
        path: &str,
        zones: &[String],
        soa: &SoaSettings,
        lease_bounds: LeaseBounds,
        log_queries: bool,
    ) -> Result<Self, ConfigError> {
        validate_path(path)?;
        if zones.is_empty() {
            return Err(ConfigError::NoZones);
        }
        if lease_bounds.min > lease_bounds.max {
            return Err(ConfigError::LeaseBounds { min: lease_bounds.min, max: lease_bounds.max });
        }
        let mut all = Vec::new();
        for spec in zones {
            all.extend(zones_for(spec, soa)?);
        }
        let catalog = Catalog::new(all, KeyPrefix::new(path));
        let live = Arc::new(Live::new(lease_bounds, log_queries));
        let transfer = crate::transfer::TransferConfig {
            history: crate::transfer::DEFAULT_HISTORY,
            ..crate::transfer::TransferConfig::default()
        };
        Ok(Self { etcd, catalog, live, web: None, tcp: TcpLimits::default(), coredns_metrics: true, transfer })
    }
}

/// The configuration plus the addresses to listen on and the log level.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub dns_listen_address: SocketAddr,
    pub web_listen_addresses: Vec<SocketAddr>,
    pub log_level: tracing::Level,
    web_config_file: Option<PathBuf>,
}

impl Settings {
    /// What differs between the running settings and `new` that only a restart applies (a SIGHUP applies
    /// the log level, the query log and the lease TTL bounds; the web config file is re-read when it changes).
    pub fn restart_needed(&self, new: &Settings) -> Vec<&'static str> {
        let (old_config, new_config) = (&self.config, &new.config);
        [
            ("etcd", old_config.etcd != new_config.etcd),
            ("zones and SOA", format!("{:?}", old_config.catalog) != format!("{:?}", new_config.catalog)),
            ("DNS address", self.dns_listen_address != new.dns_listen_address),
            ("web addresses", self.web_listen_addresses != new.web_listen_addresses),
            ("web config file", self.web_config_file != new.web_config_file),
            ("TCP limits", old_config.tcp != new_config.tcp),
            ("--no-metrics.coredns", old_config.coredns_metrics != new_config.coredns_metrics),
            ("zone transfers", old_config.transfer != new_config.transfer),
        ]
        .into_iter()
        .filter_map(|(what, differs)| differs.then_some(what))
        .collect()
    }
}

impl Cli {
    /// Merges defaults, the Corefile (if any) and the flags, in that order of precedence from low to high.
    pub fn settings(self) -> Result<Settings, ConfigError> {
        let file = match &self.corefile {
            Some(path) => corefile::load(path)?,
            None => corefile::FileSettings::default(),
        };
        let mut etcd = self.etcd;
        if etcd.endpoints.is_empty() && etcd.discovery_srv.is_none() {
            etcd.endpoints = file.endpoints.clone();
        }
        if etcd.user.is_none()
            && let Some((user, password)) = &file.credentials
        {
            etcd.user = Some(user.clone());
            etcd.password = Some(password.clone());
        }
        if let Some(tls) = &file.tls {
            etcd.cacert = etcd.cacert.or_else(|| tls.ca.clone());
            etcd.cert = etcd.cert.or_else(|| tls.cert.clone());
            etcd.key = etcd.key.or_else(|| tls.key.clone());
        }
        etcd.check().map_err(ConfigError::Etcd)?;
        let path = self.path.or(file.path).unwrap_or_else(|| "/skydns".into());
        let zones = if self.zones.is_empty() { file.zones } else { self.zones };
        let bounds = LeaseBounds {
            min: self.min_lease_ttl.or(file.min_lease_ttl).unwrap_or(LeaseBounds::default().min),
            max: self.max_lease_ttl.or(file.max_lease_ttl).unwrap_or(LeaseBounds::default().max),
        };
        let soa = SoaSettings {
            mname: self.soa_mname,
            rname: self.soa_rname,
            refresh: self.soa_refresh,
            retry: self.soa_retry,
            expire: self.soa_expire,
            minimum: self.soa_minimum,
        };
        let mut config = Config::build(etcd, &path, &zones, &soa, bounds, self.log_queries || file.log_queries)?;
        config.coredns_metrics = !self.no_coredns_metrics;
        config.transfer = transfer_config(
            self.transfer_allow,
            self.transfer_tsig_key_file.as_deref(),
            self.transfer_notify,
            self.transfer_ixfr_history,
            &file.transfer_to,
        )?;
        // Read here, before any socket is bound, so a broken file is a startup error like a broken Corefile.
        if let Some(path) = &self.web_config_file {
            config.web = Some(Arc::new(WebSource::load(path).map_err(ConfigError::WebConfig)?));
        }
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let dns_listen_address =
            self.dns_listen_address.unwrap_or_else(|| SocketAddr::new(any, file.port.unwrap_or(53)));
        let mut web_listen_addresses = self.web_listen_address;
        if web_listen_addresses.is_empty() {
            web_listen_addresses.extend([file.metrics, file.health, file.ready].into_iter().flatten());
            web_listen_addresses.dedup();
        }
        if web_listen_addresses.is_empty() {
            web_listen_addresses.push(SocketAddr::new(any, 9153));
        }
        let log_level = self.log_level.unwrap_or(if file.debug { tracing::Level::DEBUG } else { tracing::Level::INFO });
        let web_config_file = self.web_config_file;
        Ok(Settings { config, dns_listen_address, web_listen_addresses, log_level, web_config_file })
    }
}
