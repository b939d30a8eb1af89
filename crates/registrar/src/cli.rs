//! registrar's flags. Names are a contract: systemd units and scripts outside this repository call them.
//! Besides the `ETCDCTL_*` variables, the variables of the seed's `register.sh` are read, so its unit's
//! `Environment=` lines work unchanged with plain `registrar set` / `registrar rm`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use promsd_common::EtcdArgs;
use promsd_common::duration::parse_duration;
use promsd_common::listen::parse_listen_address;
use promsd_registration::{Identity, Location, RecordValue, RegistrationError};

/// Registers a host's exporters in etcd as SkyDNS records, for dnsd (or CoreDNS) and Prometheus dns_sd.
#[derive(Debug, Parser)]
#[command(name = "registrar", version, long_version = promsd_buildinfo::LONG_VERSION)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Only log messages with the given severity or above: debug, info, warn, error
    #[arg(long = "log.level", default_value = "info", global = true, value_name = "LEVEL")]
    pub log_level: tracing::Level,
    /// Output format of log lines: logfmt or json
    #[arg(long = "log.format", value_enum, default_value_t, global = true, value_name = "FORMAT")]
    pub log_format: promsd_log::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the record for one exporter instance
    Set(SetArgs),
    /// Delete the record for one exporter instance (a missing record is not an error)
    Rm(RmArgs),
    /// List the registrations under the base path
    Ls(LsArgs),
    /// Run an exporter: register once it accepts connections, deregister when it exits
    Run(RunArgs),
    /// Serve all of this host's exporters behind one port and register each of them
    Agent(AgentArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The agent's configuration (YAML): modules, etcd, zone, the address to register; an exporter_exporter
    /// file works as it is (`--config.file` is an alias)
    #[arg(long, alias = "config.file", value_name = "FILE")]
    pub config: std::path::PathBuf,
    /// Address the proxy listens on: IP:PORT, or :PORT for every address; repeatable, the first one's port is
    /// the one registered [default: 0.0.0.0:9998, or none with --proxy-url]
    #[arg(long = "web.listen-address", value_name = "ADDR", value_parser = parse_listen_address)]
    pub web_listen_address: Vec<std::net::SocketAddr>,
    /// Directories with one module per file (NAME.yml is module NAME); repeatable
    #[arg(long = "config.dirs", value_name = "DIR")]
    pub config_dirs: Vec<std::path::PathBuf>,
    /// TLS, client certificates and basic auth, in exporter-toolkit's web configuration format
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<std::path::PathBuf>,
    /// Poll this gateway (promsd-gateway or a PushProx proxy) for scrapes, e.g. https://gw.example.org:8080/;
    /// the agent then needs no inbound port. HTTPS_PROXY (HTTP_PROXY for http) and NO_PROXY apply
    #[arg(help_heading = "Gateway", long = "proxy-url", value_name = "URL")]
    pub proxy_url: Option<String>,
    /// The name this host polls as and is scraped by [default: the host's FQDN]
    #[arg(help_heading = "Gateway", long = "proxy.fqdn", value_name = "NAME")]
    pub proxy_fqdn: Option<String>,
    /// Service token id, sent in CF-Access-Client-Id
    #[arg(help_heading = "Gateway", long = "proxy.token-id", value_name = "ID", requires = "proxy_token_secret_file")]
    pub proxy_token_id: Option<String>,
    /// File holding the token's secret, sent in CF-Access-Client-Secret
    #[arg(
        help_heading = "Gateway",
        long = "proxy.token-secret-file",
        value_name = "FILE",
        requires = "proxy_token_id"
    )]
    pub proxy_token_secret_file: Option<std::path::PathBuf>,
    /// CA certificates to verify an https gateway with [default: the system's]
    #[arg(help_heading = "Gateway", long = "proxy.cacert", value_name = "FILE")]
    pub proxy_cacert: Option<std::path::PathBuf>,
    /// Client certificate for the gateway
    #[arg(help_heading = "Gateway", long = "proxy.cert", value_name = "FILE", requires = "proxy_key")]
    pub proxy_cert: Option<std::path::PathBuf>,
    /// Key of the client certificate
    #[arg(help_heading = "Gateway", long = "proxy.key", value_name = "FILE", requires = "proxy_cert")]
    pub proxy_key: Option<std::path::PathBuf>,
}

impl AgentArgs {
    pub fn gateway_flags(&self) -> promsd_agent::gateway::GatewayFlags {
        promsd_agent::gateway::GatewayFlags {
            url: self.proxy_url.clone(),
            fqdn: self.proxy_fqdn.clone(),
            token_id: self.proxy_token_id.clone(),
            token_secret_file: self.proxy_token_secret_file.clone(),
            cacert: self.proxy_cacert.clone(),
            cert: self.proxy_cert.clone(),
            key: self.proxy_key.clone(),
        }
    }

    /// `--web.listen-address`, or its default when the agent does not poll a gateway instead. A gateway set
    /// only in the file is known after it is read, so the caller passes it.
    pub fn listen_addresses(&self, polls_a_gateway: bool) -> Vec<std::net::SocketAddr> {
        if !self.web_listen_address.is_empty() || polls_a_gateway {
            return self.web_listen_address.clone();
        }
        vec![std::net::SocketAddr::from(([0, 0, 0, 0], 9998))]
    }
}

/// Where records live: `--base-path`, or `--path` plus `--zone`.
#[derive(Debug, Clone, Args)]
pub struct LocationArgs {
    /// Zone the records are served in, e.g. prom.local
    #[arg(long, env = "PROMSD_ZONE", value_name = "ZONE")]
    pub zone: Option<String>,
    /// etcd key prefix of all SkyDNS records (dnsd's and CoreDNS's `path`)
    #[arg(long, default_value = "/skydns", value_name = "PATH")]
    pub path: String,
    /// Key prefix of the zone, e.g. /skydns/local/prom; replaces --zone
    #[arg(long, env = "ETCD_BASE_PATH", value_name = "KEY")]
    pub base_path: Option<String>,
    #[command(flatten, next_help_heading = "etcd")]
    pub etcd: EtcdArgs,
    /// Give up on an unreachable etcd after this long
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Which record: the service (below the zone) and the instance (below the service).
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// Service name below the zone, e.g. node, or node.a for a shard
    #[arg(long, env = "EXPORTER_TYPE", value_name = "NAME")]
    pub service: String,
    /// Instance name below the service [default: the short host name]
    #[arg(long, env = "EXPORTER_INSTANCE", value_name = "NAME")]
    pub instance: Option<String>,
}

/// `--address`, checked as the record will be (a mistyped IP such as `999.1.1.1` is refused, not taken for a
/// host name), so a bad value is a usage error naming the flag.
fn parse_address(text: &str) -> Result<String, NotAnAddress> {
    let text = text.trim();
    promsd_registration::validate_address(text).map_err(|_| NotAnAddress)?;
    Ok(text.to_string())
}

#[derive(Debug, thiserror::Error)]
#[error("expected an IP address or a host name")]
pub struct NotAnAddress;

/// The record's value.
#[derive(Debug, Clone, Args)]
pub struct ValueArgs {
    /// Address Prometheus scrapes: an IP address or a host name
    #[arg(long, env = "EXPORTER_ADDRESS", value_name = "HOST", value_parser = parse_address)]
    pub address: String,
    /// Port the exporter listens on
    #[arg(long, env = "EXPORTER_PORT", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// SRV priority (lower is preferred) [SkyDNS default: 10]
    #[arg(long, value_name = "N")]
    pub priority: Option<u16>,
    /// SRV weight within its priority [SkyDNS default: 100]
    #[arg(long, value_name = "N")]
    pub weight: Option<u16>,
    /// DNS TTL of the record in seconds [SkyDNS default: 300]
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u32>,
    /// TXT data for the record
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
    /// Label of the target in dnsd's http_sd (a Prometheus label name, not starting with __); repeatable
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = promsd_common::labels::parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Scheme Prometheus scrapes the target with, through http_sd (__scheme__) [default: the job's]
    #[arg(long, value_name = "SCHEME", value_parser = ["http", "https"])]
    pub scheme: Option<String>,
    /// Path Prometheus scrapes, through http_sd (__metrics_path__) [default: the job's]
    #[arg(long = "metrics-path", value_name = "PATH", value_parser = parse_metrics_path)]
    pub metrics_path: Option<String>,
}

fn parse_metrics_path(text: &str) -> Result<String, promsd_common::LabelError> {
    promsd_common::labels::validate_metrics_path(text)?;
    Ok(text.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    #[command(flatten, next_help_heading = "Record")]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub value: ValueArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    #[command(flatten, next_help_heading = "Record")]
    pub identity: IdentityArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    /// Only this service
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub set: SetArgs,
    /// Bind the record to an etcd lease of this TTL, kept alive while the exporter runs, so the record of a
    /// host that dies without deregistering disappears after it; without it the record stays until `rm`
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub lease_ttl: Option<Duration>,
    /// Serve /metrics (registrations, etcd errors, lease state) and /-/healthy on this address (IP:PORT, or
    /// :PORT for every address); repeatable
    #[arg(long = "web.listen-address", value_name = "ADDR", value_parser = parse_listen_address)]
    pub web_listen_address: Vec<std::net::SocketAddr>,
    /// TLS, client certificates and basic auth for that address, in exporter-toolkit's web configuration format
    #[arg(long = "web.config.file", value_name = "FILE", requires = "web_listen_address")]
    pub web_config_file: Option<std::path::PathBuf>,
    /// The exporter and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl LocationArgs {
    pub fn location(&self) -> Result<Location, RegistrationError> {
        Location::new(&self.path, self.base_path.as_deref(), self.zone.as_deref())
    }

    /// The seed's `ETCD_ENDPOINT` names a discovery domain (a URL there is taken as an endpoint). It applies
    /// only when neither `--endpoints` nor `--discovery-srv` (nor their ETCDCTL_ variables) is set.
    pub fn apply_seed_endpoint(&mut self, etcd_endpoint: Option<String>) {
        let Some(value) = etcd_endpoint.filter(|v| !v.trim().is_empty()) else { return };
        if !self.etcd.endpoints.is_empty() || self.etcd.discovery_srv.is_some() {
            return;
        }
        if value.contains("://") {
            self.etcd.endpoints = value.split(',').map(str::to_string).collect();
        } else {
            self.etcd.discovery_srv = Some(value);
        }
    }
}

impl IdentityArgs {
    pub fn identity(&self) -> Identity {
        Identity { service: self.service.clone(), instance: self.instance.clone() }
    }
}

impl ValueArgs {
    pub fn value(&self) -> RecordValue {
        RecordValue {
            address: self.address.clone(),
            port: self.port,
            priority: self.priority,
            weight: self.weight,
            ttl: self.ttl,
            text: self.text.clone(),
            labels: self.labels.clone(),
            scheme: self.scheme.clone(),
            metrics_path: self.metrics_path.clone(),
        }
    }
}

impl Command {
    /// The etcd location flags, for commands that take them from the command line.
    pub fn location_mut(&mut self) -> Option<&mut LocationArgs> {
        Some(match self {
            Command::Set(args) => &mut args.location,
            Command::Rm(args) => &mut args.location,
            Command::Ls(args) => &mut args.location,
            Command::Run(args) => &mut args.set.location,
            Command::Agent(_) => return None,
        })
    }
}

/// The command line with exporter_exporter's one-dash flags of `registrar agent` (Go's spelling:
/// `-config.file=F`, `-web.listen-address A`) spelled with two dashes, as clap takes them: every one-dash
/// argument after `agent` (not past `--`) whose name has a dot. One the agent does not have is then refused
/// by its name (`--web.bearer.token`), not as a cluster of short flags. Everything else is left as it is.
pub fn go_style_flags(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    // The subcommand is the first argument that is neither a flag nor the value of `--log.level LEVEL`.
    let mut value_next = false;
    let mut agent = None;
    for (i, arg) in args.iter().enumerate().skip(1) {
        let arg = arg.to_string_lossy();
        if value_next {
            value_next = false;
        } else if arg == "--log.level" {
            value_next = true;
        } else if !arg.starts_with('-') {
            agent = (arg == "agent").then_some(i);
            break;
        }
    }
    let Some(agent) = agent else { return args };
    for arg in args.iter_mut().skip(agent + 1) {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        let Some(flag) = text.strip_prefix('-').filter(|f| !f.starts_with('-')) else { continue };
        if flag.split_once('=').map_or(flag, |(name, _)| name).contains('.') {
            *arg = format!("-{text}").into();
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(go_style_flags(args.iter().map(std::ffi::OsString::from)))
    }

    #[test]
    fn the_agent_takes_exporter_exporter_s_flags() {
        for args in [
            &["registrar", "agent", "-config.file=e.yml", "-web.listen-address", "127.0.0.1:9999"][..],
            &["registrar", "agent", "--config.file", "e.yml", "--web.listen-address=127.0.0.1:9999"],
            &[
                "registrar",
                "--log.level",
                "debug",
                "agent",
                "-config.file",
                "e.yml",
                "-web.listen-address=127.0.0.1:9999",
            ],
            &["registrar", "agent", "--config", "e.yml", "-web.listen-address=127.0.0.1:9999"],
        ] {
            let Command::Agent(agent) = parse(args).expect("parses").command else { panic!("agent") };
            assert_eq!(agent.config, std::path::Path::new("e.yml"), "{args:?}");
            assert_eq!(agent.web_listen_address, ["127.0.0.1:9999".parse().expect("addr")], "{args:?}");
        }
        let Command::Agent(agent) =
            parse(&["registrar", "agent", "-config.file", "e.yml", "-config.dirs", "a", "-config.dirs=b"])
                .expect("parses")
                .command
        else {
            panic!("agent")
        };
        assert_eq!(agent.config_dirs, [std::path::Path::new("a"), std::path::Path::new("b")]);
        // A flag exporter_exporter has and the agent does not is a usage error, not ignored.
        assert!(parse(&["registrar", "agent", "-config.file", "e.yml", "-web.bearer.token", "x"]).is_err());
    }

    /// Only the agent's flags: `run`'s exporter keeps its own one-dash flags.
    #[test]
    fn other_commands_and_the_exporter_s_arguments_are_untouched() {
        let args = [
            "registrar",
            "run",
            "--zone",
            "z",
            "--service",
            "s",
            "--address",
            "a",
            "--",
            "exporter",
            "-web.listen-address=:1",
        ];
        assert_eq!(go_style_flags(args.iter().map(std::ffi::OsString::from)), args.map(std::ffi::OsString::from));
        let Command::Run(run) = parse(&args).expect("parses").command else { panic!("run") };
        assert_eq!(run.command, ["exporter", "-web.listen-address=:1"]);
    }
}
