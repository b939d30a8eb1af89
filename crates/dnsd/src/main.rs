use anyhow::Context;
use clap::Parser;
use dnsd::{Cli, Config, Listeners};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::new(cli.etcd, &cli.path, &cli.zones)?;
    let listeners = Listeners::bind(cli.dns_listen_address, cli.web_listen_address).with_context(|| {
        format!("cannot listen on {} (DNS) or {} (web)", cli.dns_listen_address, cli.web_listen_address)
    })?;
    let zones: Vec<&str> = config.catalog.zones().iter().map(|z| z.name.as_str()).collect();
    tracing::info!(dns = %cli.dns_listen_address, web = %cli.web_listen_address, zones = %zones.join(","), "starting dnsd");
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
