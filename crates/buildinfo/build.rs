//! Finds what the binaries were built from, as promu stamps it into Prometheus's Go binaries, and hands it to
//! the crate as `PROMSD_BUILD_*` compile-time variables.
//!
//! A packager's values come first: `PROMSD_BUILD_REVISION`, `PROMSD_BUILD_BRANCH`, `PROMSD_BUILD_USER` and
//! `PROMSD_BUILD_DATE` are taken as they are. Otherwise the revision and branch come from git (a source
//! tarball has none: `unknown`), the user is `$USER@hostname` (`$LOGNAME`, or `id -un`, without `$USER`),
//! and the date is `SOURCE_DATE_EPOCH` (for reproducible builds) or now, in promu's format
//! `20060102-15:04:05` (UTC).

use std::path::{Path, PathBuf};
use std::process::Command;

// The date conversion, shared with the crate.
#[allow(dead_code)]
mod date {
    include!("src/date.rs");
}
use date::promu_date;

fn main() {
    for var in ["PROMSD_BUILD_REVISION", "PROMSD_BUILD_BRANCH", "PROMSD_BUILD_USER", "PROMSD_BUILD_DATE"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    watch_git(&manifest);

    let revision = given("PROMSD_BUILD_REVISION")
        .or_else(|| git(&manifest, &["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let branch = given("PROMSD_BUILD_BRANCH")
        .or_else(|| git(&manifest, &["rev-parse", "--abbrev-ref", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let user = given("PROMSD_BUILD_USER").unwrap_or_else(|| {
        let name = ["USER", "LOGNAME"]
            .iter()
            .find_map(|var| given(var))
            .or_else(|| Command::new("id").arg("-un").output().ok().and_then(|o| String::from_utf8(o.stdout).ok()))
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        match host.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
            Some(host) => format!("{name}@{host}"),
            None => name,
        }
    });
    let date = given("PROMSD_BUILD_DATE").unwrap_or_else(|| {
        let epoch = given("SOURCE_DATE_EPOCH").and_then(|s| s.parse::<i64>().ok()).unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
        promu_date(epoch)
    });
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    // `rustc 1.88.0 (6b00bc388 2025-06-23)`: the version, as Go's `go1.24.1` is.
    let rust_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_else(|_| "unknown".into());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "unknown".into());
    let little = std::env::var("CARGO_CFG_TARGET_ENDIAN").is_ok_and(|e| e == "little");

    for (name, value) in [
        ("REVISION", revision),
        ("BRANCH", branch),
        ("USER", user),
        ("DATE", date),
        ("RUSTC", rust_version),
        ("PLATFORM", format!("{os}/{}", go_arch(&arch, little))),
    ] {
        // One line each: a value with a newline would end the instruction.
        println!("cargo:rustc-env=PROMSD_BUILD_{name}={}", value.replace(['\n', '\r'], " "));
    }
}

/// A non-empty variable from the environment.
fn given(var: &str) -> Option<String> {
    std::env::var(var).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A git command's one line of output, run in `dir`; None outside a checkout or without git.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let out = String::from_utf8(output.stdout).ok()?;
    let out = out.trim();
    (output.status.success() && !out.is_empty()).then(|| out.to_owned())
}

/// Reruns the script when HEAD moves: HEAD itself (another branch), the branch's ref, packed refs.
fn watch_git(dir: &Path) {
    let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) else { return };
    let git_dir = PathBuf::from(git_dir);
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    let common = git(dir, &["rev-parse", "--git-common-dir"]).map_or_else(|| git_dir.clone(), |c| dir.join(c));
    println!("cargo:rerun-if-changed={}", common.join("packed-refs").display());
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={}", common.join(reference).display());
    }
}

/// Go's GOARCH names, which `platform` shows in Prometheus's binaries (`linux/amd64`).
fn go_arch(arch: &str, little_endian: bool) -> &str {
    match arch {
        "powerpc64" if little_endian => "ppc64le",
        "mips" if little_endian => "mipsle",
        "mips64" if little_endian => "mips64le",
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}
