//! Running external programs as argument vectors, with a deadline and captured output.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished program left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The last non-empty line of stderr (or stdout): usually the actual error.
    pub fn last_error_line(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .chain(self.stdout.lines().rev())
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| format!("exited with {}", self.status))
    }
}

/// Why a program could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{program}` did not finish within {}s and was killed", timeout.as_secs())]
    Timeout { program: String, timeout: Duration, output: Output },
    #[error("waiting for `{program}`: {source}")]
    Wait { program: String, source: std::io::Error },
}

/// Run `cmd` to completion, killing it after `timeout`. stdin is closed.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    // Own process group: a Ctrl-C or a SIGTERM to berth's group must not kill a
    // compose run half-way; berth decides when to stop (and kills on timeout).
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn { program: program.clone(), source })?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_t = reader(out.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err_t = reader(err.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let mut poll = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let status = child.wait();
                break Err(status);
            }
            Ok(None) => {
                std::thread::sleep(poll);
                poll = (poll * 2).min(Duration::from_millis(50));
            }
            Err(source) => return Err(RunError::Wait { program, source }),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    match status {
        Ok(status) => Ok(Output { status, stdout, stderr }),
        Err(Ok(status)) => Err(RunError::Timeout { program, timeout, output: Output { status, stdout, stderr } }),
        Err(Err(source)) => Err(RunError::Wait { program, source }),
    }
}

/// Render a command line for logs (arguments are shown, never passed through a shell).
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Is `program` found on PATH?
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| is_executable(&d.join(program))))
        .unwrap_or(false)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out =
            run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.last_error_line(), "err");
    }

    #[test]
    fn kills_on_timeout() {
        let err = run(Command::new("sleep").arg("30"), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
    }

    #[test]
    fn missing_programs_are_reported() {
        let err = run(&mut Command::new("berth-no-such-program"), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("cannot start `berth-no-such-program`"));
    }
}
