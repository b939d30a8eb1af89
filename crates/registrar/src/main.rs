use clap::Parser;
use registrar::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut cli = match Cli::try_parse_from(registrar::cli::go_style_flags(std::env::args_os())) {
        Ok(cli) => cli,
        // `--version` as Prometheus's binaries print it (`-V` short, as clap prints it); --help as clap
        // prints it; a usage error as one line, exit code 2, nothing started.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            print!("{}", promsd_buildinfo::version_output("registrar", &e.render().to_string()));
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            let line = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ");
            eprintln!("registrar: {line}");
            return std::process::ExitCode::from(2);
        }
    };
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
