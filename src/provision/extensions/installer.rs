//! Running code-server's extension installer as a child process: its arguments and
//! environment, a time limit that kills its whole process group, and a failure message
//! made of the last lines it printed.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Output kept per stream (the tail is what matters).
const OUTPUT_KEEP: usize = 64 * 1024;
/// How long to wait for the output pipes to close once the installer has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// Most characters of installer output carried in a failure.
const MESSAGE_MAX: usize = 600;
/// Lines of installer output carried in a failure.
const MESSAGE_LINES: usize = 3;

/// How to run code-server's extension installer: the same for every server.
#[derive(Debug, Clone)]
pub struct InstallerSettings {
    /// The code-server binary.
    pub binary: PathBuf,
    /// Extra environment, e.g. `EXTENSIONS_GALLERY`.
    pub env: Vec<(String, String)>,
    /// Inherited variables to remove (e.g. `VSCODE_IPC_HOOK_CLI`, devbox's own
    /// `DEVBOX_…` ones: see [`crate::runtime::scrubbed_env`]).
    pub env_remove: Vec<OsString>,
    /// Time limit of one install.
    pub timeout: Duration,
}

/// Kills a process group unless disarmed; covers the future being dropped mid-install.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is already gone) is the normal case after a clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `<binary> --extensions-dir E --user-data-dir D/user-data --install-extension ARG`
/// with its XDG folders under `data_dir`, in its own process group with stdin null. On
/// timeout, or when the future is dropped, the whole group is killed. A failure says
/// why in a line a user understands (the installer's last output lines).
pub(super) async fn run_installer(
    arg: &OsStr,
    settings: &InstallerSettings,
    extensions_dir: &Path,
    data_dir: &Path,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(&settings.binary);
    cmd.arg("--extensions-dir")
        .arg(extensions_dir)
        .arg("--user-data-dir")
        .arg(data_dir.join("user-data"))
        .arg("--install-extension")
        .arg(arg);
    for key in &settings.env_remove {
        cmd.env_remove(key);
    }
    cmd.envs(settings.env.iter().map(|(k, v)| (k, v)))
        .env("XDG_DATA_HOME", data_dir.join("xdg"))
        .env("XDG_CONFIG_HOME", data_dir.join("xdg"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: runs between fork and exec; umask(2) is async-signal-safe and allocates
    // nothing.
    unsafe {
        // Files readable by all, whatever devbox's own umask (077 under isolation):
        // the cache's files are hard-linked into instances of other users; the cache's
        // folder keeps everyone else out.
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            Ok(())
        });
    }

    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", settings.binary.display()))?;
    let mut guard = GroupGuard {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let stdout = tokio::spawn(read_tail(child.stdout.take()));
    let stderr = tokio::spawn(read_tail(child.stderr.take()));

    let waited = tokio::time::timeout(settings.timeout, child.wait()).await;
    // Whatever happened, nothing of this install may outlive it: the group is killed while
    // its leader is still ours (not yet reaped) on timeout, or right after a normal exit.
    guard.kill();
    let status = match waited {
        Ok(status) => Some(status),
        Err(_elapsed) => {
            let _ = child.wait().await;
            None
        }
    };
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    let tail = useful_output(&stdout, &stderr);

    match status {
        None => {
            let mut msg = format!("timed out after {}", human_duration(settings.timeout));
            if !tail.is_empty() {
                msg.push_str(" (last output: ");
                msg.push_str(&tail);
                msg.push(')');
            }
            Err(msg)
        }
        Some(Err(e)) => Err(format!("cannot wait for the installer: {e}")),
        Some(Ok(status)) if status.success() => Ok(()),
        Some(Ok(status)) if tail.is_empty() => {
            Err(format!("installer failed ({status}) without output"))
        }
        Some(Ok(_)) => Err(tail),
    }
}

async fn read_tail<R: AsyncRead + Unpin>(reader: Option<R>) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_KEEP {
                    kept.drain(..kept.len() - OUTPUT_KEEP);
                }
            }
        }
    }
    if kept.len() > OUTPUT_KEEP {
        kept.drain(..kept.len() - OUTPUT_KEEP);
    }
    kept
}

/// Waits briefly for a pipe reader; a pipe held open by an escaped descendant must not hang us.
async fn collect(task: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    let abort = task.abort_handle();
    match tokio::time::timeout(PIPE_GRACE, task).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => Vec::new(),
        Err(_) => {
            abort.abort();
            Vec::new()
        }
    }
}

/// The last few non-empty lines, stderr first (where the installer reports errors), ANSI
/// colour codes removed, trimmed to a readable length.
fn useful_output(stdout: &[u8], stderr: &[u8]) -> String {
    let lines = |bytes: &[u8]| -> Vec<String> {
        let text = strip_ansi(&String::from_utf8_lossy(bytes));
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut chosen = lines(stderr);
    if chosen.is_empty() {
        chosen = lines(stdout);
    }
    let start = chosen.len().saturating_sub(MESSAGE_LINES);
    let tail = &chosen[start..];
    // code-server prints "Error while installing extensions: X" and then "X" again: keep
    // only lines that do not repeat another chosen line.
    let kept: Vec<&str> = tail
        .iter()
        .enumerate()
        .filter(|(i, line)| {
            !tail.iter().enumerate().any(|(j, other)| {
                j != *i && other.contains(line.as_str()) && (other.len() > line.len() || j < *i)
            })
        })
        .map(|(_, line)| line.as_str())
        .collect();
    let joined = kept.join(" | ");
    if joined.chars().count() > MESSAGE_MAX {
        let skip = joined.chars().count() - MESSAGE_MAX;
        format!("…{}", joined.chars().skip(skip).collect::<String>())
    } else {
        joined
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters until a final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_duration_formatting() {
        assert_eq!(useful_output(b"a\nb\n", b""), "a | b");
        assert_eq!(useful_output(b"a\n", b"\n  x  \n y\n z\n w\n"), "y | z | w");
        assert_eq!(useful_output(b"", b""), "");
        assert_eq!(
            useful_output(
                b"Installing extensions...\n",
                b"Error while installing extensions: getaddrinfo ENOTFOUND open-vsx.org\ngetaddrinfo ENOTFOUND open-vsx.org\n"
            ),
            "Error while installing extensions: getaddrinfo ENOTFOUND open-vsx.org"
        );
        assert_eq!(useful_output(b"", b"same\nsame\n"), "same");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
        assert_eq!(human_duration(Duration::from_secs(120)), "2m");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }
}
