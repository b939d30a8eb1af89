//! `method: exec`: a command run per scrape, in its own process group, killed whole at the deadline.
//! Its arguments are the configured ones followed by the request's `args=` values, as exporter_exporter runs
//! it: the command is never a shell, so an argument is only ever an argument.

use std::time::Duration;

use bytes::Bytes;

use super::{BackendError, Fetched, TEXT_FORMAT};
use crate::config::ExecModule;

pub async fn run(module: &str, exec: &ExecModule, args: &[&str], deadline: Duration) -> Result<Fetched, BackendError> {
    let mut command = tokio::process::Command::new(&exec.command);
    command
        .args(&exec.args)
        .args(args)
        .envs(&exec.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| BackendError::Spawn { command: exec.command.clone(), source })?;
    let pid = child.id();
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => {
            Ok(Fetched { content_type: TEXT_FORMAT.into(), content_encoding: None, body: Bytes::from(output.stdout) })
        }
        Ok(Ok(output)) => {
            let stderr: String = String::from_utf8_lossy(&output.stderr).chars().take(500).collect();
            tracing::warn!(module, command = %exec.command, status = %output.status, %stderr, "command failed");
            Err(BackendError::Exited { command: exec.command.clone(), status: output.status })
        }
        Ok(Err(source)) => Err(BackendError::Spawn { command: exec.command.clone(), source }),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            Err(BackendError::Timeout(deadline))
        }
    }
}
