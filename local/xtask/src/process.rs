//! Background processes the stack starts: each has a pid file and a log file in the stack's
//! directory, so `down` (from any later shell) can find and stop exactly what `up` started.
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Daemon {
    pub name: String,
    pub dir: PathBuf,
}

impl Daemon {
    /// Polls `ready` until it says yes, failing at once (with the log's tail) if the process
    /// died meanwhile.
    pub fn wait_ready(
        &self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        crate::net::wait_for(what, timeout, || {
            if self.running_pid().is_none() {
                anyhow::bail!(
                    "{} exited; last log lines:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            ready()
        })
        .with_context(|| format!("see {}", self.log_path().display()))
    }

    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.name))
    }

    /// The pid from the pid file, if that process still runs the program we started.
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.pid_path())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let program = fs::read_to_string(self.dir.join(format!("{}.program", self.name))).ok()?;
        is_alive(pid, program.trim()).then_some(pid)
    }

    /// Starts `command` detached (own process group, so a terminal's Ctrl-C on `cargo xtask`
    /// does not take the lattice down with it), output appended to the log file.
    pub fn spawn(&self, command: &mut Command) -> Result<u32> {
        fs::create_dir_all(&self.dir)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to start {}", self.name))?;
        let pid = child.id();
        fs::write(self.pid_path(), pid.to_string())?;
        fs::write(
            self.dir.join(format!("{}.program", self.name)),
            program_name(command),
        )?;
        Ok(pid)
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`; then the same for any of its
    /// children still running (a host's providers, should the host die without stopping them).
    /// Harmless when not running.
    pub fn stop(&self, grace: Duration) -> Result<bool> {
        let Some(pid) = self.running_pid() else {
            let _ = fs::remove_file(self.pid_path());
            return Ok(false);
        };
        let program = fs::read_to_string(self.dir.join(format!("{}.program", self.name)))?;
        let children = children_of(pid);
        terminate(pid, program.trim(), grace);
        for (child, child_program) in children {
            terminate(child, &child_program, grace);
        }
        let _ = fs::remove_file(self.pid_path());
        Ok(true)
    }

    /// SIGKILL to it and its children at once, as when the machine under it is lost: nothing
    /// gets to say goodbye (a host's providers are its children).
    pub fn kill_hard(&self) -> Result<bool> {
        let Some(pid) = self.running_pid() else {
            return Ok(false);
        };
        let children = children_of(pid);
        signal(pid, "KILL");
        for (child, _) in &children {
            signal(*child, "KILL");
        }
        // A killed process closes its sockets only after the kernel has torn down its memory
        // (exit_mm comes before exit_files), which for a host with wasmtime's reservations can
        // take a moment on a loaded machine. Until then NATS still routes calls to it, so the
        // kill is not done until every process has exited: callers time the loss from here.
        let pids: Vec<u32> = std::iter::once(pid)
            .chain(children.iter().map(|(c, _)| *c))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while pids.iter().any(|p| !has_exited(*p)) {
            if Instant::now() > deadline {
                bail!(
                    "{} (pid {pid}) has not exited 30 s after SIGKILL",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = fs::remove_file(self.pid_path());
        Ok(true)
    }

    /// SIGSTOP (`pause`) or SIGCONT: the process keeps its connections but stops answering on
    /// them, as a hung or overloaded server does; its children (a host's providers) go on.
    pub fn pause(&self, pause: bool) -> Result<()> {
        let pid = self
            .running_pid()
            .with_context(|| format!("{} is not running", self.name))?;
        signal(pid, if pause { "STOP" } else { "CONT" });
        Ok(())
    }

    /// The last `n` lines of the log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn terminate(pid: u32, program: &str, grace: Duration) {
    if !is_alive(pid, program) {
        return;
    }
    signal(pid, "TERM");
    let deadline = Instant::now() + grace;
    while is_alive(pid, program) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if is_alive(pid, program) {
        signal(pid, "KILL");
    }
}

/// Direct children of `parent` with their argv[0], from /proc.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            ppid == Some(parent.to_string().as_str())
        })
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            (pid, String::from_utf8_lossy(argv0).into_owned())
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The file name of `command`'s program: what `is_alive` finds as its argv[0]'s end.
fn program_name(command: &Command) -> String {
    let program = Path::new(command.get_program());
    program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// Gone, or a zombie (field 3 of stat, after the parenthesised command name, is the state; Z
/// and X are dead): past the point where the kernel closes a dying process's files.
fn has_exited(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some("Z") | Some("X") | None)
}

/// Alive and not a zombie, and running `program` (guards against a recycled pid).
pub fn is_alive(pid: u32, program: &str) -> bool {
    if has_exited(pid) {
        return false;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(argv0).ends_with(program)
}

/// Runs a command to completion, failing with its output when it fails.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("failed to run {:?}", command.get_program()))?;
    stdout_of(command, output)
}

/// `run`, with `input` fed on stdin: how a secret reaches a command without being in its argv,
/// where `ps` would show it.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {:?}", command.get_program()))?;
    child
        .stdin
        .take()
        .context("the command's stdin")?
        .write_all(input)?;
    let output = child.wait_with_output()?;
    stdout_of(command, output)
}

/// What a finished command printed, or an error with all it printed when it failed.
fn stdout_of(command: &Command, output: std::process::Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        anyhow::bail!(
            "{:?} failed ({}):\n{}{}",
            command.get_program(),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// Runs a command with its output shown, failing when it fails.
pub fn run_visible(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("failed to run {:?}", command.get_program()))?;
    anyhow::ensure!(
        status.success(),
        "{:?} failed ({status})",
        command.get_program()
    );
    Ok(())
}
