use anyhow::Context;
use clap::Parser;
use dnsd::{Cli, Listeners, Settings};
use promsd_log::LevelHandle as LogLevel;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = promsd_common::cli::parse_or_exit("dnsd", std::env::args_os());
    // Counted as CoreDNS counts its panics (`coredns_panics_total`), then reported as always.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        dnsd::metrics::PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        report(info);
    }));
    // Info until the Corefile is read: its `debug` may lower the level.
    let log_level = promsd_log::init(cli.log_format, tracing::Level::INFO);
    let settings = cli.settings()?;
    log_level.set(settings.log_level);
    let (dns, web) = (settings.dns_listen_address, &settings.web_listen_addresses);
    let listeners =
        Listeners::bind(dns, web).with_context(|| format!("cannot listen on {dns} (DNS) or {web:?} (web)"))?;
    let config = settings.config.clone();
    let zones: Vec<&str> = config.catalog.zones().iter().map(|z| z.name.as_str()).collect();
    tracing::info!(%dns, ?web, zones = %zones.join(","), "starting dnsd");
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signals(settings, log_level, shutdown.clone()));
    dnsd::run(config, listeners, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT stop dnsd; SIGHUP (`systemctl reload`, log rotation) never does: it reads the flags
/// and the Corefile again, applies the log level, the query log and the lease TTL bounds, and names what
/// else changed, which needs a restart. The web config file is re-read by itself when it changes.
async fn on_signals(mut running: Settings, log_level: LogLevel, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&mut running, &log_level),
        }
    }
    shutdown.cancel();
}

fn reload(running: &mut Settings, log_level: &LogLevel) {
    let new = match Cli::try_parse().map_err(anyhow::Error::from).and_then(|cli| Ok(cli.settings()?)) {
        Ok(new) => new,
        Err(error) => return tracing::error!(%error, "SIGHUP: the configuration is invalid; the running one stays"),
    };
    let live = &running.config.live;
    let mut applied = live.apply(new.config.live.lease_bounds(), new.config.live.log_queries());
    if new.log_level != running.log_level {
        log_level.set(new.log_level);
        applied.push(format!("log level: {} -> {}", running.log_level, new.log_level));
        running.log_level = new.log_level;
    }
    let restart = running.restart_needed(&new);
    if !applied.is_empty() {
        tracing::info!(changes = %applied.join("; "), "SIGHUP: applied");
    }
    if !restart.is_empty() {
        tracing::warn!(settings = %restart.join(", "), "SIGHUP: these settings changed; restart dnsd to apply them");
    }
    if applied.is_empty() && restart.is_empty() {
        tracing::info!("SIGHUP: configuration unchanged (the web config file is re-read when it changes)");
    }
}
