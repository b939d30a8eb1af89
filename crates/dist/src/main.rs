//! `promsd-dist man DIR` and `promsd-dist completions DIR`: the man pages and shell completions that
//! scripts/package ships, made from the daemons' own clap definitions so they can never list a flag the
//! binaries lack (or miss one they have).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (what, dir) = match (args.next(), args.next(), args.next()) {
        (Some(what), Some(dir), None) => (what, PathBuf::from(dir)),
        _ => usage(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match what.as_str() {
        "man" => man_pages(&dir),
        "completions" => completions(&dir),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: promsd-dist man|completions DIR");
    std::process::exit(2)
}

fn commands() -> [clap::Command; 3] {
    [dnsd::Cli::command(), registrar::cli::Cli::command(), promsd_gateway::Cli::command()]
}

/// One page per command and one per subcommand, named as git names its pages (`registrar-agent.1`).
fn man_pages(dir: &Path) -> anyhow::Result<()> {
    for command in commands() {
        let name = command.get_name().to_string();
        // The long version names the build machine and date: a page is the same for every build.
        write_page(dir, &name, command.clone().long_version(None), extra_sections(&name))?;
        for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
            let page = format!("{name}-{}", sub.get_name());
            // clap names are 'static (its "string" feature would change clap for every binary's build).
            let sub = sub.clone().name(&*String::leak(page.clone())).version(env!("CARGO_PKG_VERSION"));
            write_page(dir, &page, sub, see_also(&[&name]))?;
        }
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, command: clap::Command, extra: String) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).section("1").manual("promsd").render(&mut page)?;
    page.extend_from_slice(extra.as_bytes());
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}

/// What clap does not know: the files and units a package installs, and where to read on.
fn extra_sections(name: &str) -> String {
    let (files, see) = match name {
        "dnsd" => (
            "/etc/default/dnsd\n\
             Settings for dnsd.service: ETCDCTL_* variables and ARGS, the flags.\n\
             .TP\n/lib/systemd/system/dnsd.service\n\
             The unit: runs as user promsd; systemctl reload sends SIGHUP.",
            vec!["registrar"],
        ),
        "promsd-gateway" => (
            "/etc/default/promsd-gateway\n\
             Settings for promsd-gateway.service: ARGS, the flags.\n\
             .TP\n/etc/promsd/gateway-tokens.yml\n\
             The service tokens (id, secret_sha256, expires, clients, scrape, tenant), read again when it changes.\n\
             .TP\n/lib/systemd/system/promsd-gateway.service\n\
             The unit: runs as user promsd; systemctl reload re-reads the token file.",
            vec!["registrar-agent"],
        ),
        _ => (
            "/etc/default/registrar-agent\n\
             Settings for registrar-agent.service: ARGS, the agent's flags.\n\
             .TP\n/etc/promsd/agent.yml\n\
             The agent's modules (exporter_exporter's format), read again on SIGHUP.\n\
             .TP\n/etc/promsd/web.yml\n\
             TLS and basic auth of the agent's port (exporter-toolkit's web config format).\n\
             .TP\n/lib/systemd/system/registrar-agent.service, prom@.service, prom-run@.service\n\
             The units: the agent; one exporter registered around its start and stop; one supervised by registrar run.",
            vec!["dnsd"],
        ),
    };
    format!(".SH FILES\n.TP\n{files}\n{}", see_also(&see))
}

fn see_also(pages: &[&str]) -> String {
    let list: Vec<String> = pages.iter().map(|page| format!(".BR {page} (1)")).collect();
    format!(".SH \"SEE ALSO\"\n{},\n.BR etcdctl (1)\n", list.join(",\n"))
}

/// bash, zsh and fish, in the folders Debian's packages of those shells read.
fn completions(dir: &Path) -> anyhow::Result<()> {
    for mut command in commands() {
        let name = command.get_name().to_string();
        for (shell, folder, file) in [
            (Shell::Bash, "bash-completion/completions", name.clone()),
            (Shell::Zsh, "zsh/vendor-completions", format!("_{name}")),
            (Shell::Fish, "fish/vendor_completions.d", format!("{name}.fish")),
        ] {
            let folder = dir.join(folder);
            std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
            let path = folder.join(file);
            let mut out = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
            clap_complete::generate(shell, &mut command, &name, &mut out);
        }
    }
    Ok(())
}
