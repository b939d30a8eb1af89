//! dnsd run in process on loopback port 0, on its own runtime thread, stopped when the test drops it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use dnsd::{Cli, Config, Listeners};
use promsd_common::EtcdArgs;
use promsd_tests::{Dig, dig, eventually, http_get};
use tokio_util::sync::CancellationToken;

pub struct Dnsd {
    pub dns: SocketAddr,
    pub web: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The zone the tests use, as in the seed walkthrough.
pub const ZONE: &str = "prom.local";

impl Dnsd {
    /// Starts dnsd for `zones` under `/skydns`, following `endpoint`, and waits until it is ready.
    pub fn start(endpoint: &str, zones: &[&str]) -> Self {
        let dnsd = Self::start_unready(endpoint, zones);
        dnsd.wait_ready();
        dnsd
    }

    pub fn start_unready(endpoint: &str, zones: &[&str]) -> Self {
        let etcd = EtcdArgs {
            endpoints: vec![endpoint.to_string()],
            dial_timeout: Duration::from_secs(1),
            ..EtcdArgs::default()
        };
        let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
        Self::start_config(Config::new(etcd, "/skydns", &zones).expect("valid config"))
    }

    /// Starts dnsd with command-line flags (parsed as the binary parses them) and waits until it is ready.
    /// The listen addresses are always loopback port 0.
    pub fn start_args(args: &[&str]) -> Self {
        let cli = Cli::try_parse_from(std::iter::once("dnsd").chain(args.iter().copied())).expect("valid flags");
        let dnsd = Self::start_config(cli.settings().expect("valid settings").config);
        dnsd.wait_ready();
        dnsd
    }

    pub fn start_config(config: Config) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        let listeners = runtime.block_on(bind_loopback());
        let dns = listeners.udp[0].local_addr().expect("udp addr");
        let web = listeners.web[0].local_addr().expect("web addr");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            if let Err(error) = runtime.block_on(dnsd::run(config, listeners, stop)) {
                eprintln!("dnsd stopped: {error}");
            }
        });
        Self { dns, web, shutdown, thread: Some(thread) }
    }

    pub fn wait_ready(&self) {
        eventually("dnsd to become ready", Duration::from_secs(20), || {
            matches!(http_get(self.web, "/-/ready"), Ok((200, _))).then_some(())
        });
    }

    pub fn dig(&self, args: &[&str]) -> Dig {
        dig(self.dns, args)
    }

    /// Waits until `dig args` gives an answer for which `check` holds, and returns it.
    pub fn dig_until(&self, args: &[&str], check: impl Fn(&Dig) -> bool) -> Dig {
        eventually(&format!("dig {args:?} to match"), Duration::from_secs(10), || {
            let answer = self.dig(args);
            check(&answer).then_some(answer)
        })
    }
}

impl Drop for Dnsd {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// UDP and TCP on one free loopback port, plus a web port.
async fn bind_loopback() -> Listeners {
    loop {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await else { continue };
        let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind web");
        return Listeners { udp: vec![udp], tcp: vec![tcp], web: vec![web] };
    }
}

/// The seed walkthrough's data: three name servers, etcd's client SRV records, two node exporters.
pub fn load_seed(etcd: &promsd_tests::Etcd) {
    for i in 1..=3 {
        etcd.put(&format!("/skydns/local/prom/dns/ns/ns{i}"), &format!(r#"{{"host":"192.168.0.{i}"}}"#));
        etcd.put(
            &format!("/skydns/local/prom/_tcp/_etcd-client/coreos-coredns0{i}"),
            &format!(r#"{{"host":"192.168.0.{i}","port":2379}}"#),
        );
    }
    etcd.put("/skydns/local/prom/node/server01", r#"{"host":"192.168.1.1","port":9100}"#);
    etcd.put("/skydns/local/prom/node/server02", r#"{"host":"192.168.1.2","port":9100}"#);
}

/// The dnsd binary with `args`, on free loopback ports for DNS and the web, with an environment that cannot
/// change what is tested (no `ETCDCTL_ENDPOINTS`, no backtrace lines); returns it with the two addresses.
pub fn dnsd_binary(args: &[&str]) -> (std::process::Command, SocketAddr, SocketAddr) {
    let dns: SocketAddr = ([127, 0, 0, 1], promsd_tests::free_port()).into();
    let web: SocketAddr = ([127, 0, 0, 1], promsd_tests::free_port()).into();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dnsd"));
    command
        .args(args)
        .args(["--dns.listen-address", &dns.to_string(), "--web.listen-address", &web.to_string()])
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    (command, dns, web)
}

/// Writes `pairs` to etcd in transactions of 100 puts: thousands of keys in a second or two.
pub fn put_many(etcd: &promsd_tests::Etcd, pairs: Vec<(String, String)>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([etcd.endpoint.as_str()], None).await.expect("connect");
        for chunk in pairs.chunks(100) {
            let ops: Vec<etcd_client::TxnOp> =
                chunk.iter().map(|(key, value)| etcd_client::TxnOp::put(key.as_str(), value.as_str(), None)).collect();
            client.txn(etcd_client::Txn::new().and_then(ops)).await.expect("txn");
        }
    });
}
