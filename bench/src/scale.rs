//! `promsd-bench scale`: one dnsd against etcd holding the `load` layout, reached through a forwarder that
//! can be cut. Measures the first load (time and memory), propagation of new keys alone and under churn, a
//! full resync after the watch's revision was compacted (with every answer checked meanwhile), and the
//! answer for a name with very many SRV targets. Prints one summary block with each figure's verdict.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use etcd_client::{Client, CompactionOptions, GetOptions, TxnOp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use crate::dns::{TcpDns, a_records, query_udp, srv_count};
use crate::layout::{Layout, PORT};
use crate::load::{self, ChurnStats};
use crate::proxy::Forwarder;
use crate::report::{Check, Report, Section};
use crate::{Rng, percentiles};

#[derive(clap::Args)]
pub struct Args {
    /// etcd holding the `load` layout (the first endpoint is the one dnsd is forwarded to)
    #[command(flatten)]
    target: crate::Target,
    /// The dnsd binary to run
    #[arg(long)]
    dnsd: PathBuf,
    /// New keys timed from put to answer, alone and again under churn
    #[arg(long, default_value_t = 1000)]
    probes: usize,
    /// Puts per second to existing keys during the second propagation round
    #[arg(long, default_value_t = 1000)]
    churn_rate: u32,
    /// SRV targets under one name for the large-answer check (0: skip it)
    #[arg(long, default_value_t = 10_000)]
    big: usize,
    /// Changed values made while dnsd is cut off, before the compaction
    #[arg(long, default_value_t = 1000)]
    resync_puts: usize,
    /// Keys deleted while dnsd is cut off (spread over the services the checker queries)
    #[arg(long, default_value_t = 100)]
    resync_deletes: usize,
    /// Seconds dnsd may take to become ready
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
    /// Seconds one propagation round may take in all (it stops early, saying so)
    #[arg(long, default_value_t = 120)]
    round_budget: u64,
    /// Where dnsd's log goes (default: a new folder under the temporary directory)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the figures as JSON here, for `promsd-bench summary` over several runs
    #[arg(long)]
    figures: Option<PathBuf>,
}

/// How long one probe may take to show up in dnsd.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A probe is queried back to back for this long after its put, then every POLL_PAUSE (plus a round trip).
const TIGHT_POLL: Duration = Duration::from_millis(5);
const POLL_PAUSE: Duration = Duration::from_micros(200);
/// How long dnsd may take to catch up with a bulk change (probe clean-up, the large service, a resync).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Services whose SRV answers the resync checker queries.
const CHECKED_SERVICES: usize = 5;

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = crate::multi_thread_runtime()?;
    let layout = args.target.layout();
    if layout.services == 0 || layout.instances < 2 {
        bail!("--services must be at least 1 and --instances at least 2");
    }
    let endpoints = crate::split(&args.target.endpoints);
    let etcd_addr = etcd_socket_addr(endpoints.first().context("no etcd endpoint")?)?;
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("promsd-bench-scale.{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let mut client = rt.block_on(load::connect(&endpoints))?;
    let in_etcd = rt.block_on(count_keys(&mut client, &format!("{}/", layout.zone_key)))?;
    let expected = layout.targets() + 2;
    if in_etcd != expected {
        bail!(
            "etcd holds {in_etcd} keys below {}/, not the {expected} of `promsd-bench load --services {} --instances {}`",
            layout.zone_key,
            layout.services,
            layout.instances
        );
    }
    let forwarder = rt.block_on(Forwarder::start(etcd_addr))?;
    let dns_port = free_dns_port()?;
    let web_port = free_tcp_port()?;
    let dns: SocketAddr = ([127, 0, 0, 1], dns_port).into();
    let web: SocketAddr = ([127, 0, 0, 1], web_port).into();
    let log = work.join("dnsd.log");
    eprintln!("==> dnsd on {dns} (web {web}), etcd {} through {}, log {}", endpoints[0], forwarder.addr, log.display());
    let mut dnsd = Dnsd::spawn(&args.dnsd, forwarder.addr, &layout.zone, dns, web, &log)?;
    let mut report = Report::new(layout.clone());

    // First load.
    let ready = dnsd.wait_ready(Duration::from_secs(args.ready_timeout))?;
    let metrics = scrape(web)?;
    let base_keys = metric(&metrics, "dnsd_view_keys")? as usize;
    let first_load = metric(&metrics, "dnsd_last_load_duration_seconds")?;
    let memory = dnsd.memory()?;
    report.keys = base_keys;
    eprintln!("==> ready after {:.2} s with {base_keys} keys; RSS {:.0} MB", ready.as_secs_f64(), memory.rss_mb);
    report.add(
        Section::new("first_load", format!("first load of {} keys", thousands(base_keys)))
            .value("start -> ready", ready.as_secs_f64(), "s", 2)
            .value("the load itself", first_load, "s", 2)
            .check(Check::lt("start -> ready", 5.0), "start -> ready < 5 s"),
    );
    report.add(
        Section::new("memory", format!("resident memory after the first load of {} keys", thousands(base_keys)))
            .value("VmRSS", memory.rss_mb, "MB", 0)
            .value("peak (VmHWM)", memory.hwm_mb, "MB", 0)
            .check(Check::lt("VmRSS", 600.0), "VmRSS < 600 MB"),
    );
    if base_keys != expected {
        bail!("dnsd holds {base_keys} keys, etcd {expected}: see {}", log.display());
    }

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64)?;
    let mut bench = Bench {
        rt: &rt,
        client,
        endpoints,
        checked: checked_services(&layout),
        layout,
        forwarder,
        dnsd,
        web,
        dns,
        rng: Rng::new(seed),
        report,
        failed: Vec::new(),
        args: &args,
        base_keys,
    };
    // The churn goes last: a dnsd that cannot keep up with it may stay behind for minutes, and the other
    // figures need a dnsd that is current.
    bench.propagation();
    bench.resync();
    bench.big();
    bench.churn();

    let memory = bench.dnsd.memory();
    bench.dnsd.stop();
    println!();
    print!("{}", bench.report.render_single());
    if let Ok(memory) = memory {
        println!("dnsd at the end: VmRSS {:.0} MB, peak {:.0} MB", memory.rss_mb, memory.hwm_mb);
    }
    if let Some(path) = &args.figures {
        std::fs::write(path, bench.report.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    if !bench.failed.is_empty() {
        bail!("the run failed:\n  {}", bench.failed.join("\n  "));
    }
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Everything the phases share.
struct Bench<'a> {
    rt: &'a tokio::runtime::Runtime,
    /// Straight to etcd (not through the forwarder).
    client: Client,
    endpoints: Vec<String>,
    layout: Layout,
    /// The services whose SRV answers the resync checker counts: probes go elsewhere.
    checked: Vec<usize>,
    forwarder: Forwarder,
    dnsd: Dnsd,
    web: SocketAddr,
    dns: SocketAddr,
    rng: Rng,
    report: Report,
    /// Why the run fails, phase by phase.
    failed: Vec<String>,
    args: &'a Args,
    /// Keys in the view after the first load.
    base_keys: usize,
}

impl Bench<'_> {
    fn fail(&mut self, what: &str, error: &anyhow::Error) {
        eprintln!("==> {what}: {error:#}");
        self.failed.push(format!("{what}: {error:#}"));
    }

    fn budget(&self) -> Duration {
        Duration::from_secs(self.args.round_budget)
    }

    fn probes(&mut self, first: usize, keys: &mut Vec<String>) -> Round {
        let (rt, dns, count, budget) = (self.rt, self.dns, self.args.probes, self.budget());
        probe_round(rt, &mut self.client, &self.layout, &self.checked, dns, first, count, budget, &mut self.rng, keys)
    }

    /// Deletes keys in etcd (in bulk).
    fn delete(&mut self, keys: Vec<String>) -> anyhow::Result<()> {
        let keys = Arc::new(keys);
        let count = keys.len();
        self.rt.block_on(load::bulk(&self.endpoints, count, 4, 128, move |n| TxnOp::delete(keys[n].as_str(), None)))?;
        Ok(())
    }

    /// Waits until dnsd's view is at etcd's current revision and holds as many keys as etcd; how long it took.
    fn settle(&mut self) -> anyhow::Result<Duration> {
        let at = self.rt.block_on(revision(&mut self.client))?;
        let keys = self.rt.block_on(count_keys(&mut self.client, &format!("{}/", self.layout.zone_key)))?;
        let took = wait_for_revision(self.web, at, CATCH_UP_TIMEOUT)?;
        wait_for_keys(self.web, keys, Duration::from_secs(5))?;
        Ok(took)
    }

    /// Propagation of new keys, one put at a time.
    fn propagation(&mut self) {
        if self.args.probes == 0 {
            return;
        }
        eprintln!("==> propagation: {} new keys, one at a time", self.args.probes);
        let mut keys = Vec::new();
        let round = self.probes(0, &mut keys);
        let p99_target = if self.base_keys < 500_000 { 3.0 } else { 5.0 };
        let section = Section::new("propagation", format!("propagation at {} keys", thousands(self.base_keys)));
        self.report.add(
            round_section(section, &round, self.args.probes, None)
                .check(Check::lt("p50", 1.0), "p50 < 1 ms")
                .check(Check::lt("p99", p99_target), &format!("p99 < {p99_target} ms")),
        );
        if let Some(e) = &round.error {
            self.failed.push(format!("propagation: {e}"));
        }
        eprintln!("==> deleting the {} probe keys", keys.len());
        if let Err(e) = self.delete(keys).and_then(|_| self.settle()) {
            self.fail("deleting the probe keys", &e);
        }
    }

    /// Propagation again while other keys churn, then how long dnsd takes to apply all the churn.
    fn churn(&mut self) {
        if self.args.probes == 0 || self.args.churn_rate == 0 {
            return;
        }
        eprintln!("==> propagation under churn of {} puts/s to existing keys", self.args.churn_rate);
        let churn_client = match self.rt.block_on(load::connect(&self.endpoints)) {
            Ok(client) => client,
            Err(e) => return self.fail("churn", &e),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let churn = self.rt.spawn(load::churn(
            churn_client,
            self.layout.clone(),
            self.args.churn_rate,
            self.budget() + Duration::from_secs(30),
            async move {
                let _ = stop_rx.await;
            },
        ));
        thread::sleep(Duration::from_millis(500)); // let the churn reach its pace
        let mut keys = Vec::new();
        let round = self.probes(self.args.probes, &mut keys);
        let _ = stop_tx.send(());
        let stats = self.rt.block_on(churn).unwrap_or_default();
        eprintln!("==> {}", stats.describe(self.args.churn_rate));
        let base = thousands(self.base_keys);
        let title = format!("propagation at {base} keys during churn of {}/s", self.args.churn_rate);
        self.report.add(
            round_section(Section::new("churn", title), &round, self.args.probes, Some(&stats))
                .check(Check::lt("p99", 5.0), "p99 < 5 ms"),
        );
        if let Some(e) = &round.error {
            self.failed.push(format!("propagation under churn: {e}"));
        }
        if stats.done == 0 {
            let e = anyhow::anyhow!("no churn put succeeded ({})", stats.first_error.clone().unwrap_or_default());
            self.fail("churn", &e);
        }
        let section = Section::new("catch_up", format!("dnsd after the churn at {base} keys"));
        match self.settle() {
            Ok(took) => {
                eprintln!("==> dnsd had applied all the churn {:.2} s after it stopped", took.as_secs_f64());
                self.report.add(section.value("churn stopped -> view current", took.as_secs_f64(), "s", 2));
            }
            Err(e) => {
                self.report.add(section.error(&format!("{e:#}")));
                self.fail("catching up after the churn", &e);
            }
        }
        if let Err(e) = self.delete(keys) {
            self.fail("deleting the probe keys", &e);
        }
    }

    /// A full resync after compaction, every answer checked meanwhile; then the deleted keys are put back.
    fn resync(&mut self) {
        if self.args.resync_puts + self.args.resync_deletes == 0 {
            return;
        }
        eprintln!("==> resync: cut dnsd off, change etcd, compact, check every answer until the resync is done");
        let expected = match plan_resync(&self.layout, &self.checked, self.args, &mut self.rng) {
            Ok(expected) => Arc::new(expected),
            Err(e) => return self.fail("resync", &e),
        };
        let result = resync(self, &expected);
        // Whatever happened: etcd back for dnsd, and the `load` layout back for what follows.
        self.forwarder.restore();
        if let Err(e) = undo_resync(self.rt, &self.endpoints, &expected).and_then(|_| self.settle()) {
            self.fail("undoing the resync's changes", &e);
        }
        let figures = match result {
            Ok(figures) => figures,
            Err(e) => {
                self.report
                    .add(Section::new("resync", "full resync after compaction".to_string()).error(&format!("{e:#}")));
                return self.fail("resync", &e);
            }
        };
        let keys = thousands(figures.keys);
        self.report.add(
            Section::new("resync", format!("full resync after compaction at {keys} keys"))
                .value("reconnect -> new data answered", figures.reconnect_to_new_data, "s", 2)
                .value("the load itself", figures.load, "s", 2)
                .value("restore -> reconnect", figures.restore_to_reconnect, "s", 2)
                .value("restore -> resync counted", figures.restore_to_counted, "s", 2)
                .check(Check::lt("reconnect -> new data answered", 5.0), "< 5 s"),
        );
        self.report.add(
            Section::new("resync_answers", format!("answers checked during the resync at {keys} keys"))
                .value("checked", figures.checked as f64, "", 0)
                .value("wrong", figures.wrong as f64, "", 0)
                .note(&format!(
                    "(SRV of {} services over TCP, A of instances over UDP; {} changed, {} deleted)",
                    self.checked.len(),
                    figures.changed,
                    figures.deleted
                ))
                .check(Check::le("wrong", 0.0), "none wrong"),
        );
        self.report.add(
            Section::new("resync_memory", format!("resident memory around the resync at {keys} keys"))
                .value("peak during it (VmHWM)", figures.hwm_mb, "MB", 0)
                .value("VmRSS after", figures.rss_mb, "MB", 0)
                .note(if figures.hwm_reset { "" } else { "(VmHWM could not be reset: lifetime peak)" }),
        );
        self.report.add(
            Section::new("resync_after", "new data answered after the resync".to_string())
                .value("wrong", figures.after_wrong as f64, "", 0)
                .value("checked", figures.after_checked as f64, "", 0)
                .check(Check::le("wrong", 0.0), "changed values new, deleted names NXDOMAIN, new SRV counts"),
        );
        if figures.wrong > 0 || figures.after_wrong > 0 {
            let (during, after) = (figures.wrong, figures.after_wrong);
            self.failed.push(format!("resync: {during} wrong answers during it, {after} after"));
        }
    }

    /// One name with very many SRV targets, over TCP; the keys are deleted again afterwards.
    fn big(&mut self) {
        if self.args.big == 0 {
            return;
        }
        eprintln!("==> {} SRV targets under huge.big.{}", self.args.big, self.layout.zone);
        let (rt, endpoints, layout, web, dns, count) =
            (self.rt, &self.endpoints, &self.layout, self.web, self.dns, self.args.big);
        match big(rt, &mut self.client, endpoints, layout, web, dns, count) {
            Ok(big) => {
                eprintln!(
                    "==> SRV huge.big.{}: {} {} answers, {} bytes, TC {}",
                    self.layout.zone, big.rcode, big.answers, big.size, big.truncated
                );
                let title =
                    format!("SRV with {} targets over TCP at {} keys", thousands(self.args.big), thousands(big.keys));
                self.report.add(
                    Section::new("big", title)
                        .text("rcode", &big.rcode)
                        .value("TC", f64::from(u8::from(big.truncated)), "", 0)
                        .value("answers", big.answers as f64, "", 0)
                        .value("additionals", big.additionals as f64, "", 0)
                        .value("size", big.size as f64, "bytes", 0)
                        .value("time", big.millis, "ms", 1)
                        .check(Check::text("rcode", "NOERROR"), "NOERROR")
                        .check(Check::ge("answers", 1.0), "answers > 0")
                        .check(Check::le("size", 65535.0), "<= 65,535 bytes"),
                );
            }
            Err(e) => {
                self.report.add(Section::new("big", "SRV with many targets".to_string()).error(&format!("{e:#}")));
                self.fail("big", &e);
            }
        }
        let prefix = format!("{}/big/huge/", self.layout.zone_key);
        let deleted = self.rt.block_on(async {
            let mut client = load::connect(&self.endpoints).await?;
            client.delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
            anyhow::Ok(())
        });
        if let Err(e) = deleted.and_then(|_| self.settle()) {
            self.fail("deleting the large service", &e);
        }
    }
}

fn etcd_socket_addr(endpoint: &str) -> anyhow::Result<SocketAddr> {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    authority
        .to_socket_addrs()
        .with_context(|| format!("etcd endpoint {endpoint}: expected http://HOST:PORT"))?
        .next()
        .with_context(|| format!("etcd endpoint {endpoint} resolves to no address"))
}

async fn count_keys(client: &mut Client, prefix: &str) -> anyhow::Result<usize> {
    let options = GetOptions::new().with_prefix().with_count_only();
    Ok(usize::try_from(client.get(prefix, Some(options)).await?.count())?)
}

async fn revision(client: &mut Client) -> anyhow::Result<i64> {
    let response = client.get("/", Some(GetOptions::new().with_keys_only().with_limit(1))).await?;
    response.header().map(|h| h.revision()).context("no header in etcd's response")
}

/// A free loopback port for both UDP and TCP.
fn free_dns_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port free for both UDP and TCP")
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The dnsd under test; killed when dropped.
struct Dnsd {
    child: Option<Child>,
    pid: u32,
    started: Instant,
    web: SocketAddr,
    log: PathBuf,
}

struct Memory {
    rss_mb: f64,
    hwm_mb: f64,
}

impl Dnsd {
    fn spawn(
        binary: &Path,
        etcd: SocketAddr,
        zone: &str,
        dns: SocketAddr,
        web: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        // setpriv (util-linux) makes the kernel kill dnsd should this process die without cleaning up.
        let mut command = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        command
            .arg("--endpoints")
            .arg(format!("http://{etcd}"))
            .args(["--zone", zone])
            .arg("--dns.listen-address")
            .arg(dns.to_string())
            .arg("--web.listen-address")
            .arg(web.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let started = Instant::now();
        let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        Ok(Self { child: Some(child), pid, started, web, log: log.to_path_buf() })
    }

    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                Some(format!("dnsd exited ({status}); its log {}:\n{}", self.log.display(), tail(&self.log)))
            }
            _ => None,
        }
    }

    /// Waits for /-/ready; returns the time from process start.
    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        while self.started.elapsed() < timeout {
            if let Some(exit) = self.exited() {
                bail!("{exit}");
            }
            if matches!(http_get(self.web, "/-/ready"), Ok((200, _))) {
                return Ok(self.started.elapsed());
            }
            thread::sleep(Duration::from_millis(5));
        }
        bail!("dnsd not ready {timeout:?} after its start; its log {}:\n{}", self.log.display(), tail(&self.log))
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).context("reading dnsd's status")?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} for dnsd"))?;
            let kb: f64 = line.split_whitespace().nth(1).context("no value")?.parse()?;
            Ok(kb * 1024.0 / 1e6)
        };
        Ok(Memory { rss_mb: field("VmRSS:")?, hwm_mb: field("VmHWM:")? })
    }

    /// Resets VmHWM to the current RSS (Linux's clear_refs "5"); false when that is not allowed.
    fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A plain HTTP/1.0 GET (no chunked bodies): status and body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn scrape(web: SocketAddr) -> anyhow::Result<String> {
    let started = Instant::now();
    let result = match http_get(web, "/metrics")? {
        (200, body) => Ok(body),
        (status, _) => bail!("/metrics answered {status}"),
    };
    LAST_SCRAPE_MICROS.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    result
}

/// How long the last scrape of /metrics took: rendering it may cost dnsd time that grows with the view.
static LAST_SCRAPE_MICROS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The pause between two scrapes while waiting for a metric: 50 ms, or four times what the last scrape
/// took, so that polling never takes more than a fifth of one of dnsd's cores.
fn between_scrapes() {
    let last = Duration::from_micros(LAST_SCRAPE_MICROS.load(Ordering::Relaxed));
    thread::sleep((last * 4).max(Duration::from_millis(50)));
}

fn metric(metrics: &str, name: &str) -> anyhow::Result<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .with_context(|| format!("no {name} on /metrics"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

/// Waits until dnsd_view_keys is `keys`.
fn wait_for_keys(web: SocketAddr, keys: usize, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (mut last, mut revision) = (f64::NAN, f64::NAN);
    while started.elapsed() < timeout {
        let metrics = scrape(web)?;
        last = metric(&metrics, "dnsd_view_keys")?;
        revision = metric(&metrics, "dnsd_view_revision")?;
        if last as usize == keys {
            return Ok(started.elapsed());
        }
        between_scrapes();
    }
    bail!("dnsd_view_keys still {last} after {timeout:?}, expected {keys} (dnsd_view_revision {revision})")
}

/// Waits until dnsd_view_revision is at least `revision`. Gives up early when, 10 s in, dnsd's pace says it
/// would not get there in time (and says how fast it applies revisions).
fn wait_for_revision(web: SocketAddr, revision: i64, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let first = metric(&scrape(web)?, "dnsd_view_revision")?;
    let mut last = first;
    while started.elapsed() < timeout {
        if last >= revision as f64 {
            return Ok(started.elapsed());
        }
        between_scrapes();
        last = metric(&scrape(web)?, "dnsd_view_revision")?;
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed >= 10.0 {
            let pace = (last - first) / elapsed;
            let needed = (revision as f64 - last) / pace.max(1e-9);
            if needed > timeout.as_secs_f64() - elapsed {
                bail!(
                    "dnsd's view is {} revisions behind etcd's {revision} after {elapsed:.0} s, applying {pace:.0} \
                     revisions/s: it would need {needed:.0} s more (the limit is {timeout:?})",
                    revision as f64 - last
                );
            }
        }
    }
    bail!("dnsd's view still at revision {last} {timeout:?} after etcd reached {revision}")
}

/// Waits until dnsd holds as many keys as etcd does below the zone; returns that number.
fn wait_for_etcd_keys(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    layout: &Layout,
    web: SocketAddr,
) -> anyhow::Result<usize> {
    let keys = rt.block_on(count_keys(client, &format!("{}/", layout.zone_key)))?;
    wait_for_keys(web, keys, CATCH_UP_TIMEOUT)?;
    Ok(keys)
}

/// The services whose SRV answers the resync checker counts, spread over the layout.
fn checked_services(layout: &Layout) -> Vec<usize> {
    let n = CHECKED_SERVICES.min(layout.services);
    (0..n).map(|j| (j * layout.services + layout.services / 2) / n).collect()
}

struct Round {
    latencies: Vec<Duration>,
    /// Why the round stopped before its count, if it did.
    stopped: Option<String>,
    error: Option<String>,
}

/// Puts `count` new keys one at a time, each in a random existing service (not one of `excluded`), and
/// times each from the put's response to the first UDP answer holding its address.
#[allow(clippy::too_many_arguments)]
fn probe_round(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    layout: &Layout,
    excluded: &[usize],
    dns: SocketAddr,
    first: usize,
    count: usize,
    budget: Duration,
    rng: &mut Rng,
    keys: &mut Vec<String>,
) -> Round {
    let mut round = Round { latencies: Vec::with_capacity(count), stopped: None, error: None };
    let result = (|| -> anyhow::Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let started = Instant::now();
        for n in first..first + count {
            if started.elapsed() > budget {
                round.stopped = Some(format!("time budget of {budget:?} used up"));
                break;
            }
            if n >= 250 * 256 {
                bail!("too many probes for 10.200.0.0/16");
            }
            let mut s = rng.below(layout.services);
            for _ in 0..100 {
                if !excluded.contains(&s) {
                    break;
                }
                s = rng.below(layout.services);
            }
            let host = Ipv4Addr::new(10, 200, (n / 250) as u8, (n % 250 + 1) as u8);
            let key = format!("{}/probe{n}", layout.service_key(s));
            let name = Name::from_ascii(format!("probe{n}.svc{s:04}.{}.", layout.zone))?;
            rt.block_on(client.put(key.as_str(), Layout::value(&host.to_string(), PORT), None))
                .with_context(|| format!("putting {key}"))?;
            let committed = Instant::now();
            keys.push(key);
            loop {
                if let Some(reply) = query_udp(&socket, dns, &name, RecordType::A)?
                    && a_records(&reply).contains(&host)
                {
                    break;
                }
                let waited = committed.elapsed();
                if waited > PROBE_TIMEOUT {
                    bail!(
                        "{name} ({host}) not answered {PROBE_TIMEOUT:?} after its put ({} probes answered before it)",
                        round.latencies.len()
                    );
                }
                if waited > TIGHT_POLL {
                    // Past the figures the targets are about: a short pause between queries, so that on a
                    // small machine a slow dnsd is not also robbed of the CPU it needs to catch up.
                    thread::sleep(POLL_PAUSE);
                }
            }
            round.latencies.push(committed.elapsed());
        }
        Ok(())
    })();
    if let Err(e) = result {
        round.error = Some(format!("{e:#}"));
    }
    round
}

fn round_section(section: Section, round: &Round, asked: usize, churn: Option<&ChurnStats>) -> Section {
    let mut section = match percentiles(&round.latencies) {
        Some((p50, p99, max)) => {
            section.value("p50", p50, "ms", 2).value("p99", p99, "ms", 2).value("max", max, "ms", 1)
        }
        None => section,
    };
    if let Some(stats) = churn {
        section = section.value("churn achieved", stats.rate(), "puts/s", 0);
    }
    let mut note = format!("({} puts", round.latencies.len());
    if round.latencies.len() < asked {
        note.push_str(&format!(" of {asked}"));
    }
    if let Some(why) = &round.stopped {
        note.push_str(&format!(": {why}"));
    }
    note.push(')');
    section = section.note(&note);
    match &round.error {
        Some(e) => section.error(e),
        None => section,
    }
}

struct ResyncFigures {
    /// Keys in the view after the resync.
    keys: usize,
    load: f64,
    restore_to_reconnect: f64,
    reconnect_to_new_data: f64,
    restore_to_counted: f64,
    checked: u64,
    wrong: u64,
    changed: usize,
    deleted: usize,
    hwm_mb: f64,
    rss_mb: f64,
    hwm_reset: bool,
    after_checked: u64,
    after_wrong: u64,
}

/// What the checker knows: the answers the old data and the new data give.
struct Expected {
    layout: Layout,
    /// (service, SRV count before, SRV count after)
    services: Vec<(usize, usize, usize)>,
    /// New hosts of the changed keys.
    changed: HashMap<(usize, usize), Ipv4Addr>,
    deleted: HashSet<(usize, usize)>,
    deleted_list: Vec<(usize, usize)>,
}

#[derive(Default)]
struct CheckStats {
    checked: u64,
    wrong: u64,
    shown: Vec<String>,
    /// When an SRV answer first showed the new data.
    first_new: Option<Instant>,
}

impl CheckStats {
    fn wrong(&mut self, what: String) {
        self.wrong += 1;
        if self.shown.len() < 10 {
            eprintln!("    wrong answer: {what}");
            self.shown.push(what);
        }
    }
}

/// Queries dnsd until `stop`: SRV of the checked services over TCP (each must have the old or the new number
/// of targets, never fewer), A of random instances over UDP (exactly the old or the new address; for deleted
/// names that or NXDOMAIN).
fn checker(expected: &Expected, dns: SocketAddr, stop: &AtomicBool, seed: u64) -> anyhow::Result<CheckStats> {
    let mut stats = CheckStats::default();
    let mut rng = Rng::new(seed);
    let mut tcp = TcpDns::new(dns, Duration::from_secs(2));
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    udp.set_read_timeout(Some(Duration::from_millis(500)))?;
    let layout = &expected.layout;
    let mut k = 0usize;
    // Bounded: stopped by the caller; the count is a backstop (hours at loopback speed).
    while !stop.load(Ordering::Relaxed) && k < 100_000_000 {
        k += 1;
        stats.checked += 1;
        if k.is_multiple_of(4) {
            let (s, before, after) = expected.services[(k / 4) % expected.services.len()];
            let name = Name::from_ascii(layout.service_name(s))?;
            match tcp.query(&name, RecordType::SRV) {
                Ok(reply) => {
                    let m = &reply.message;
                    let count = srv_count(m);
                    if m.metadata.response_code != ResponseCode::NoError
                        || m.metadata.truncation
                        || (count != before && count != after)
                    {
                        stats.wrong(format!(
                            "SRV {name}: {} with {count} targets (TC {}), expected {before} or {after}",
                            rcode_name(m.metadata.response_code),
                            m.metadata.truncation
                        ));
                    } else if count == after && after != before && stats.first_new.is_none() {
                        stats.first_new = Some(Instant::now());
                    }
                }
                Err(e) => stats.wrong(format!("SRV {name} over TCP: {e:#}")),
            }
            continue;
        }
        let deleted = k % 10 == 1;
        let (s, i) = if deleted {
            expected.deleted_list[rng.below(expected.deleted_list.len())]
        } else {
            let mut pick = (rng.below(layout.services), rng.below(layout.instances));
            for _ in 0..100 {
                if !expected.deleted.contains(&pick) {
                    break;
                }
                pick = (rng.below(layout.services), rng.below(layout.instances));
            }
            pick
        };
        let old: Ipv4Addr = Layout::host(s, i).parse()?;
        let new = expected.changed.get(&(s, i)).copied();
        let name = Name::from_ascii(layout.instance_name(s, i))?;
        match query_udp(&udp, dns, &name, RecordType::A)? {
            Some(m) => {
                let got = a_records(&m);
                let ok = match (m.metadata.response_code, got.as_slice()) {
                    (ResponseCode::NoError, [one]) => *one == old || Some(*one) == new,
                    (ResponseCode::NXDomain, []) => expected.deleted.contains(&(s, i)),
                    _ => false,
                };
                if !ok {
                    let want = match (new, expected.deleted.contains(&(s, i))) {
                        (Some(new), _) => format!("{old} or {new}"),
                        (None, true) => format!("{old} or NXDOMAIN"),
                        (None, false) => old.to_string(),
                    };
                    stats.wrong(format!("A {name}: {} {got:?}, expected {want}", rcode_name(m.metadata.response_code)));
                }
            }
            None => stats.wrong(format!("A {name}: no answer within 500 ms")),
        }
    }
    Ok(stats)
}

/// What the resync changes: deletes spread over the checked services, changed hosts anywhere else.
fn plan_resync(layout: &Layout, checked: &[usize], args: &Args, rng: &mut Rng) -> anyhow::Result<Expected> {
    let per_service = (args.resync_deletes / checked.len()).min(layout.instances - 1);
    let mut services = Vec::new();
    let mut deleted_list = Vec::new();
    for &s in checked {
        services.push((s, layout.instances, layout.instances - per_service));
        deleted_list.extend((0..per_service).map(|i| (s, i)));
    }
    if deleted_list.is_empty() {
        bail!("--resync-deletes {} leaves nothing to delete", args.resync_deletes);
    }
    let deleted: HashSet<(usize, usize)> = deleted_list.iter().copied().collect();
    let mut changed = HashMap::new();
    let wanted = args.resync_puts.min(layout.targets() - deleted.len());
    for _ in 0..wanted * 20 {
        if changed.len() >= wanted {
            break;
        }
        let pick = (rng.below(layout.services), rng.below(layout.instances));
        if !deleted.contains(&pick) && !changed.contains_key(&pick) {
            let n = changed.len();
            changed.insert(pick, Ipv4Addr::new(10, 201, (n / 250 % 256) as u8, (n % 250 + 1) as u8));
        }
    }
    Ok(Expected { layout: layout.clone(), services, changed, deleted, deleted_list })
}

/// Puts the `load` layout's values back on every key the resync changed or deleted.
fn undo_resync(rt: &tokio::runtime::Runtime, endpoints: &[String], expected: &Expected) -> anyhow::Result<()> {
    let layout = expected.layout.clone();
    let keys: Vec<(usize, usize)> = expected.changed.keys().chain(&expected.deleted_list).copied().collect();
    let keys = Arc::new(keys);
    let count = keys.len();
    rt.block_on(load::bulk(endpoints, count, 4, 128, move |n| {
        let (s, i) = keys[n];
        TxnOp::put(layout.key(s, i), Layout::value(&Layout::host(s, i), PORT), None)
    }))?;
    Ok(())
}

fn resync(b: &mut Bench, expected: &Arc<Expected>) -> anyhow::Result<ResyncFigures> {
    let (rt, layout, args, web, dns) = (b.rt, &b.layout, b.args, b.web, b.dns);
    let (client, endpoints, forwarder, dnsd, rng) = (&mut b.client, &b.endpoints, &b.forwarder, &b.dnsd, &mut b.rng);
    // dnsd must be current: cut off while behind, it would answer older data than the checker expects.
    let at = rt.block_on(revision(client))?;
    wait_for_revision(web, at, CATCH_UP_TIMEOUT).context("before the resync")?;

    let resyncs_before = metric(&scrape(web)?, "dnsd_resyncs_total")?;

    // Once cut, dnsd cannot hear of any change: whether it noticed yet does not matter, but it is reported.
    forwarder.cut();
    let cut_at = Instant::now();
    loop {
        if metric(&scrape(web)?, "dnsd_etcd_connected")? == 0.0 {
            eprintln!("    dnsd saw the cut after {:.0} ms", cut_at.elapsed().as_secs_f64() * 1e3);
            break;
        }
        if cut_at.elapsed() > Duration::from_secs(5) {
            eprintln!("    dnsd still says dnsd_etcd_connected 1 5 s after its etcd connections were cut");
            break;
        }
        between_scrapes();
    }

    let mut ops: Vec<(String, Option<String>)> = Vec::new();
    for (&(s, i), host) in &expected.changed {
        ops.push((layout.key(s, i), Some(Layout::value(&host.to_string(), PORT))));
    }
    for &(s, i) in &expected.deleted_list {
        ops.push((layout.key(s, i), None));
    }
    let ops = Arc::new(ops);
    let count = ops.len();
    let writes = ops.clone();
    rt.block_on(load::bulk(endpoints, count, 4, 128, move |n| match &writes[n] {
        (key, Some(value)) => TxnOp::put(key.as_str(), value.as_str(), None),
        (key, None) => TxnOp::delete(key.as_str(), None),
    }))?;
    let keys_expected = rt.block_on(count_keys(client, &format!("{}/", layout.zone_key)))?;
    let at = rt.block_on(revision(client))?;
    rt.block_on(client.compact(at, Some(CompactionOptions::new().with_physical())))
        .with_context(|| format!("compacting at revision {at}"))?;
    eprintln!("    {} changed, {} deleted, compacted at revision {at}", expected.changed.len(), expected.deleted.len());

    let hwm_reset = dnsd.reset_peak();
    let stop = Arc::new(AtomicBool::new(false));
    let checker_thread = {
        let (expected, stop) = (expected.clone(), stop.clone());
        let seed = rng.next_u64();
        thread::spawn(move || checker(&expected, dns, &stop, seed))
    };
    thread::sleep(Duration::from_millis(200)); // some answers from the old view while cut off
    let restored_at = Instant::now();
    forwarder.restore();

    // A resync is a full load: it gets as long as the first one may take, twice.
    let resync_timeout = CATCH_UP_TIMEOUT.max(Duration::from_secs(args.ready_timeout * 2));
    let mut counted_at = None;
    let mut last_error = None;
    while restored_at.elapsed() < resync_timeout {
        match scrape(web).and_then(|m| metric(&m, "dnsd_resyncs_total")) {
            Ok(resyncs) if resyncs > resyncs_before => {
                counted_at = Some(Instant::now());
                break;
            }
            Ok(_) => {}
            Err(e) => last_error = Some(e),
        }
        between_scrapes();
    }
    // Answers keep being checked for a while after the swap.
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let stats = checker_thread.join().map_err(|_| anyhow::anyhow!("the checker thread panicked"))??;
    let Some(counted_at) = counted_at else {
        bail!(
            "dnsd_resyncs_total did not go up within {resync_timeout:?} of restoring etcd{}",
            last_error.map(|e| format!(" (last scrape: {e:#})")).unwrap_or_default()
        );
    };
    let metrics = scrape(web)?;
    let load = metric(&metrics, "dnsd_last_load_duration_seconds")?;
    let keys_after = metric(&metrics, "dnsd_view_keys")? as usize;
    let memory = dnsd.memory()?;
    let (refused, forwarded) = forwarder.counts();
    let reconnect = forwarder.first_after_restore().context("dnsd never reconnected through the forwarder")?;
    let first_new = stats.first_new.unwrap_or(counted_at);
    eprintln!(
        "    restore -> reconnect {:.2} s, -> new data answered {:.2} s, -> resync counted {:.2} s; load {load:.2} s; \
         {} answers checked, {} wrong; {refused} connections closed while cut, {forwarded} forwarded in all",
        reconnect.duration_since(restored_at).as_secs_f64(),
        first_new.duration_since(restored_at).as_secs_f64(),
        counted_at.duration_since(restored_at).as_secs_f64(),
        stats.checked,
        stats.wrong
    );
    if keys_after != keys_expected {
        bail!("dnsd holds {keys_after} keys after the resync, etcd {keys_expected}");
    }

    // Afterwards: the new data, and nothing of the old.
    let (mut after_checked, mut after_wrong) = (0u64, 0u64);
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    udp.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut tcp = TcpDns::new(dns, Duration::from_secs(2));
    for (&(s, i), &host) in expected.changed.iter().take(50) {
        let name = Name::from_ascii(layout.instance_name(s, i))?;
        let got = query_udp(&udp, dns, &name, RecordType::A)?.map(|m| a_records(&m));
        after_checked += 1;
        if got.as_deref() != Some(&[host][..]) {
            after_wrong += 1;
            eprintln!("    after the resync: A {name} is {got:?}, expected [{host}]");
        }
    }
    for &(s, i) in expected.deleted_list.iter().take(50) {
        let name = Name::from_ascii(layout.instance_name(s, i))?;
        let got = query_udp(&udp, dns, &name, RecordType::A)?.map(|m| m.metadata.response_code);
        after_checked += 1;
        if got != Some(ResponseCode::NXDomain) {
            after_wrong += 1;
            eprintln!("    after the resync: A {name} is {got:?}, expected NXDOMAIN");
        }
    }
    for &(s, _, after) in &expected.services {
        let name = Name::from_ascii(layout.service_name(s))?;
        let count = tcp.query(&name, RecordType::SRV).map(|r| srv_count(&r.message)).ok();
        after_checked += 1;
        if count != Some(after) {
            after_wrong += 1;
            eprintln!("    after the resync: SRV {name} has {count:?} targets, expected {after}");
        }
    }

    Ok(ResyncFigures {
        keys: keys_after,
        load,
        restore_to_reconnect: reconnect.duration_since(restored_at).as_secs_f64(),
        reconnect_to_new_data: first_new.saturating_duration_since(reconnect).as_secs_f64(),
        restore_to_counted: counted_at.duration_since(restored_at).as_secs_f64(),
        checked: stats.checked,
        wrong: stats.wrong,
        changed: expected.changed.len(),
        deleted: expected.deleted_list.len(),
        hwm_mb: memory.hwm_mb,
        rss_mb: memory.rss_mb,
        hwm_reset,
        after_checked,
        after_wrong,
    })
}

struct Big {
    /// Keys in the view with the large service.
    keys: usize,
    rcode: String,
    truncated: bool,
    answers: usize,
    additionals: usize,
    size: usize,
    millis: f64,
}

fn big(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    endpoints: &[String],
    layout: &Layout,
    web: SocketAddr,
    dns: SocketAddr,
    count: usize,
) -> anyhow::Result<Big> {
    if count > 250 * 256 {
        bail!("--big {count}: at most {} targets", 250 * 256);
    }
    let prefix = format!("{}/big/huge", layout.zone_key);
    rt.block_on(load::bulk(endpoints, count, 16, 128, move |n| {
        let host = format!("10.100.{}.{}", n / 250, n % 250 + 1);
        TxnOp::put(format!("{prefix}/host{n:05}"), Layout::value(&host, PORT), None)
    }))?;
    let keys = wait_for_etcd_keys(rt, client, layout, web).context("waiting for the large service")?;
    let name = Name::from_ascii(format!("huge.big.{}.", layout.zone))?;
    let mut tcp = TcpDns::new(dns, Duration::from_secs(10));
    let started = Instant::now();
    let reply = tcp.query(&name, RecordType::SRV).with_context(|| format!("SRV {name} over TCP"))?;
    let millis = started.elapsed().as_secs_f64() * 1e3;
    let m = &reply.message;
    Ok(Big {
        keys,
        rcode: rcode_name(m.metadata.response_code),
        truncated: m.metadata.truncation,
        answers: srv_count(m),
        additionals: m.additionals.len(),
        size: reply.size,
        millis,
    })
}

/// The mnemonic dig shows: NOERROR, NXDOMAIN, SERVFAIL...
fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
