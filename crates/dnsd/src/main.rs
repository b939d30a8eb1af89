use anyhow::Context;
use clap::Parser;
use dnsd::{Cli, Listeners};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let settings = cli.settings()?;
    let running = format!("{settings:?}");
    let (dns, web) = (settings.dns_listen_address, &settings.web_listen_addresses);
    let listeners =
        Listeners::bind(dns, web).with_context(|| format!("cannot listen on {dns} (DNS) or {web:?} (web)"))?;
    let config = settings.config;
    let zones: Vec<&str> = config.catalog.zones().iter().map(|z| z.name.as_str()).collect();
    tracing::info!(%dns, ?web, zones = %zones.join(","), "starting dnsd");
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signals(running, shutdown.clone()));
    dnsd::run(config, listeners, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT stop dnsd; SIGHUP (`systemctl reload`, log rotation) never does: it reads the flags
/// and the Corefile again and says whether they changed. The web config file is re-read by itself when it
/// changes; other settings need a restart, and the log says so.
async fn on_signals(running: String, shutdown: CancellationToken) {
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
            _ = hup.recv() => match Cli::try_parse().map_err(anyhow::Error::from).and_then(|cli| Ok(cli.settings()?)) {
                Ok(settings) if format!("{settings:?}") == running => {
                    tracing::info!("SIGHUP: configuration unchanged (the web config file is re-read when it changes)")
                }
                Ok(_) => tracing::warn!("SIGHUP: the configuration changed; restart dnsd to apply it"),
                Err(error) => tracing::error!(%error, "SIGHUP: the configuration is invalid; the running one stays"),
            },
        }
    }
    shutdown.cancel();
}
