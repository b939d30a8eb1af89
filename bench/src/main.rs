//! Helpers for the scripts in bench/: they need records in etcd fast, the same records as a zone file for
//! Knot DNS, a dnsperf query file, and a precise clock around `registrar set` -> answer in dnsd.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use promsd_common::{KeyPrefix, Service};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write SERVICES x INSTANCES node records (plus two name servers) under /skydns for ZONE.
    Load {
        #[arg(long)]
        endpoints: String,
        #[arg(long, default_value = "prom.local")]
        zone: String,
        #[arg(long)]
        services: usize,
        #[arg(long)]
        instances: usize,
    },
    /// Print a zone file with the records dnsd answers for what etcd holds (SRV per service with its
    /// normalised weights, A per instance, NS and glue, SOA).
    Zonefile {
        #[arg(long)]
        endpoints: String,
        #[arg(long, default_value = "prom.local")]
        zone: String,
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Load { endpoints, zone, services, instances } => load(&endpoints, &zone, services, instances),
        Cmd::Zonefile { endpoints, zone } => zonefile(&endpoints, &zone),
        Cmd::Queries { zone, services, instances } => {
            queries(&zone, services, instances);
            Ok(())
        }
        Cmd::Propagation { registrar, endpoints, dns, count } => propagation(&registrar, &endpoints, dns, count),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn load(endpoints: &str, zone: &str, services: usize, instances: usize) -> anyhow::Result<()> {
    let prefix = KeyPrefix::new("/skydns");
    let zone_key = prefix.key_for_name(zone);
    let mut ops = vec![
        (format!("{zone_key}/dns/ns/ns1"), r#"{"host":"127.0.0.1"}"#.to_string()),
        (format!("{zone_key}/dns/ns/ns2"), r#"{"host":"127.0.0.2"}"#.to_string()),
    ];
    for s in 0..services {
        for i in 0..instances {
            let host = format!("10.{}.{}.{}", s / 250, s % 250, i % 250 + 1);
            let service = Service { host, port: 9100, ..Service::default() };
            ops.push((format!("{zone_key}/svc{s:04}/host{i:04}"), service.to_json()));
        }
    }
    runtime()?.block_on(async {
        let mut client = Client::connect(endpoints.split(',').collect::<Vec<_>>(), None).await?;
        // etcd allows 128 operations per transaction by default.
        for chunk in ops.chunks(128) {
            let txn = Txn::new()
                .and_then(chunk.iter().map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None)).collect::<Vec<_>>());
            client.txn(txn).await?;
        }
        anyhow::Ok(())
    })?;
    eprintln!("loaded {} keys", ops.len());
    Ok(())
}

fn zonefile(endpoints: &str, zone: &str) -> anyhow::Result<()> {
    let prefix = KeyPrefix::new("/skydns");
    let zone_key = prefix.key_for_name(zone);
    let kvs = runtime()?.block_on(async {
        let mut client = Client::connect(endpoints.split(',').collect::<Vec<_>>(), None).await?;
        let response = client.get(format!("{zone_key}/"), Some(GetOptions::new().with_prefix())).await?;
        anyhow::Ok(
            response.kvs().iter().map(|kv| (kv.key_str().map(str::to_string), kv.value().to_vec())).collect::<Vec<_>>(),
        )
    })?;
    let mut services: BTreeMap<String, Vec<(String, Service)>> = BTreeMap::new();
    let mut ns = Vec::new();
    for (key, value) in kvs {
        let key = key?;
        let Ok(service) = Service::parse(&value) else { continue };
        let name = prefix.name_for_key(&key).context("key below the prefix")?;
        let parent = name.split_once('.').map(|(_, p)| p.to_string()).unwrap_or_default();
        if parent == format!("ns.dns.{zone}") {
            ns.push((name, service));
        } else {
            services.entry(parent).or_default().push((name, service));
        }
    }
    println!("$ORIGIN {zone}.\n$TTL 300");
    println!("@ 300 IN SOA ns.dns.{zone}. hostmaster.{zone}. 1 7200 1800 86400 30");
    for (name, service) in &ns {
        println!("@ 300 IN NS {name}.\n{name}. 300 IN A {}", service.host);
    }
    for (service, instances) in &services {
        let total: i64 = instances.iter().map(|(_, s)| if s.weight == 0 { 100 } else { s.weight }).sum();
        for (name, s) in instances {
            let weight =
                ((100.0 / total as f64) * if s.weight == 0 { 100.0 } else { s.weight as f64 }).floor().max(1.0);
            println!("{service}. 300 IN SRV 10 {weight} {} {name}.", s.port);
            println!("{service}. 300 IN A {}", s.host);
            println!("{name}. 300 IN A {}", s.host);
        }
    }
    Ok(())
}

fn queries(zone: &str, services: usize, instances: usize) {
    // 40% SRV of a service, 30% A of an instance, 20% names that do not exist, 10% NS of the zone.
    for n in 0..10_000usize {
        let s = (n * 7919) % services;
        let i = (n * 104_729) % instances;
        match n % 10 {
            0..=3 => println!("svc{s:04}.{zone} SRV"),
            4..=6 => println!("host{i:04}.svc{s:04}.{zone} A"),
            7 | 8 => println!("missing{n}.{zone} A"),
            _ => println!("{zone} NS"),
        }
    }
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
            if answered(&socket, dns, &name)? {
                break;
            }
            if written.elapsed() > Duration::from_secs(5) {
                bail!("{name} not answered 5s after registrar set");
            }
        }
        total.push(started.elapsed());
        after_write.push(written.elapsed());
    }
    let report = |what: &str, mut values: Vec<Duration>| {
        values.sort();
        let at = |q: f64| values[((values.len() as f64 * q) as usize).min(values.len() - 1)].as_secs_f64() * 1e3;
        println!(
            "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} updates)",
            at(0.5),
            at(0.99),
            at(1.0),
            values.len()
        );
    };
    report("registrar set -> answered by dnsd", total);
    report("write committed (registrar exited) -> answered by dnsd", after_write);
    Ok(())
}

fn answered(socket: &UdpSocket, dns: SocketAddr, name: &Name) -> anyhow::Result<bool> {
    let mut query = Message::query();
    query.add_query(Query::query(name.clone(), RecordType::A));
    socket.send_to(&query.to_vec()?, dns)?;
    let mut buf = [0u8; 1500];
    let Ok(len) = socket.recv(&mut buf) else { return Ok(false) };
    let reply = Message::from_vec(&buf[..len])?;
    Ok(reply.metadata.id == query.metadata.id && !reply.answers.is_empty())
}
