//! Command lines as both binaries take them: `--help` and `--version` as clap prints them, and a usage error
//! as one line naming the flag and the value, exit code 2, nothing started (as Prometheus components do).

use std::ffi::OsString;

/// Parses `args` into `C`, or exits: 0 after help or version (`--version` as Prometheus's binaries print it,
/// `-V` short as clap prints it), 2 after a usage error printed as `NAME: ...`.
pub fn parse_or_exit<C: clap::Parser>(name: &str, args: impl IntoIterator<Item = OsString>) -> C {
    match C::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            print!("{}", promsd_buildinfo::version_output(name, &e.render().to_string()));
            std::process::exit(0);
        }
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{name}: {}", one_line(&e));
            std::process::exit(2);
        }
    }
}

/// The first line of clap's rendering, without its `error: `.
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
}
