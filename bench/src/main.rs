//! Helpers for the scripts in bench/: they need records in etcd fast, the same records as a zone file for
//! Knot DNS, a dnsperf query file, steady churn in etcd, a precise clock around `registrar set` -> answer in
//! dnsd, and the scale run (`scale`) that drives one dnsd against a large view and prints its figures.

mod dns;
mod gateway;
mod layout;
mod load;
mod proxy;
mod report;
mod scale;
mod zonefile;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Parser, Subcommand};
use hickory_proto::rr::{Name, RecordType};

use crate::layout::Layout;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The etcd and the `load` layout a subcommand works on.
#[derive(clap::Args)]
pub struct Target {
    #[arg(long)]
    pub endpoints: String,
    #[arg(long, default_value = "prom.local")]
    pub zone: String,
    #[arg(long)]
    pub services: usize,
    #[arg(long)]
    pub instances: usize,
}

impl Target {
    pub fn layout(&self) -> Layout {
        Layout::new(&self.zone, self.services, self.instances)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Write SERVICES x INSTANCES node records (plus two name servers) under /skydns for ZONE, many
    /// transactions at once; prints the number of keys and the seconds it took.
    Load {
        #[command(flatten)]
        target: Target,
        /// Transactions in flight at once
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Puts per transaction: at most etcd's --max-txn-ops (128 unless raised)
        #[arg(long, default_value_t = 128)]
        txn_ops: usize,
        /// Write the values as the agent does for a module: with two labels, scheme, path and module
        #[arg(long)]
        labelled: bool,
    },
    /// Print a zone file with the records dnsd answers for what etcd holds (SRV per service with its
    /// normalised weights, A per instance, NS and glue, SOA). Reads in pages at one revision.
    Zonefile {
        #[arg(long)]
        endpoints: String,
        #[arg(long, default_value = "prom.local")]
        zone: String,
        /// Keys per range request: a response must stay under gRPC's 4 MiB, and etcd 3.4 scans the rest of
        /// the range for every page, so fewer, larger pages read a large prefix much faster
        #[arg(long, default_value_t = 20_000)]
        page: i64,
    },
    /// Print a dnsperf query file: SRV of services, A of instances, NXDOMAIN names and NS of the zone.
    Queries {
        #[arg(long, default_value = "prom.local")]
        zone: String,
        #[arg(long)]
        services: usize,
        #[arg(long)]
        instances: usize,
    },
    /// Put RATE changed values per second to random existing keys of the `load` layout for DURATION seconds
    /// (the port changes, the host stays); prints the puts done and the rate achieved.
    Churn {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long)]
        duration: f64,
    },
    /// Time COUNT `registrar set` runs until each new record is answered by dnsd; print p50/p99.
    Propagation {
        #[arg(long)]
        registrar: String,
        #[arg(long)]
        endpoints: String,
        #[arg(long)]
        dns: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Run dnsd against etcd holding the `load` layout of SERVICES x INSTANCES keys and measure its first
    /// load, propagation alone and under churn, a full resync after compaction, and a very large answer.
    Scale(scale::Args),
    /// Print the medians (min-max) of several `scale --figures` files, with the verdicts on the medians.
    Summary { files: Vec<std::path::PathBuf> },
    /// CLIENTS PushProx clients polling one gateway; scrape latency through it vs direct, and its memory
    /// per client.
    GatewayLoad(gateway::GatewayLoad),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Load { target, concurrency, txn_ops, labelled } => {
            let (layout, endpoints) = (target.layout(), target.endpoints);
            let endpoints = split(&endpoints);
            let load = load::load_layout(&endpoints, &layout, concurrency, txn_ops, labelled);
            let (keys, took) = runtime()?.block_on(load)?;
            println!(
                "loaded {keys} keys in {:.2} s ({:.0} keys/s)",
                took.as_secs_f64(),
                keys as f64 / took.as_secs_f64()
            );
            Ok(())
        }
        Cmd::Zonefile { endpoints, zone, page } => zonefile::zonefile(&split(&endpoints), &zone, page),
        Cmd::Queries { zone, services, instances } => {
            zonefile::queries(&zone, services, instances);
            Ok(())
        }
        Cmd::Churn { target, rate, duration } => {
            let (layout, endpoints) = (target.layout(), target.endpoints);
            let endpoints = split(&endpoints);
            let stats = multi_thread_runtime()?.block_on(load::churn_for(
                &endpoints,
                layout,
                rate,
                Duration::from_secs_f64(duration),
            ))?;
            println!("{}", stats.describe(rate));
            Ok(())
        }
        Cmd::Propagation { registrar, endpoints, dns, count } => propagation(&registrar, &endpoints, dns, count),
        Cmd::Scale(args) => scale::run(args),
        Cmd::Summary { files } => report::summary(&files),
        Cmd::GatewayLoad(args) => multi_thread_runtime()?.block_on(gateway::run(args)),
    }
}

fn split(endpoints: &str) -> Vec<String> {
    endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn multi_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// A small, fast, seedable generator (splitmix64): the benchmarks need spread, not cryptography.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// p50, p99 and max of some durations, in milliseconds (None for none).
pub fn percentiles(values: &[Duration]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3;
    Some((at(0.5), at(0.99), at(1.0)))
}

fn propagation(registrar: &str, endpoints: &str, dns: SocketAddr, count: usize) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let (mut total, mut after_write) = (Vec::new(), Vec::new());
    for n in 0..count {
        let instance = format!("p{n}");
        let started = Instant::now();
        let out = Command::new(registrar)
            .args([
                "set",
                "--endpoints",
                endpoints,
                "--zone",
                "prom.local",
                "--service",
                "prop",
                "--instance",
                &instance,
            ])
            .args(["--address", "10.99.0.1", "--port", "9100", "--log.level", "error"])
            .output()?;
        if !out.status.success() {
            bail!("registrar set failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let written = Instant::now();
        let name = Name::from_ascii(format!("{instance}.prop.prom.local."))?;
        loop {
            let answered = dns::query_udp(&socket, dns, &name, RecordType::A)?.is_some_and(|m| !m.answers.is_empty());
            if answered {
                break;
            }
            if written.elapsed() > Duration::from_secs(5) {
                bail!("{name} not answered 5s after registrar set");
            }
        }
        total.push(started.elapsed());
        after_write.push(written.elapsed());
    }
    let report = |what: &str, values: Vec<Duration>| {
        if let Some((p50, p99, max)) = percentiles(&values) {
            println!("{what}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} updates)", values.len());
        }
    };
    report("registrar set -> answered by dnsd", total);
    report("write committed (registrar exited) -> answered by dnsd", after_write);
    Ok(())
}
