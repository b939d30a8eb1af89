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
