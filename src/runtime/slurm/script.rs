//! The bash script a job runs ([`job_script`], pure): start the program in the
//! background, find the port it listens on in its output, report `host:port` as the
//! job's comment, forward SIGTERM to it, and exit with its status.
//!
//! The program (code-server with `--bind-addr 0.0.0.0:0`) picks a free port on the
//! node and prints `HTTP server listening on http://0.0.0.0:PORT/` to stdout, which
//! goes to the job's log. The log is opened in append mode and holds earlier runs, so
//! only what was written after the script started counts: its size is taken before
//! the program starts and the output read from there (`tail -c +N`).
//!
//! Every value from devbox (program, arguments, variables, log path) is quoted in
//! single quotes; the variables are given to the program alone (assignments before
//! its command), so they can change neither the script's own variables nor the `PATH`
//! it finds `scontrol` with.

use std::path::{Path, PathBuf};

/// What a job runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobScript {
    /// The program, with an absolute path as the node sees it.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Variables added to the program's environment (the job's own, from
    /// `sbatch --export=NONE`, is the user's login environment on the node).
    pub env: Vec<(String, String)>,
    /// The job's log (the request's `log_file`), where the program's output goes.
    pub log_file: PathBuf,
    /// How the node names itself to devbox: a bash word expanded inside double quotes
    /// on the node; `None`: `$(hostname)`.
    pub host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("environment variable name {0:?} is not a shell identifier")]
    EnvName(String),
    #[error("{0} holds a NUL byte, which no shell word can carry")]
    Nul(String),
    #[error("{what} {} is not UTF-8", .path.display())]
    NotUtf8 { what: &'static str, path: PathBuf },
    #[error("host expression {0:?} holds a '\"' or a line break")]
    Host(String),
}

const DEFAULT_HOST: &str = "$(hostname)";

/// The job script for `job`; see the module's doc for what it does.
pub fn job_script(job: &JobScript) -> Result<String, ScriptError> {
    let program = quote("the program", utf8("program", &job.program)?)?;
    let log = quote("the log path", utf8("log file", &job.log_file)?)?;
    let host = job.host.as_deref().unwrap_or(DEFAULT_HOST);
    if host.contains(['"', '\n', '\r']) {
        return Err(ScriptError::Host(host.to_owned()));
    }
    let mut command = String::new();
    for (name, value) in &job.env {
        if !is_identifier(name) {
            return Err(ScriptError::EnvName(name.clone()));
        }
        command.push_str(&format!("{name}={} \\\n  ", quote(name, value)?));
    }
    command.push_str(&program);
    for arg in &job.args {
        command.push(' ');
        command.push_str(&quote("an argument", arg)?);
    }

    Ok(format!(
        r#"#!/bin/bash
# Written by devbox: runs one server as this Slurm job, reports where it listens as the
# job's comment (host:port), forwards SIGTERM to it, and exits with its status.
set -u
devbox_log={log}
devbox_pid=
devbox_stopping=
devbox_forward() {{
  devbox_stopping=1
  [ -n "$devbox_pid" ] && kill -TERM "$devbox_pid" 2>/dev/null
}}
trap devbox_forward TERM INT HUP

# The log holds earlier runs: only what the program writes from now on counts.
devbox_offset=$(( $(wc -c <"$devbox_log" 2>/dev/null || echo 0) + 1 ))
{command} &
devbox_pid=$!
[ -n "$devbox_stopping" ] && kill -TERM "$devbox_pid" 2>/dev/null

devbox_port=
while [ -z "$devbox_port" ]; do
  devbox_port=$(tail -c +"$devbox_offset" "$devbox_log" 2>/dev/null |
    sed -n 's|.* server listening on https\{{0,1\}}://.*:\([0-9][0-9]*\)/.*|\1|p' | head -n 1)
  [ -n "$devbox_port" ] && break
  if ! kill -0 "$devbox_pid" 2>/dev/null; then
    wait "$devbox_pid"
    devbox_status=$?
    echo "devbox: the program exited with status $devbox_status before it listened" >&2
    exit "$devbox_status"
  fi
  sleep 0.1
done

devbox_endpoint="{host}:$devbox_port"
devbox_tries=0
until scontrol update JobId="$SLURM_JOB_ID" Comment="$devbox_endpoint"; do
  devbox_tries=$((devbox_tries + 1))
  if [ "$devbox_tries" -ge 10 ] || ! kill -0 "$devbox_pid" 2>/dev/null; then
    echo "devbox: could not report $devbox_endpoint as the comment of job $SLURM_JOB_ID" >&2
    break
  fi
  sleep 2
done

# A trapped signal interrupts wait while the program still runs: wait again.
while :; do
  wait "$devbox_pid"
  devbox_status=$?
  kill -0 "$devbox_pid" 2>/dev/null || break
done
# The program may have ended while the trap ran: its own status, if bash still has it.
wait "$devbox_pid" 2>/dev/null
devbox_last=$?
[ "$devbox_last" -ne 127 ] && devbox_status=$devbox_last
exit "$devbox_status"
"#
    ))
}

fn utf8<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, ScriptError> {
    path.to_str().ok_or_else(|| ScriptError::NotUtf8 {
        what,
        path: path.to_owned(),
    })
}

/// `text` as one bash word: single quotes, each `'` as `'\''`.
fn quote(what: &str, text: &str) -> Result<String, ScriptError> {
    if text.contains('\0') {
        return Err(ScriptError::Nul(what.to_owned()));
    }
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn job() -> JobScript {
        JobScript {
            program: PathBuf::from("/opt/code-server/bin/code-server"),
            args: vec!["--bind-addr".to_owned(), "0.0.0.0:0".to_owned()],
            env: vec![("PASSWORD".to_owned(), "s3cret".to_owned())],
            log_file: PathBuf::from("/shared/logs/ide.log"),
            host: None,
        }
    }

    #[test]
    fn the_script_is_a_batch_script_that_runs_the_program_with_its_variables() {
        let script = job_script(&job()).unwrap();
        assert!(script.starts_with("#!/bin/bash\n"), "{script}");
        assert!(script.contains("\nset -u\n"), "{script}");
        assert!(
            script.contains(
                "PASSWORD='s3cret' \\\n  '/opt/code-server/bin/code-server' '--bind-addr' '0.0.0.0:0' &\n"
            ),
            "{script}"
        );
        assert!(
            script.contains("devbox_log='/shared/logs/ide.log'\n"),
            "{script}"
        );
        assert!(
            script.contains(r#"devbox_endpoint="$(hostname):$devbox_port""#),
            "{script}"
        );
    }

    #[test]
    fn the_host_expression_can_be_replaced() {
        let script = job_script(&JobScript {
            host: Some("$(hostname -f)".to_owned()),
            ..job()
        })
        .unwrap();
        assert!(
            script.contains(r#"devbox_endpoint="$(hostname -f):$devbox_port""#),
            "{script}"
        );
    }

    #[test]
    fn what_cannot_be_written_safely_is_refused() {
        for name in ["", "1A", "A-B", "A B", "A=B", "PATH;rm"] {
            let err = job_script(&JobScript {
                env: vec![(name.to_owned(), "x".to_owned())],
                ..job()
            })
            .unwrap_err();
            assert_eq!(err, ScriptError::EnvName(name.to_owned()));
        }
        let err = job_script(&JobScript {
            args: vec!["a\0b".to_owned()],
            ..job()
        })
        .unwrap_err();
        assert!(matches!(err, ScriptError::Nul(_)), "{err:?}");
        let err = job_script(&JobScript {
            host: Some("\"; rm -rf /; \"".to_owned()),
            ..job()
        })
        .unwrap_err();
        assert!(matches!(err, ScriptError::Host(_)), "{err:?}");
    }

    /// Runs `bash -c 'printf "%s\n" WORD'` on the quoted `text`: what bash makes of it.
    fn bash_reads(text: &str) -> String {
        let word = quote("test", text).unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("printf '%s\\n' {word}"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn bash_reads_every_quoted_value_back_unchanged() {
        for text in [
            "",
            "plain",
            "it's",
            "''",
            "a\"b",
            "$HOME `id` $(id) \\ ! * ? [a] ~ ; & | < > #",
            "two\nlines",
            "tab\there",
            "ünïcödé",
        ] {
            assert_eq!(bash_reads(text), format!("{text}\n"), "{text:?}");
        }
    }

    /// Runs `job`'s script as Slurm would, but on this host: its output appended to
    /// the log, `SLURM_JOB_ID` set, and a stand-in `scontrol` first on `PATH` that
    /// records its arguments. Returns the script's child (running).
    struct LocalRun {
        dir: tempfile::TempDir,
        log: PathBuf,
    }

    impl LocalRun {
        fn new(old_log: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("job.log");
            std::fs::write(&log, old_log).unwrap();
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).unwrap();
            let scontrol = bin.join("scontrol");
            std::fs::write(
                &scontrol,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$*\" >>'{}'\n",
                    dir.path().join("scontrol.calls").display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&scontrol, std::fs::Permissions::from_mode(0o755)).unwrap();
            LocalRun { dir, log }
        }

        fn start(&self, program_script: &str) -> std::process::Child {
            let script = job_script(&JobScript {
                program: PathBuf::from("/bin/bash"),
                args: vec!["-c".to_owned(), program_script.to_owned()],
                env: vec![("GREETING".to_owned(), "it's \"here\" $HOME".to_owned())],
                log_file: self.log.clone(),
                host: Some("node7".to_owned()),
            })
            .unwrap();
            let log = || {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&self.log)
                    .unwrap()
            };
            let path = format!(
                "{}:{}",
                self.dir.path().join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            );
            Command::new("bash")
                .arg("-c")
                .arg(script)
                .env("PATH", path)
                .env("SLURM_JOB_ID", "77")
                .stdout(log())
                .stderr(log())
                .spawn()
                .unwrap()
        }

        fn scontrol_calls(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("scontrol.calls")).unwrap_or_default()
        }

        fn log(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap()
        }

        fn wait_for_calls(&self) -> String {
            for _ in 0..200 {
                let calls = self.scontrol_calls();
                if !calls.is_empty() {
                    return calls;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            panic!("scontrol never called; log:\n{}", self.log());
        }
    }

    #[test]
    fn the_port_printed_in_this_run_is_reported_not_one_from_an_earlier_run() {
        let run = LocalRun::new("HTTP server listening on http://0.0.0.0:1111/\n");
        let mut child = run.start(
            "printf '%s\\n' \"$GREETING\"; sleep 0.3; \
             echo 'HTTP server listening on http://0.0.0.0:2222/'; sleep 0.5; exit 3",
        );
        assert_eq!(run.wait_for_calls(), "update JobId=77 Comment=node7:2222\n");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(3), "log:\n{}", run.log());
        assert!(
            run.log().contains("\nit's \"here\" $HOME\n"),
            "{}",
            run.log()
        );
    }

    #[test]
    fn a_program_that_ends_before_it_listens_ends_the_job_with_its_status() {
        let run = LocalRun::new("");
        let status = run.start("echo starting; exit 7").wait().unwrap();
        assert_eq!(status.code(), Some(7), "log:\n{}", run.log());
        assert_eq!(run.scontrol_calls(), "");
        assert!(
            run.log()
                .contains("devbox: the program exited with status 7 before it listened"),
            "{}",
            run.log()
        );
    }

    #[test]
    fn sigterm_reaches_the_program_which_ends_the_script_with_its_status() {
        let run = LocalRun::new("");
        let mut child = run.start(
            "trap 'echo program got TERM; exit 42' TERM; \
             echo 'HTTP server listening on http://[::]:3333/'; \
             while :; do sleep 0.1; done",
        );
        assert_eq!(run.wait_for_calls(), "update JobId=77 Comment=node7:3333\n");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(42), "log:\n{}", run.log());
        assert!(run.log().contains("program got TERM"), "{}", run.log());
    }

    #[test]
    fn the_script_is_valid_bash() {
        let script = job_script(&JobScript {
            env: vec![("A_B".to_owned(), "x'y".to_owned())],
            args: vec!["it's".to_owned(), "$(nope)".to_owned()],
            ..job()
        })
        .unwrap();
        let out = Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
