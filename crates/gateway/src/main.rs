use anyhow::Context;
use promsd_gateway::Cli;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = promsd_common::cli::parse_or_exit("promsd-gateway", std::env::args_os());
    promsd_log::init(cli.log_format, cli.log_level);
    let prepared = promsd_gateway::prepare(&cli)?;
    let address = cli.web_listen_address;
    let listener =
        promsd_common::listen::tcp_listener(address).with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(%address, tokens = ?prepared.tokens(), "starting promsd-gateway");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signals(shutdown.clone()));
    promsd_gateway::run(prepared, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT stop the gateway; SIGHUP is the token file's (see `run`).
async fn stop_on_signals(shutdown: CancellationToken) {
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
