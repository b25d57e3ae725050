//! `devbox doctor`: is everything devbox needs in place on this machine?

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::config::Config;
use crate::config::code_server_binary::{self, BinarySource};

struct Check {
    ok: bool,
    /// A failed optional check warns but does not fail the doctor.
    required: bool,
    what: String,
}

pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    match &config.source {
        Some(path) => checks.push(pass(format!("config {} is valid", path.display()))),
        None => checks.push(pass("config: embedded default".into())),
    }
    checks.push(code_server(
        &config.code_server.binary,
        &config.code_server.binary_source,
    ));
    checks.push(Check {
        ok: true,
        required: false,
        what: format!("git: libgit2 {} built in", libgit2_version()),
    });
    checks.push(match Command::new("git").arg("--version").output() {
        Ok(out) if out.status.success() => pass(format!(
            "git CLI: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        _ => Check {
            ok: false,
            required: false,
            what: "git CLI not found (optional: clones use the built-in libgit2)".into(),
        },
    });
    let range = config.server.code_server_port_range;
    let free = (range.start..=range.end).filter(|p| bindable(*p)).count();
    let total = usize::from(range.end - range.start) + 1;
    checks.push(Check {
        ok: free > 0,
        required: true,
        what: format!(
            "port range {}-{}: {free} of {total} ports free",
            range.start, range.end
        ),
    });
    let port = config.server.default_port;
    checks.push(Check {
        ok: bindable(port),
        required: false,
        what: format!(
            "HTTP port {port} {}",
            if bindable(port) {
                "is free"
            } else {
                "is in use (another devbox running?)"
            }
        ),
    });
    if let Some(tls) = &config.server.tls {
        checks.push(match crate::http::Tls::load(tls) {
            Ok(_) => pass(format!(
                "TLS certificate {} and key {} belong together",
                tls.cert.display(),
                tls.key.display()
            )),
            Err(err) => Check {
                ok: false,
                required: true,
                what: format!("TLS: {err}"),
            },
        });
    }
    for dir in [&config.controller.specs_dir, &config.controller.state_dir] {
        checks.push(writable(dir));
    }
    let vsix = config.vsix_dir();
    checks.push(Check {
        ok: vsix.is_dir(),
        required: false,
        what: format!(
            "vsix folder {} {}",
            vsix.display(),
            if vsix.is_dir() {
                "exists"
            } else {
                "does not exist (only needed for .vsix extensions)"
            }
        ),
    });

    let mut failed = false;
    for check in &checks {
        let mark = match (check.ok, check.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "warn",
        };
        failed |= !check.ok && check.required;
        println!("{mark} {}", check.what);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn pass(what: String) -> Check {
    Check {
        ok: true,
        required: true,
        what,
    }
}

/// Runs `binary --version` and says which code-server that is and how it was chosen.
fn code_server(binary: &Path, source: &BinarySource) -> Check {
    let Some(file) = code_server_binary::find_on_path(binary) else {
        let what = match source {
            BinarySource::SearchPath => format!(
                "code-server not found: neither --code-server, DEVBOX_CODE_SERVER nor \
                 code_server.binary names one, there is no install at {}, and none is on \
                 PATH; run scripts/install-code-server.sh",
                code_server_binary::project_tools_binaries()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            _ => format!(
                "code-server `{}` ({source}) is not on PATH",
                binary.display()
            ),
        };
        return Check {
            ok: false,
            required: true,
            what,
        };
    };
    let scratch = std::env::temp_dir().join(format!("devbox-doctor-{}", std::process::id()));
    // `--version` would otherwise create ~/.config/code-server/config.yaml.
    let output = Command::new(&file)
        .arg("--version")
        .arg("--config")
        .arg(scratch.join("config.yaml"))
        .env("XDG_CONFIG_HOME", &scratch)
        .env("XDG_DATA_HOME", &scratch)
        .output();
    let _ = std::fs::remove_dir_all(&scratch);
    match output {
        Ok(out) if out.status.success() => {
            // The version line looks like `4.100.3 <commit> with Code 1.100.3`.
            let stdout = String::from_utf8_lossy(&out.stdout);
            let version = stdout
                .lines()
                .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or_default()
                .to_owned();
            Check {
                ok: version.starts_with("4."),
                required: true,
                what: format!("code-server {version} at {} ({source})", file.display()),
            }
        }
        Ok(out) => Check {
            ok: false,
            required: true,
            what: format!(
                "code-server at {} ({source}) failed: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        },
        Err(err) => Check {
            ok: false,
            required: true,
            what: format!(
                "cannot run code-server at `{}` ({source}): {err}; run scripts/install-code-server.sh",
                file.display()
            ),
        },
    }
}

fn writable(dir: &PathBuf) -> Check {
    let probe = dir.join(format!(".devbox-doctor-{}", std::process::id()));
    let ok = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b""))
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    Check {
        ok,
        required: true,
        what: format!(
            "{} {}",
            dir.display(),
            if ok { "is writable" } else { "is not writable" }
        ),
    }
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn libgit2_version() -> String {
    let (major, minor, patch) = git2::Version::get().libgit2_version();
    format!("{major}.{minor}.{patch}")
}
