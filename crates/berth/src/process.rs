//! Running external programs as argument vectors, with a deadline and captured output.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
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

    /// The actual error in one line: the meaningful part of stderr (or stdout), see [`summary`].
    pub fn error_summary(&self) -> String {
        summary(&self.stderr)
            .or_else(|| summary(&self.stdout))
            .unwrap_or_else(|| format!("exited with {}", self.status))
    }
}

/// Lines that say nothing about what failed: usage hints, warnings, compose v1's and age's trailers,
/// swarm notes.
fn is_noise(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || (l.starts_with("Run '") || l.starts_with("See '")) && l.contains("--help")
        || l.starts_with("WARN[")
        || l.starts_with("WARNING:")
        || l.starts_with("hint:")
        || l.contains("level=warning") && l.starts_with("time=")
        || l.ends_with("Encountered errors while bringing up the project.")
        || l.starts_with("Since --detach=false was not specified")
        || l.starts_with("In a future release, --detach=false")
        || l.ends_with("report unexpected or unhelpful errors at https://filippo.io/age/report")
}

/// Prefixes that mark a line as the error itself (git, docker, compose v1 and v2).
const ERROR_PREFIXES: [&str; 5] = ["fatal: ", "error: ", "Error: ", "Error response from daemon: ", "ERROR: "];

/// The error a failed program reported, in one line, for the docker CLI, compose v2 (the plugin),
/// docker-compose 1.x and git: the last line marked as an error, else the last message with its
/// indented continuation lines (a YAML error's location) and the line introducing it (`... is
/// invalid because:`); usage texts, help hints and warnings are skipped. `None` for empty output.
fn summary(text: &str) -> Option<String> {
    let mut lines: Vec<&str> = text.lines().map(|l| l.trim_end()).collect();
    // A usage text after the error (docker CLI), or instead of one (docopt in docker-compose 1.x).
    if let Some(u) = lines.iter().position(|l| l.trim_start().starts_with("Usage:")) {
        let full_help = lines[u..].iter().any(|l| matches!(l.trim(), "Options:" | "Commands:"));
        let says_why =
            lines[..u].iter().any(|l| ["unknown", "rror", "invalid", "requires"].iter().any(|w| l.contains(w)));
        if full_help && !says_why {
            return Some("the command line was refused (it printed its usage text)".into());
        }
        if lines[..u].iter().any(|l| !is_noise(l)) {
            lines.truncate(u);
        }
    }
    // (index in `lines`, line) of the lines that may carry the error.
    let kept: Vec<(usize, &str)> = lines.iter().copied().enumerate().filter(|(_, l)| !is_noise(l)).collect();
    if kept.is_empty() {
        return lines.iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string());
    }
    let is_head = |l: &str| !l.starts_with([' ', '\t']);
    let marked = kept.iter().rposition(|(_, l)| ERROR_PREFIXES.iter().any(|p| l.starts_with(p)));
    let Some(head) = marked.or_else(|| kept.iter().rposition(|(_, l)| is_head(l))) else {
        return Some(kept.iter().map(|(_, l)| l.trim()).collect::<Vec<_>>().join(" "));
    };
    // `The Compose file '...' is invalid because:` and the reasons under it, in one paragraph.
    let intro = match marked {
        Some(_) => None,
        None => kept[..head]
            .iter()
            .rposition(|(_, l)| is_head(l) && l.ends_with(':'))
            .filter(|&i| lines[kept[i].0..kept[head].0].iter().all(|l| !l.trim().is_empty())),
    };
    let s = match intro {
        Some(i) => {
            let reasons: Vec<String> = kept[i + 1..].iter().map(|(_, l)| tidy(l.trim())).collect();
            format!("{} {}", tidy(kept[i].1.trim()), reasons.join("; "))
        }
        None => {
            let n = 1 + kept[head + 1..].iter().take_while(|(_, l)| !is_head(l)).count();
            kept[head..head + n].iter().map(|(_, l)| tidy(l.trim())).collect::<Vec<_>>().join(" ")
        }
    };
    Some(clip(s, 1000))
}

/// At most `max` bytes, cut at a character boundary.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let cut = (0..=max).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Drop what only repeats the kind of error: compose v1's `ERROR: for SERVICE  ` becomes
/// `SERVICE: `, and PyYAML's exception class goes.
fn tidy(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("ERROR: for ")
        && let Some((service, msg)) = rest.split_once("  ")
    {
        return format!("{service}: {}", msg.trim());
    }
    let line = line.strip_prefix("ERROR: ").unwrap_or(line);
    if line.starts_with("yaml.")
        && let Some((class, msg)) = line.split_once(": ")
        && class.ends_with("Error")
    {
        return msg.to_string();
    }
    line.to_string()
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
    let (status, stdout, stderr) = run_raw(cmd, None, timeout)?;
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let (stdout, stderr) = (text(stdout), text(stderr));
    match status {
        Ok(status) => Ok(Output { status, stdout, stderr }),
        Err(status) => Err(RunError::Timeout {
            program: cmd.get_program().to_string_lossy().into_owned(),
            timeout,
            output: Output { status, stdout, stderr },
        }),
    }
}

/// Run `cmd` with `input` on its stdin; its stdout as bytes (binary-safe, for `git cat-file --batch`).
pub fn run_with_input(cmd: &mut Command, input: Vec<u8>, timeout: Duration) -> Result<(Output, Vec<u8>), RunError> {
    let (status, stdout, stderr) = run_raw(cmd, Some(input), timeout)?;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    match status {
        Ok(status) => Ok((Output { status, stdout: String::new(), stderr }, stdout)),
        Err(status) => Err(RunError::Timeout {
            program: cmd.get_program().to_string_lossy().into_owned(),
            timeout,
            output: Output { status, stdout: String::new(), stderr },
        }),
    }
}

/// The exit status (`Err` when killed at the deadline), stdout and stderr of `cmd`.
type Raw = (Result<ExitStatus, ExitStatus>, Vec<u8>, Vec<u8>);

fn run_raw(cmd: &mut Command, input: Option<Vec<u8>>, timeout: Duration) -> Result<Raw, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    // Own process group: a Ctrl-C or a SIGTERM to berth's group must not kill a
    // compose run half-way; berth decides when to stop (and kills on timeout).
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn { program: program.clone(), source })?;
    // Written from its own thread: a program answering as it reads would otherwise fill its
    // stdout pipe while berth still writes, and both would wait forever. It ends when the pipe closes.
    if let Some((mut stdin, data)) = child.stdin.take().zip(input) {
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    // Each reader says when its pipe closed: the child's exit, noticed at once rather than by polling.
    // What it read is shared, not returned: a process the child started may keep the pipe open.
    let (closed, eof) = std::sync::mpsc::channel::<()>();
    let reader = |mut pipe: Option<Box<dyn Read + Send>>| {
        let (closed, buf) = (closed.clone(), Arc::new(Mutex::new(Vec::new())));
        let shared = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Some(p) = pipe.as_mut() {
                match p.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => shared.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = closed.send(());
        });
        buf
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    drop(closed);
    let deadline = Instant::now() + timeout;
    let mut open = 2;
    let mut poll = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                // The whole group: `docker compose` runs the compose plugin as its child.
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                match child.wait() {
                    Ok(status) => break Err(status),
                    Err(source) => return Err(RunError::Wait { program, source }),
                }
            }
            Ok(None) => {}
            Err(source) => return Err(RunError::Wait { program, source }),
        }
        let step = poll.min(deadline.saturating_duration_since(Instant::now()));
        if open > 0 && eof.recv_timeout(step).is_ok() {
            open -= 1;
            poll = Duration::from_millis(1);
        } else {
            if open == 0 {
                std::thread::sleep(step);
            }
            poll = (poll * 2).min(Duration::from_millis(50));
        }
    };
    // The pipes close with the child unless something it started in the background holds them:
    // then what was read so far is the output, and that reader is left to finish on its own.
    let linger = Instant::now() + LINGER;
    while open > 0 && eof.recv_timeout(linger.saturating_duration_since(Instant::now())).is_ok() {
        open -= 1;
    }
    let take = |b: Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *b.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((status, take(stdout), take(stderr)))
}

/// How long berth still reads a program's output after it exited.
const LINGER: Duration = Duration::from_secs(1);

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
        assert_eq!(out.error_summary(), "err");
    }

    #[test]
    fn kills_on_timeout() {
        let err = run(Command::new("sleep").arg("30"), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
    }

    /// `run` in a thread, failing the test when it has not returned within 15 s.
    fn returns(args: &'static [&'static str], timeout: Duration) -> Result<Output, RunError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run(Command::new(args[0]).args(&args[1..]), timeout));
        });
        rx.recv_timeout(Duration::from_secs(15)).expect("run did not return while a grandchild held its output")
    }

    #[test]
    fn a_background_process_holding_the_output_does_not_hold_berth() {
        let out = returns(&["sh", "-c", "sleep 20 & echo hi"], Duration::from_secs(120)).unwrap();
        assert_eq!((out.stdout.as_str(), out.status.code()), ("hi\n", Some(0)));
    }

    #[test]
    fn a_timeout_kills_what_the_program_started_too() {
        // `docker compose` runs the compose plugin as its child: killing `docker` alone leaves it running.
        let err = returns(&["sh", "-c", "echo started; sleep 60; echo never"], Duration::from_millis(300)).unwrap_err();
        match err {
            RunError::Timeout { output, .. } => assert_eq!(output.stdout, "started\n"),
            other => panic!("expected a timeout, got {other}"),
        }
    }

    #[test]
    fn missing_programs_are_reported() {
        let err = run(&mut Command::new("berth-no-such-program"), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("cannot start `berth-no-such-program`"));
    }

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stderr").join(format!("{name}.txt"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn summarised(name: &str) -> String {
        summary(&fixture(name)).unwrap()
    }

    #[test]
    fn yaml_errors_keep_their_message_and_location() {
        assert_eq!(
            summarised("v2-config-bad"),
            "failed to parse /tmp/cerr/bad/compose.yaml: yaml: line 1: did not find expected key"
        );
        assert_eq!(
            summarised("v1-config-bad"),
            "expected <block end>, but found '<block mapping start>' in \"/tmp/cerr/bad/compose.yaml\", line 4, column 4"
        );
        assert_eq!(summarised("stack-config-bad"), "yaml: line 1: did not find expected key");
    }

    #[test]
    fn unknown_service_keys_name_the_key_and_the_file() {
        assert_eq!(
            summarised("v2-config-key"),
            "validating /tmp/cerr/key/compose.yaml: services.app additional properties 'imagee' not allowed"
        );
        assert_eq!(
            summarised("v1-config-key"),
            "The Compose file '/tmp/cerr/key/compose.yaml' is invalid because: Unsupported config option for services.app: 'imagee'"
        );
        assert_eq!(summarised("stack-config-key"), "services.app Additional property imagee is not allowed");
        let several = "The Compose file './c.yaml' is invalid because:\nUnsupported config option for services.a: 'x'\nservices.a.ports is invalid\n";
        assert_eq!(
            summary(several).unwrap(),
            "The Compose file './c.yaml' is invalid because: Unsupported config option for services.a: 'x'; services.a.ports is invalid"
        );
    }

    #[test]
    fn unknown_options_are_named_not_the_help_hint() {
        assert_eq!(summarised("v2-opt"), "unknown flag: --bogus");
        assert_eq!(summarised("noplugin"), "unknown flag: --project-name");
        assert_eq!(summarised("stack-opt"), "unknown flag: --bogus");
        // docker-compose 1.x prints only its usage text.
        for f in ["v1-gopt", "v1-opt"] {
            assert_eq!(summarised(f), "the command line was refused (it printed its usage text)", "{f}");
        }
    }

    #[test]
    fn registry_and_engine_refusals_are_the_daemon_s_answer() {
        let refused = r#"Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused"#;
        assert_eq!(summarised("v2-pullup"), format!("Error response from daemon: {refused}"));
        assert_eq!(summarised("v1-pullup"), refused);
        assert_eq!(summarised("v1-pullcmd"), format!("app: {refused}"));
        let start = r#"Cannot start service app: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/nosuch": stat /nosuch: no such file or directory: unknown"#;
        assert_eq!(summarised("v1-start"), format!("app: {start}"));
        assert!(summarised("v2-start").starts_with("Error response from daemon: failed to create shim task"));
        assert!(summarised("stack-noswarm").starts_with("this node is not a swarm manager."));
    }

    #[test]
    fn git_errors_are_the_fatal_line_not_the_hints() {
        let text = "fatal: ambiguous argument 'nope': unknown revision or path not in the working tree.\nUse '--' to separate paths from revisions, like this:\n'git <command> [<revision>...] -- [<file>...]'\n";
        assert_eq!(
            summary(text).unwrap(),
            "fatal: ambiguous argument 'nope': unknown revision or path not in the working tree."
        );
        let push = "To /tmp/r\n ! [rejected]        v1 -> v1 (already exists)\nerror: failed to push some refs to '/tmp/r'\nhint: Updates were rejected because the tag already exists in the remote.\n";
        assert_eq!(summary(push).unwrap(), "error: failed to push some refs to '/tmp/r'");
    }

    #[test]
    fn other_output_falls_back_to_its_last_message() {
        assert_eq!(summary("step 1\nstep 2 failed\n").unwrap(), "step 2 failed");
        assert_eq!(summary("WARN[0000] only a warning\n").unwrap(), "WARN[0000] only a warning");
        assert_eq!(summary("\n  \n"), None);
        assert_eq!(summary("    indented\n    only\n").unwrap(), "indented only");
    }
}
