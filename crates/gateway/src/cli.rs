//! The gateway's flags, named as PushProx's proxy names them where they mean the same
//! (`--web.listen-address`, `--scrape.max-timeout`, `--scrape.default-timeout`, `--registration.timeout`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hyper::header::HeaderName;
use promsd_common::duration::parse_duration;
use promsd_common::listen::parse_listen_address;

use crate::tokens::{DEFAULT_ID_HEADER, DEFAULT_SECRET_HEADER};

/// PushProx-compatible NAT traversal behind scoped, expiring service tokens.
#[derive(Debug, Clone, Parser)]
#[command(name = "promsd-gateway", version, long_version = promsd_buildinfo::LONG_VERSION)]
pub struct Cli {
    /// Address for clients' polls and pushes, Prometheus's scrapes (proxy_url) and /metrics: IP:PORT, or
    /// :PORT for every address
    #[arg(help_heading = "Listening", long = "web.listen-address", default_value = ":8080", value_name = "ADDR", value_parser = parse_listen_address)]
    pub web_listen_address: SocketAddr,
    /// TLS, client certificates and basic auth, in exporter-toolkit's web configuration format; read at
    /// startup and again when it changes
    #[arg(help_heading = "Listening", long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Connections served at once (each polling client holds one)
    #[arg(help_heading = "Listening", long = "web.max-connections", default_value_t = 8192, value_name = "N")]
    pub web_max_connections: usize,
    /// Largest request body accepted (a push, a poll), e.g. 16MB; larger ones get 413
    #[arg(help_heading = "Listening", long = "web.max-body-size", default_value = "16MB", value_parser = parse_size, value_name = "SIZE")]
    pub web_max_body_size: usize,
    /// Service tokens (YAML): id, secret_sha256, expires, clients, scrape, tenant; read again when it
    /// changes. Without it the gateway is open, as PushProx is
    #[arg(help_heading = "Tokens", long = "token.file", value_name = "FILE", group = "tokens")]
    pub token_file: Option<PathBuf>,
    /// The tokens from this etcd key instead (the same YAML as the file; with the etcd flags below),
    /// followed with a watch; until it is read no token is valid
    #[arg(help_heading = "Tokens", long = "token.etcd-key", value_name = "KEY", group = "tokens")]
    pub token_etcd_key: Option<String>,
    /// Header carrying a token's id
    #[arg(help_heading = "Tokens", long = "token.id-header", default_value = DEFAULT_ID_HEADER, value_name = "NAME")]
    pub token_id_header: HeaderName,
    /// Header carrying a token's secret
    #[arg(help_heading = "Tokens", long = "token.secret-header", default_value = DEFAULT_SECRET_HEADER, value_name = "NAME")]
    pub token_secret_header: HeaderName,
    /// Scrapes (and /clients) need a token whose `scrape` scope names the client: the two headers, or
    /// proxy_url credentials (http://ID:SECRET@gateway:8080)
    #[arg(help_heading = "Scrapes", long = "scrape.require-token", requires = "tokens")]
    pub scrape_require_token: bool,
    /// Any scrape with a longer timeout is clamped to this
    #[arg(help_heading = "Scrapes", long = "scrape.max-timeout", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub scrape_max_timeout: Duration,
    /// The timeout of a scrape without X-Prometheus-Scrape-Timeout-Seconds
    #[arg(help_heading = "Scrapes", long = "scrape.default-timeout", default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub scrape_default_timeout: Duration,
    /// How long a client stays registered after its last poll (a poll is held at most this long)
    #[arg(help_heading = "Clients", long = "registration.timeout", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub registration_timeout: Duration,
    /// Clients registered at once, at most
    #[arg(help_heading = "Clients", long = "registration.max-clients", default_value_t = 10_000, value_name = "N")]
    pub registration_max_clients: usize,
    /// Forward remote_write requests (`POST /api/v1/write`) to this URL, e.g. a central Prometheus's
    /// http://prometheus:9090/api/v1/write (started with --web.enable-remote-write-receiver)
    #[arg(help_heading = "remote_write", long = "remote-write.upstream", value_name = "URL")]
    pub remote_write_upstream: Option<String>,
    /// Forward Loki pushes (`POST /loki/api/v1/push`, JSON or protobuf) to this URL, e.g.
    /// http://loki:3100/loki/api/v1/push; X-Scope-OrgID is set to the token's tenant
    #[arg(help_heading = "remote_write", long = "loki.upstream", value_name = "URL")]
    pub loki_upstream: Option<String>,
    /// The label each written series (and Loki stream) must carry with its token's tenant: added where
    /// missing, and a write with another value is refused (403)
    #[arg(
        help_heading = "remote_write",
        long = "remote-write.tenant-label",
        default_value = "tenant",
        value_name = "NAME"
    )]
    pub remote_write_tenant_label: String,
    /// Register every module of every announcing client in etcd as a SkyDNS record in this zone:
    /// <fqdn>.<module>.<service>.<zone> (dnsd then answers and lists them)
    #[arg(help_heading = "etcd registry", long = "registry.zone", value_name = "ZONE")]
    pub registry_zone: Option<String>,
    /// The label below the zone the clients are registered under
    #[arg(help_heading = "etcd registry", long = "registry.service", default_value = "nat", value_name = "NAME")]
    pub registry_service: String,
    /// etcd key prefix of all SkyDNS records (dnsd's and CoreDNS's `path`)
    #[arg(help_heading = "etcd registry", long = "registry.path", default_value = "/skydns", value_name = "PATH")]
    pub registry_path: String,
    /// The records' lease: a gateway that dies takes them with it within this long
    #[arg(help_heading = "etcd registry", long = "registry.lease-ttl", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub registry_lease_ttl: Duration,
    #[command(flatten, next_help_heading = "etcd")]
    pub etcd: promsd_common::EtcdArgs,
    /// Only log messages with the given severity or above: debug, info, warn, error
    #[arg(help_heading = "Logging", long = "log.level", default_value = "info", value_name = "LEVEL")]
    pub log_level: tracing::Level,
    /// Output format of log lines: logfmt or json
    #[arg(help_heading = "Logging", long = "log.format", value_enum, default_value_t, value_name = "FORMAT")]
    pub log_format: promsd_log::LogFormat,
}

/// A size as Prometheus's flags write them: `512`, `64KB`, `16MB`, `1GB` (powers of 1024, as Prometheus's
/// `--storage.tsdb.retention.size`), also `KiB`, `MiB`, `GiB`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| format!("{text:?} is not a size such as 16MB"))?;
    let factor: usize = match unit {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        _ => return Err(format!("{text:?}: the unit must be B, KB, MB or GB")),
    };
    number.checked_mul(factor).filter(|n| *n > 0).ok_or_else(|| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_prometheus_writes_them() {
        assert_eq!(parse_size("16MB"), Ok(16 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in ["", "MB", "16 MB", "16mb", "0", "-1", "99999999999999999999GB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_pushproxs() {
        let cli = Cli::try_parse_from(["promsd-gateway"]).expect("parses");
        assert_eq!(cli.web_listen_address.port(), 8080);
        assert_eq!(cli.scrape_max_timeout, Duration::from_secs(300));
        assert_eq!(cli.scrape_default_timeout, Duration::from_secs(15));
        assert_eq!(cli.registration_timeout, Duration::from_secs(300));
        assert_eq!(cli.token_id_header, "cf-access-client-id");
        assert!(Cli::try_parse_from(["promsd-gateway", "--scrape.require-token"]).is_err(), "needs a token file");
    }
}
