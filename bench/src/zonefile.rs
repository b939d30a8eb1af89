//! What Knot DNS and dnsperf need: the records etcd holds as a zone file, and a query file.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use etcd_client::{Client, GetOptions};
use promsd_common::{KeyPrefix, Service};

/// Every key and value below `prefix`, read `page` keys at a time, every page at the first page's revision
/// (one response is limited to 4 MiB by gRPC). Returns the pairs and that revision.
pub async fn read_prefix(
    client: &mut Client,
    prefix: &str,
    page: i64,
) -> anyhow::Result<(Vec<(Vec<u8>, Vec<u8>)>, i64)> {
    let end = promsd_common::etcd::range_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut kvs = Vec::new();
    for _ in 0..1_000_000 {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(page.max(1));
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let mut response = client.get(from.clone(), Some(options)).await.context("reading the records from etcd")?;
        if revision == 0 {
            revision = response.header().map(|h| h.revision()).unwrap_or_default();
        }
        let more = response.more();
        let page_kvs = response.take_kvs();
        let Some(last) = page_kvs.last() else { break };
        from = last.key().to_vec();
        from.push(0); // the next key after the last one read
        kvs.extend(page_kvs.into_iter().map(|kv| {
            let (key, value) = kv.into_key_value();
            (key, value)
        }));
        if !more {
            break;
        }
    }
    Ok((kvs, revision))
}

pub fn zonefile(endpoints: &[String], zone: &str, page: i64) -> anyhow::Result<()> {
    let prefix = KeyPrefix::new("/skydns");
    let zone_key = prefix.key_for_name(zone);
    let (kvs, _) = crate::runtime()?.block_on(async {
        let mut client = crate::load::connect(endpoints).await?;
        read_prefix(&mut client, &format!("{zone_key}/"), page).await
    })?;
    let mut services: BTreeMap<String, Vec<(String, Service)>> = BTreeMap::new();
    let mut ns = Vec::new();
    for (key, value) in kvs {
        let key = String::from_utf8(key).context("a key that is not UTF-8")?;
        let Ok(service) = Service::parse(&value) else { continue };
        let name = prefix.name_for_key(&key).context("key below the prefix")?;
        let parent = name.split_once('.').map(|(_, p)| p.to_string()).unwrap_or_default();
        if parent == format!("ns.dns.{zone}") {
            ns.push((name, service));
        } else {
            services.entry(parent).or_default().push((name, service));
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "$ORIGIN {zone}.\n$TTL 300")?;
    writeln!(out, "@ 300 IN SOA ns.dns.{zone}. hostmaster.{zone}. 1 7200 1800 86400 30")?;
    for (name, service) in &ns {
        writeln!(out, "@ 300 IN NS {name}.\n{name}. 300 IN A {}", service.host)?;
    }
    for (service, instances) in &services {
        let total: i64 = instances.iter().map(|(_, s)| if s.weight == 0 { 100 } else { s.weight }).sum();
        for (name, s) in instances {
            let weight =
                ((100.0 / total as f64) * if s.weight == 0 { 100.0 } else { s.weight as f64 }).floor().max(1.0);
            writeln!(out, "{service}. 300 IN SRV 10 {weight} {} {name}.", s.port)?;
            writeln!(out, "{service}. 300 IN A {}", s.host)?;
            writeln!(out, "{name}. 300 IN A {}", s.host)?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn queries(zone: &str, services: usize, instances: usize) {
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
