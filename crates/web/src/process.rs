//! `process_*`: the process metrics every Prometheus client library exports on Linux, with the names, types
//! and sources of the Go client's process collector: `/proc/self/stat` (CPU time, virtual and resident
//! memory, start time against `btime` in `/proc/stat`), `/proc/self/fd` and `/proc/self/limits`. Read at
//! scrape time; a file that cannot be read leaves its metrics out, as the Go client does.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::metrics::{counter_f64, gauge};

/// What `/proc/self/stat` says, in the units the metrics have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// User and system time, in seconds.
    pub cpu_seconds: f64,
    pub virtual_bytes: u64,
    pub resident_bytes: u64,
    /// Seconds since boot at which the process started.
    pub started_after_boot: f64,
}

/// Parses `/proc/<pid>/stat` with the kernel's clock ticks per second and page size. The command name may
/// hold spaces and parentheses: the fields are counted from its last `)`.
pub fn parse_stat(stat: &str, ticks_per_second: u64, page_size: u64) -> Option<Stat> {
    let (_, after) = stat.rsplit_once(')')?;
    // After the name: field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = ticks_per_second.max(1) as f64;
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
        started_after_boot: field(22)? as f64 / ticks,
    })
}

/// The boot time, seconds since the epoch: `btime` in `/proc/stat`.
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The soft limit of one line of `/proc/<pid>/limits` (`Max open files`, `Max address space`); `unlimited`
/// is `u64::MAX`, which the Go client exports as 1.8446744073709552e+19.
pub fn parse_soft_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

/// Open file descriptors: the entries of `/proc/self/fd` (the directory handle reading it is one of them,
/// as in the Go client).
pub fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

fn sysconf(var: nix::unistd::SysconfVar, default: u64) -> u64 {
    match nix::unistd::sysconf(var) {
        Ok(Some(value)) => u64::try_from(value).unwrap_or(default),
        _ => default,
    }
}

/// The process collector: register one per registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100);
        let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096);
        if let Some(stat) = read("/proc/self/stat").and_then(|s| parse_stat(&s, ticks, page)) {
            counter_f64(
                e,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                stat.cpu_seconds,
            )?;
            gauge(e, "process_virtual_memory_bytes", "Virtual memory size in bytes.", stat.virtual_bytes as f64)?;
            gauge(e, "process_resident_memory_bytes", "Resident memory size in bytes.", stat.resident_bytes as f64)?;
            if let Some(boot) = read("/proc/stat").as_deref().and_then(parse_boot_time) {
                let start = boot as f64 + stat.started_after_boot;
                gauge(
                    e,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    start,
                )?;
            }
        }
        if let Some(fds) = open_fds() {
            gauge(e, "process_open_fds", "Number of open file descriptors.", fds as f64)?;
        }
        if let Some(limits) = read("/proc/self/limits") {
            if let Some(max) = parse_soft_limit(&limits, "Max open files") {
                gauge(e, "process_max_fds", "Maximum number of open file descriptors.", max as f64)?;
            }
            if let Some(max) = parse_soft_limit(&limits, "Max address space") {
                let help = "Maximum amount of virtual memory available in bytes.";
                gauge(e, "process_virtual_memory_max_bytes", help, max as f64)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::metrics::{Format, encode};

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 1000 3133440 359 \
                    18446744073709551615 1 2 3 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line, 100, 4096).expect("parses");
        assert_eq!(
            stat,
            Stat { cpu_seconds: 3.0, virtual_bytes: 3133440, resident_bytes: 359 * 4096, started_after_boot: 10.0 }
        );
        assert_eq!(parse_stat("42 (truncated) S 1", 100, 4096), None);
    }

    #[test]
    fn limits_read_the_soft_column() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n\
                      Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_soft_limit(limits, "Max open files"), Some(1024));
        assert_eq!(parse_soft_limit(limits, "Max address space"), Some(u64::MAX));
        assert_eq!(parse_soft_limit(limits, "Max locked memory"), None);
    }

    /// The test process's own values, from the real files.
    #[test]
    fn this_process_has_plausible_values() {
        let ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK, 0);
        let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 0);
        assert!(ticks > 0 && page >= 4096, "{ticks} {page}");
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").expect("stat"), ticks, page).expect("parses");
        assert!(stat.resident_bytes > 1 << 20 && stat.resident_bytes < 1 << 34, "{stat:?}");
        assert!(stat.virtual_bytes >= stat.resident_bytes, "{stat:?}");
        assert!(stat.cpu_seconds >= 0.0 && stat.cpu_seconds < 3600.0, "{stat:?}");
        let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").expect("/proc/stat")).expect("btime");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64();
        let start = boot as f64 + stat.started_after_boot;
        assert!(start <= now + 1.0 && start > now - 3600.0, "started at {start}, now {now}");
        assert!(open_fds().is_some_and(|n| n > 3), "stdin, stdout, stderr and the directory");
        let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
        assert!(parse_soft_limit(&limits, "Max open files").is_some_and(|n| n >= 64));
        assert!(parse_soft_limit(&limits, "Max address space").is_some());
    }

    #[test]
    fn the_families_are_the_go_clients() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let text = encode(&registry, Format::Text).expect("encode");
        for (name, kind) in [
            ("process_cpu_seconds_total", "counter"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_virtual_memory_max_bytes", "gauge"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_start_time_seconds", "gauge"),
        ] {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} in {text}");
            assert!(text.lines().any(|l| l.strip_prefix(name).is_some_and(|v| v.starts_with(' '))), "{text}");
        }
        let (code, complaints) = promsd_tests::promtool(&["check", "metrics"], text.as_bytes());
        assert_eq!((code, complaints.as_str()), (Some(0), ""), "{text}");
    }
}
