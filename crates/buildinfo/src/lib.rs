//! What promsd's binaries were built from, for `--version` and `<daemon>_build_info`: one implementation
//! for dnsd and registrar, filled in by `build.rs` (see there for the `PROMSD_BUILD_*` variables a packager
//! sets, and `SOURCE_DATE_EPOCH`).
//!
//! `--version` prints what Prometheus's own binaries print (prometheus/common's version template):
//!
//! ```text
//! dnsd, version 0.1.0 (branch: main, revision: 0123abcd...)
//!   build user:       alice@build
//!   build date:       20250101-12:00:00
//!   rustc version:    1.88.0
//!   platform:         linux/amd64
//! ```

/// The crate version, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit (full hash), `PROMSD_BUILD_REVISION`, or `unknown`.
pub const REVISION: &str = env!("PROMSD_BUILD_REVISION");
/// The git branch, `PROMSD_BUILD_BRANCH`, or `unknown` (`HEAD` on a detached checkout).
pub const BRANCH: &str = env!("PROMSD_BUILD_BRANCH");
/// `user@host` of the build, or `PROMSD_BUILD_USER`.
pub const BUILD_USER: &str = env!("PROMSD_BUILD_USER");
/// `20060102-15:04:05` in UTC: `PROMSD_BUILD_DATE`, `SOURCE_DATE_EPOCH`, or the time of the build.
pub const BUILD_DATE: &str = env!("PROMSD_BUILD_DATE");
/// rustc's version, e.g. `1.88.0`: the `rustversion` label, as Go binaries' `goversion`.
pub const RUST_VERSION: &str = env!("PROMSD_BUILD_RUSTC");
/// `os/arch` in Go's names, e.g. `linux/amd64`.
pub const PLATFORM: &str = env!("PROMSD_BUILD_PLATFORM");

/// Everything after the program name in the first line, and the indented lines: what clap's
/// `long_version` is set to (clap prints `NAME LONG_VERSION`; [`version_output`] adds the comma).
pub const LONG_VERSION: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    " (branch: ",
    env!("PROMSD_BUILD_BRANCH"),
    ", revision: ",
    env!("PROMSD_BUILD_REVISION"),
    ")\n  build user:       ",
    env!("PROMSD_BUILD_USER"),
    "\n  build date:       ",
    env!("PROMSD_BUILD_DATE"),
    "\n  rustc version:    ",
    env!("PROMSD_BUILD_RUSTC"),
    "\n  platform:         ",
    env!("PROMSD_BUILD_PLATFORM"),
);

/// `program`'s `--version` text, as node_exporter's: `NAME, version X.Y.Z (branch: B, revision: R)` and
/// the indented build lines, ending in a newline.
pub fn version_text(program: &str) -> String {
    format!("{program}, {LONG_VERSION}\n")
}

/// What to print for clap's rendering of a version flag: `-V`'s short `NAME X.Y.Z` as clap renders it,
/// `--version`'s as [`version_text`].
pub fn version_output(program: &str, rendered: &str) -> String {
    if rendered.trim_end().contains('\n') { version_text(program) } else { rendered.to_owned() }
}

/// The labels of `<daemon>_build_info`, as Prometheus's binaries have them, with Go's `goversion` as
/// `rustversion` (and no `tags`: promsd has no build tags).
pub fn labels() -> [(&'static str, &'static str); 4] {
    [("version", VERSION), ("revision", REVISION), ("branch", BRANCH), ("rustversion", RUST_VERSION)]
}

mod date;

pub use date::{civil_from_days, days_from_civil, parse_rfc3339, promu_date};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_promu_writes_them() {
        assert_eq!(promu_date(0), "19700101-00:00:00");
        assert_eq!(promu_date(1_681_035_069), "20230409-10:11:09", "node_exporter 1.5.0's Debian build");
        assert_eq!(promu_date(951_782_400), "20000229-00:00:00");
        assert_eq!(promu_date(4_102_444_799), "20991231-23:59:59");
    }

    #[test]
    fn reads_rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-04-09T10:11:09Z"), Some(1_681_035_069));
        assert_eq!(parse_rfc3339("2023-04-09T12:11:09.123+02:00"), Some(1_681_035_069));
        assert_eq!(parse_rfc3339("2023-04-09T09:11:09-01:00"), Some(1_681_035_069));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        for days in [-1000, 0, 59, 365, 11_016, 50_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        for bad in [
            "",
            "2027-06-30",
            "2027-06-30T00:00:00",
            "2027-02-30T00:00:00Z",
            "2027-13-01T00:00:00Z",
            "2027-06-30T24:00:00Z",
            "2027-06-30T00:00:00+0200",
            "2027-06-30T00:00:00.Z",
            "２０２７-06-30T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_text_has_node_exporters_lines() {
        let text = version_text("dnsd");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], format!("dnsd, version {VERSION} (branch: {BRANCH}, revision: {REVISION})"));
        assert_eq!(lines[1], format!("  build user:       {BUILD_USER}"));
        assert_eq!(lines[2], format!("  build date:       {BUILD_DATE}"));
        assert_eq!(lines[3], format!("  rustc version:    {RUST_VERSION}"));
        assert_eq!(lines[4], format!("  platform:         {PLATFORM}"));
        assert_eq!(version_output("dnsd", "dnsd 0.1.0\n"), "dnsd 0.1.0\n", "-V stays short");
        assert_eq!(version_output("dnsd", &format!("dnsd {LONG_VERSION}\n")), text);
    }

    #[test]
    fn values_are_filled_in() {
        assert_eq!(BUILD_DATE.len(), "20060102-15:04:05".len(), "{BUILD_DATE}");
        assert!(RUST_VERSION.starts_with("1."), "{RUST_VERSION}");
        assert!(PLATFORM.contains('/'), "{PLATFORM}");
        for value in [REVISION, BRANCH, BUILD_USER] {
            assert!(!value.is_empty() && !value.contains('\n'));
        }
    }
}
