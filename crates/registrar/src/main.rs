use clap::Parser;
use registrar::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if let Some(location) = cli.command.location_mut() {
        location.apply_seed_endpoint(std::env::var("ETCD_ENDPOINT").ok());
    }
    match registrar::execute(cli).await {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("registrar: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
