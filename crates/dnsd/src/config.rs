//! dnsd's flags, parsed in one place and turned into a [`Config`] that the library runs with.

use std::net::SocketAddr;

use clap::Parser;
use promsd_common::name::{NameError, validate_path};
use promsd_common::{EtcdArgs, KeyPrefix};

use crate::zone::{Catalog, Zone};

/// Authoritative DNS for the SkyDNS records in etcd, answered from memory.
#[derive(Debug, Parser)]
#[command(name = "dnsd", version)]
pub struct Cli {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// etcd key prefix the records live under (CoreDNS's `path`)
    #[arg(long, default_value = "/skydns", value_name = "PATH")]
    pub path: String,
    /// Zone to answer for authoritatively; repeat or separate with commas for several
    #[arg(long = "zone", required = true, value_delimiter = ',', value_name = "ZONE")]
    pub zones: Vec<String>,
    /// Address for DNS over UDP and TCP
    #[arg(long = "dns.listen-address", default_value = "0.0.0.0:53", value_name = "ADDR")]
    pub dns_listen_address: SocketAddr,
    /// Address for /-/healthy and /-/ready
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9153", value_name = "ADDR")]
    pub web_listen_address: SocketAddr,
    /// Only log messages with the given severity or above: debug, info, warn, error
    #[arg(long = "log.level", default_value = "info", value_name = "LEVEL")]
    pub log_level: tracing::Level,
}

/// What [`crate::run`] needs: how to reach etcd and what to answer for.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd: EtcdArgs,
    pub catalog: Catalog,
}

impl Config {
    pub fn new(etcd: EtcdArgs, path: &str, zones: &[String]) -> Result<Self, NameError> {
        validate_path(path)?;
        let zones = zones.iter().map(|z| Zone::new(z)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { etcd, catalog: Catalog::new(zones, KeyPrefix::new(path)) })
    }
}
