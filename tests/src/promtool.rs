//! Prometheus's own check of an exposition body: `promtool check metrics`, as the real peer the metric
//! endpoints and the agent's verification are compared with.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `promtool ARGS` said of `body` on stdin: its exit code (0 clean, 3 lint problems only, 1 a parse
/// error on Debian's 2.42) and what it printed. A missing promtool fails the test; so does one that takes
/// over 20 s.
pub fn promtool(args: &[&str], body: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new("/usr/bin/promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/promtool ({e}): install Debian's `prometheus` package"));
    let mut stdin = child.stdin.take().expect("stdin");
    let body = body.to_vec();
    // Written from a thread, so a body larger than the pipe cannot block us before promtool reads it.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait for promtool").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("promtool took over 20 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = writer.join();
    let output = child.wait_with_output().expect("promtool's output");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), printed)
}

/// Asserts that a daemon's `/metrics` body has what every official exporter has: the Go client's process
/// families (with plausible values: open fds, a start time in the last hour) and `<daemon>_build_info` with
/// Prometheus's labels, `rustversion` for `goversion`.
pub fn assert_exporter_basics(body: &str, daemon: &str) {
    let value = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{body}"))
    };
    for name in [
        "process_cpu_seconds_total",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(value(name) > 0.0 || name == "process_cpu_seconds_total", "{name} in:\n{body}");
    }
    assert!(value("process_open_fds") > 3.0, "{body}");
    assert!(value("process_resident_memory_bytes") > 1e6, "{body}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 3600.0, "started {started}, now {now}");
    let build_info = format!(
        "{daemon}_build_info{{version=\"{}\",revision=\"{}\",branch=\"{}\",rustversion=\"{}\"}} 1",
        promsd_buildinfo::VERSION,
        promsd_buildinfo::REVISION,
        promsd_buildinfo::BRANCH,
        promsd_buildinfo::RUST_VERSION
    );
    assert!(body.lines().any(|l| l == build_info), "{build_info} missing from:\n{body}");
    assert!(promsd_buildinfo::RUST_VERSION.starts_with("1."));
}

/// A sample line (`name{labels} value`, or without its value) in a form both exposition formats give alike:
/// labels sorted (they put a histogram's `le` first or last) and `le` by value (text writes `5e-06` and `1`,
/// OpenMetrics `0.000005` and `1.0`).
pub fn normalize_sample(line: &str) -> String {
    let Some((name, rest)) = line.split_once('{') else { return line.to_owned() };
    let (labels, value) = rest.rsplit_once('}').expect("a closing brace");
    let mut labels: Vec<String> = labels
        .split("\",")
        .map(|l| l.trim_end_matches('"'))
        .map(|l| match l.strip_prefix("le=\"") {
            Some(le) => format!("le={:?}", le.parse::<f64>().expect("a bound")),
            None => l.to_owned(),
        })
        .collect();
    labels.sort();
    format!("{name}{{{}}}{value}", labels.join(","))
}
