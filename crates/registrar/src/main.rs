use registrar::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = registrar::cli::go_style_flags(std::env::args_os());
    let mut cli: Cli = promsd_common::cli::parse_or_exit("registrar", args);
    promsd_log::init(cli.log_format, cli.log_level);
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
