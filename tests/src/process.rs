//! A child process whose output goes to a log file and which is killed when the test drops it.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let out = File::options().create(true).append(true).open(log).expect("open log file");
        let err = out.try_clone().expect("clone log file");
        // Its own process group, so that dropping it also ends what it started (an exporter under
        // `registrar run`, anything left in a namespace) even when the test killed the parent first.
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self { name: name.to_string(), child: Some(child), log: log.to_path_buf() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The process's output so far, for assertions and failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for a line of the log containing `pattern` and returns that line; panics with the
    /// whole log on timeout.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> String {
        self.wait_for_log_count(pattern, 1, timeout)
    }

    /// Waits up to `timeout` for the `n`th line of the log containing `pattern` and returns it.
    pub fn wait_for_log_count(&self, pattern: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().filter(|l| l.contains(pattern)).nth(n.saturating_sub(1)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {n} log line(s) with {pattern:?} within {timeout:?}:\n{log}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (TERM, KILL, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.map(|s| s.success()).unwrap_or(false), "cannot send SIG{signal} to {}", self.name);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().map(|c| matches!(c.try_wait(), Ok(None))).unwrap_or(false)
    }

    /// Kills the process and everything in its process group.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ =
                Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the process with this pid (one the test started, or that reported its own pid) still runs: it
/// exists and is not a zombie waiting to be reaped.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself contain ") ".
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_alive_follows_a_process_to_its_end_and_a_zombie_is_not_alive() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        assert!(pid_alive(child.id()));
        child.kill().expect("kill");
        // Killed but not reaped yet: a zombie, which runs nothing.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(child.id()) {
            assert!(Instant::now() < deadline, "a killed process still counts as alive");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait().expect("reap");
        assert!(!pid_alive(child.id()));
    }
}
