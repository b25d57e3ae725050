//! `devbox logs NAME [-n N] [-f] [--events]` without `--server`: a server's log files in
//! the state directory (code-server's output, or devbox's events about it), followed
//! as they grow with `-f`. Both are bounded in memory: the last lines come from the
//! file's last 64 KiB (long lines cut and marked), and `-f` copies new output to
//! stdout as it comes, in chunks, whatever its size.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::spec::is_valid_name;
use crate::status::server_dir;

/// How often `-f` looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

pub fn run(
    config: &Config,
    name: &str,
    lines: usize,
    follow: bool,
    events: bool,
) -> anyhow::Result<ExitCode> {
    if !is_valid_name(name) {
        bail!("`{name}` is not a valid server name");
    }
    let dir = server_dir(&config.controller.state_dir, name);
    if !dir.is_dir() {
        bail!(
            "no server `{name}` in {}",
            config.controller.state_dir.display()
        );
    }
    let file = dir.join(if events {
        "events.log"
    } else {
        "code-server.log"
    });
    for line in crate::logs::last_lines(&file, lines) {
        println!("{line}");
    }
    if follow {
        follow_file(&file)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what is appended to `path` until interrupted (restarting from the top when
/// the file is truncated by a rotation).
fn follow_file(path: &Path) -> anyhow::Result<()> {
    let mut offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0;
        }
        if len == offset {
            continue;
        }
        file.seek(SeekFrom::Start(offset))
            .context("cannot read the log")?;
        // Streamed, not collected: a burst of output (or one huge line) never sits in
        // memory whole. Bytes go out as written, valid UTF-8 or not.
        let mut stdout = std::io::stdout().lock();
        let copied = std::io::copy(&mut file.take(len - offset), &mut stdout)
            .context("cannot print the log")?;
        offset += copied;
        stdout.flush().context("cannot print the log")?;
    }
}
