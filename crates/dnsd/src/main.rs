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
    let (dns, web) = (settings.dns_listen_address, &settings.web_listen_addresses);
    let listeners =
        Listeners::bind(dns, web).with_context(|| format!("cannot listen on {dns} (DNS) or {web:?} (web)"))?;
    let config = settings.config;
    let zones: Vec<&str> = config.catalog.zones().iter().map(|z| z.name.as_str()).collect();
    tracing::info!(%dns, ?web, zones = %zones.join(","), "starting dnsd");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    dnsd::run(config, listeners, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
}
