//! `registrar run -- EXPORTER ARGS...`: supervise one exporter. It is registered once it accepts TCP
//! connections on its port, kept registered (with an etcd lease kept alive, when asked) while it runs, and
//! deregistered when it exits; signals sent to the registrar reach the exporter; the exit status is its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use promsd_common::EtcdArgs;
use promsd_registration::{Keeper, Registration, Status};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The exit code a shell would report for `status`: the exporter's code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs the exporter to completion and returns its exit code.
pub async fn supervise(
    etcd: EtcdArgs,
    timeout: Duration,
    registration: Registration,
    lease_ttl: Option<Duration>,
    command: &[String],
    status: Arc<Status>,
) -> std::io::Result<i32> {
    let (program, args) = command.split_first().ok_or_else(|| std::io::Error::other("no command given"))?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    tracing::info!(command = %command.join(" "), pid = child.id().unwrap_or(0), "started exporter");

    let probe = probe_address(&registration).await;
    status.exporter_up.store(false, Ordering::Relaxed);
    let mut keeper = None;
    let mut probe_timer = tokio::time::interval(PROBE_INTERVAL);
    let exit = loop {
        tokio::select! {
            exit = child.wait() => break exit?,
            _ = term.recv() => forward(&child, Signal::SIGTERM),
            _ = int.recv() => forward(&child, Signal::SIGINT),
            _ = hup.recv() => forward(&child, Signal::SIGHUP),
            _ = probe_timer.tick(), if keeper.is_none() => {
                if accepts_connections(probe).await {
                    status.exporter_up.store(true, Ordering::Relaxed);
                    tracing::info!(%probe, "exporter accepts connections; registering");
                    promsd_notify::ready("exporter accepts connections; registering");
                    keeper = Some(Keeper::start(etcd.clone(), registration.clone(), lease_ttl, status.clone()));
                }
            }
        }
    };
    status.exporter_up.store(false, Ordering::Relaxed);
    promsd_notify::stopping();
    let code = exit_code(exit);
    tracing::info!(code, "exporter exited");
    if let Some(keeper) = keeper {
        keeper.release(timeout.min(promsd_registration::keeper::RELEASE_TIMEOUT)).await;
    }
    Ok(code)
}

fn forward(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        tracing::info!(%signal, pid, "forwarding signal to the exporter");
        if let Err(e) = kill(Pid::from_raw(pid), signal) {
            tracing::warn!(%signal, error = %e, "cannot signal the exporter");
        }
    }
}

/// Where readiness is probed: the registered address (the loopback address when it is a wildcard).
async fn probe_address(registration: &Registration) -> SocketAddr {
    let port = u16::try_from(registration.service.port).unwrap_or(0);
    let ip = match registration.service.host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ok(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Ok(ip) => ip,
        Err(_) => match tokio::net::lookup_host((registration.service.host.as_str(), port)).await {
            Ok(mut addrs) => addrs.next().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    };
    SocketAddr::new(ip, port)
}

async fn accepts_connections(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}
