//! Extension installation: runs `code-server --install-extension` for each extension a
//! server wants (marketplace ids or local `.vsix` files), one process at a time per server
//! and a bounded number host-wide, with a timeout that kills the installer's whole process
//! group, and skips what is already in the server's extensions folder without starting node.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;

/// One extension a server wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionRef {
    /// `publisher.name` or `publisher.name@version`, installed from the marketplace.
    Marketplace(String),
    /// A local `.vsix` file (absolute, already checked to be inside the vsix folder).
    Vsix(PathBuf),
}

impl ExtensionRef {
    /// What status shows: the id, or the file name of a `.vsix`.
    pub fn label(&self) -> String {
        match self {
            ExtensionRef::Marketplace(id) => id.clone(),
            ExtensionRef::Vsix(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        }
    }
}

/// How to run the installer for one server.
#[derive(Debug, Clone)]
pub struct InstallerSettings {
    /// The code-server binary.
    pub binary: PathBuf,
    pub extensions_dir: PathBuf,
    pub user_data_dir: PathBuf,
    /// Extra environment, e.g. `EXTENSIONS_GALLERY`.
    pub env: Vec<(String, String)>,
    /// Inherited variables to remove (e.g. `VSCODE_IPC_HOOK_CLI`).
    pub env_remove: Vec<String>,
    /// Time limit of one install.
    pub timeout: Duration,
}

/// What happened to one extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionOutcome {
    Installed,
    AlreadyInstalled,
    /// Why, in a line a user understands (the installer's last output lines).
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionResult {
    /// [`ExtensionRef::label`].
    pub extension: String,
    pub outcome: ExtensionOutcome,
}

/// Output kept per stream (the tail is what matters).
const OUTPUT_KEEP: usize = 64 * 1024;
/// How long to wait for the output pipes to close once the installer has exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// Most characters of installer output carried in a failure.
const MESSAGE_MAX: usize = 600;
/// Lines of installer output carried in a failure.
const MESSAGE_LINES: usize = 3;

/// Installs each ref in order, one code-server process at a time for this server; `permits`
/// (shared by all servers) bounds concurrent installs on the host. Each install is
/// `<binary> --extensions-dir D --user-data-dir U --install-extension <id-or-vsix-path>`
/// in its own process group with stdin null; on timeout the whole group is killed and the
/// result is `Failed("timed out after …")`. A failure never stops the following installs.
/// Refs already present in `extensions_dir` are skipped (`AlreadyInstalled`).
pub async fn install_all(
    refs: &[ExtensionRef],
    settings: &InstallerSettings,
    permits: &Semaphore,
) -> Vec<ExtensionResult> {
    let mut results = Vec::with_capacity(refs.len());
    for extension in refs {
        let outcome = install_one(extension, settings, permits).await;
        match &outcome {
            ExtensionOutcome::Failed(why) => {
                tracing::warn!(extension = %extension.label(), reason = %why, "extension install failed")
            }
            other => tracing::debug!(extension = %extension.label(), outcome = ?other, "extension"),
        }
        results.push(ExtensionResult {
            extension: extension.label(),
            outcome,
        });
    }
    results
}

async fn install_one(
    extension: &ExtensionRef,
    settings: &InstallerSettings,
    permits: &Semaphore,
) -> ExtensionOutcome {
    let wanted = {
        let extension = extension.clone();
        let dir = settings.extensions_dir.clone();
        tokio::task::spawn_blocking(move || wanted_and_present(&extension, &dir)).await
    };
    let wanted = match wanted {
        Ok(Ok((_, true))) => return ExtensionOutcome::AlreadyInstalled,
        Ok(Ok((wanted, false))) => wanted,
        Ok(Err(why)) => return ExtensionOutcome::Failed(why),
        Err(e) => return ExtensionOutcome::Failed(format!("internal error: {e}")),
    };

    let Ok(_permit) = permits.acquire().await else {
        return ExtensionOutcome::Failed("extension installs are shutting down".to_owned());
    };
    let arg = match extension {
        ExtensionRef::Marketplace(id) => id.clone().into(),
        ExtensionRef::Vsix(path) => path.clone().into_os_string(),
    };
    let outcome = run_installer(&arg, settings).await;

    if outcome == ExtensionOutcome::Installed {
        let dir = settings.extensions_dir.clone();
        let present = tokio::task::spawn_blocking(move || is_present(&dir, &wanted))
            .await
            .unwrap_or(false);
        if !present {
            tracing::warn!(
                extension = %extension.label(),
                "installer reported success but the extension's folder was not found"
            );
        }
    }
    outcome
}

/// What to look for in the extensions folder, and whether it is already there.
fn wanted_and_present(
    extension: &ExtensionRef,
    extensions_dir: &Path,
) -> Result<(Wanted, bool), String> {
    let wanted = match extension {
        ExtensionRef::Marketplace(spec) => {
            let (id, version) = match spec.split_once('@') {
                Some((id, v)) => (id, Some(v.to_owned())),
                None => (spec.as_str(), None),
            };
            Wanted {
                id: id.to_ascii_lowercase(),
                version,
            }
        }
        ExtensionRef::Vsix(path) => {
            let (publisher, name, version) = read_vsix_identity(path)?;
            Wanted {
                id: format!("{publisher}.{name}").to_ascii_lowercase(),
                version: Some(version),
            }
        }
    };
    let present = is_present(extensions_dir, &wanted);
    Ok((wanted, present))
}

struct Wanted {
    /// `publisher.name`, lower case.
    id: String,
    /// Exact version wanted, if any.
    version: Option<String>,
}

/// Whether `wanted` is installed in `extensions_dir`. The installer (code-server 4.100.3,
/// measured) records what is installed in `<extensions_dir>/extensions.json`
/// (`identifier.id`, `version`, `relativeLocation`) and extracts each extension to
/// `<publisher.name>-<version>` (lower case id, plus `-<target platform>` for
/// platform-specific builds). An uninstall removes the entry from extensions.json but leaves
/// the folder behind, so extensions.json is the authority when it exists; without it (older
/// layouts) the folder names count, minus those listed in `.obsolete`.
fn is_present(extensions_dir: &Path, wanted: &Wanted) -> bool {
    if let Some(entries) = read_extensions_json(extensions_dir) {
        return entries.iter().any(|e| {
            e.id.eq_ignore_ascii_case(&wanted.id)
                && wanted
                    .version
                    .as_deref()
                    .is_none_or(|v| e.version.eq_ignore_ascii_case(v))
                && e.dir.is_dir()
        });
    }
    let Ok(entries) = fs::read_dir(extensions_dir) else {
        return false;
    };
    let obsolete = read_obsolete(extensions_dir);
    entries.flatten().any(|entry| {
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        entry.path().is_dir()
            && !obsolete.contains(&name)
            && dir_matches(&name, &wanted.id, wanted.version.as_deref())
    })
}

struct InstalledEntry {
    id: String,
    version: String,
    dir: PathBuf,
}

/// The entries of `extensions.json`; None when it is missing or unreadable.
fn read_extensions_json(extensions_dir: &Path) -> Option<Vec<InstalledEntry>> {
    let bytes = fs::read(extensions_dir.join("extensions.json")).ok()?;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    Some(
        list.iter()
            .filter_map(|e| {
                let id = e.pointer("/identifier/id")?.as_str()?.to_owned();
                let version = e.get("version")?.as_str()?.to_owned();
                let dir = match e.get("relativeLocation").and_then(|v| v.as_str()) {
                    Some(rel) => extensions_dir.join(rel),
                    None => PathBuf::from(
                        e.pointer("/location/fsPath")
                            .or_else(|| e.pointer("/location/path"))?
                            .as_str()?,
                    ),
                };
                Some(InstalledEntry { id, version, dir })
            })
            .collect(),
    )
}

fn read_obsolete(extensions_dir: &Path) -> HashSet<String> {
    let Ok(bytes) = fs::read(extensions_dir.join(".obsolete")) else {
        return HashSet::new();
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes) {
        Ok(map) => map
            .into_iter()
            .filter(|(_, v)| v.as_bool().unwrap_or(true))
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect(),
        Err(_) => HashSet::new(),
    }
}

const TARGET_PLATFORMS: &[&str] = &[
    "linux-x64",
    "linux-arm64",
    "linux-armhf",
    "alpine-x64",
    "alpine-arm64",
    "darwin-x64",
    "darwin-arm64",
    "win32-x64",
    "win32-arm64",
    "win32-ia32",
    "web",
    "universal",
];

/// `dir` and `id` lower case already.
fn dir_matches(dir: &str, id: &str, version: Option<&str>) -> bool {
    let Some(rest) = dir.strip_prefix(id).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    match version {
        Some(v) => {
            let v = v.to_ascii_lowercase();
            rest == v
                || rest
                    .strip_prefix(v.as_str())
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|platform| TARGET_PLATFORMS.contains(&platform))
        }
        None => starts_with_version(rest),
    }
}

/// `rest` is `<major>.<minor>.<patch>` possibly followed by `-…` (pre-release or platform).
fn starts_with_version(rest: &str) -> bool {
    let core = rest.split('-').next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads `(publisher, name, version)` from `extension/package.json` inside a `.vsix`.
fn read_vsix_identity(path: &Path) -> Result<(String, String, String), String> {
    let display = path.display();
    let file = fs::File::open(path).map_err(|e| format!("cannot open {display}: {e}"))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("{display} is not a valid .vsix: {e}"))?;
    let entry = archive
        .by_name("extension/package.json")
        .map_err(|e| format!("{display} is not a valid .vsix (extension/package.json: {e})"))?;
    let mut bytes = Vec::new();
    entry
        .take(8 * 1024 * 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read extension/package.json in {display}: {e}"))?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("extension/package.json in {display} is not valid JSON: {e}"))?;
    let field = |key: &str| {
        manifest
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("extension/package.json in {display} has no \"{key}\""))
    };
    Ok((field("publisher")?, field("name")?, field("version")?))
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

async fn run_installer(arg: &std::ffi::OsStr, settings: &InstallerSettings) -> ExtensionOutcome {
    let mut cmd = tokio::process::Command::new(&settings.binary);
    cmd.arg("--extensions-dir")
        .arg(&settings.extensions_dir)
        .arg("--user-data-dir")
        .arg(&settings.user_data_dir)
        .arg("--install-extension")
        .arg(arg);
    for key in &settings.env_remove {
        cmd.env_remove(key);
    }
    cmd.envs(settings.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return ExtensionOutcome::Failed(format!(
                "cannot start {}: {e}",
                settings.binary.display()
            ));
        }
    };
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
            ExtensionOutcome::Failed(msg)
        }
        Some(Err(e)) => ExtensionOutcome::Failed(format!("cannot wait for the installer: {e}")),
        Some(Ok(status)) if status.success() => ExtensionOutcome::Installed,
        Some(Ok(status)) => {
            if tail.is_empty() {
                ExtensionOutcome::Failed(format!("installer failed ({status}) without output"))
            } else {
                ExtensionOutcome::Failed(tail)
            }
        }
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

/// `publisher.name[@version]` syntax check used by spec validation. Publisher and name
/// follow VS Code's identifier rule (a letter or digit, then letters, digits and '-');
/// the version is semver (`1.2.3`, optionally `-pre.1` / `+build`).
pub fn is_valid_extension_id(s: &str) -> bool {
    if s.len() > 256 {
        return false;
    }
    let (id, version) = match s.split_once('@') {
        Some((id, v)) => (id, Some(v)),
        None => (s, None),
    };
    let Some((publisher, name)) = id.split_once('.') else {
        return false;
    };
    is_identifier_part(publisher) && is_identifier_part(name) && version.is_none_or(is_semver)
}

fn is_identifier_part(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let dotted_ok = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(dotted_ok)
        && build.is_none_or(dotted_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    #[test]
    fn extension_id_syntax() {
        for ok in [
            "ms-python.python",
            "ms-toolsai.jupyter@2024.1.0",
            "redhat.vscode-yaml",
            "13xforever.language-x86-64-assembly",
            "esbenp.prettier-vscode@10.4.0-beta.1",
            "a.b@1.2.3+build.5",
            "MS-Python.Python",
        ] {
            assert!(is_valid_extension_id(ok), "{ok}");
        }
        for bad in [
            "",
            "python",
            ".python",
            "ms-python.",
            "ms-python.python.extra",
            "-ms.python",
            "ms_python.python",
            "ms-python.python@",
            "ms-python.python@1.2",
            "ms-python.python@latest",
            "ms-python.python@1.2.3@4",
            "ms python.python",
            "../evil.vsix",
            "ms-python.python@1.2.3-",
        ] {
            assert!(!is_valid_extension_id(bad), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(
            ExtensionRef::Marketplace("a.b@1.0.0".into()).label(),
            "a.b@1.0.0"
        );
        assert_eq!(
            ExtensionRef::Vsix("/x/vsix/tool.vsix".into()).label(),
            "tool.vsix"
        );
    }

    fn build_vsix(path: &Path, publisher: &str, name: &str, version: &str) {
        let file = fs::File::create(path).unwrap();
        let mut w = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("extension.vsixmanifest", opts).unwrap();
        w.write_all(
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
  <Metadata>
    <Identity Language="en-US" Id="{name}" Version="{version}" Publisher="{publisher}" />
    <DisplayName>{name}</DisplayName>
    <Description xml:space="preserve">test extension</Description>
  </Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation>
  <Dependencies/>
  <Assets>
    <Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true" />
  </Assets>
</PackageManifest>"#
            )
            .as_bytes(),
        )
        .unwrap();
        w.start_file("[Content_Types].xml", opts).unwrap();
        w.write_all(br#"<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension=".json" ContentType="application/json"/><Default Extension=".vsixmanifest" ContentType="text/xml"/></Types>"#).unwrap();
        w.start_file("extension/package.json", opts).unwrap();
        w.write_all(
            serde_json::json!({
                "name": name,
                "displayName": name,
                "publisher": publisher,
                "version": version,
                "engines": {"vscode": "^1.80.0"},
                "main": "./extension.js",
                "activationEvents": []
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        w.start_file("extension/extension.js", opts).unwrap();
        w.write_all(b"exports.activate = function () {};\nexports.deactivate = function () {};\n")
            .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn vsix_identity_is_read_from_package_json() {
        let dir = tempfile::tempdir().unwrap();
        let vsix = dir.path().join("tool.vsix");
        build_vsix(&vsix, "DevBox", "local-tool", "0.1.2");
        assert_eq!(
            read_vsix_identity(&vsix).unwrap(),
            ("DevBox".into(), "local-tool".into(), "0.1.2".into())
        );
        let junk = dir.path().join("junk.vsix");
        fs::write(&junk, b"nope").unwrap();
        assert!(
            read_vsix_identity(&junk)
                .unwrap_err()
                .contains("not a valid .vsix")
        );
    }

    #[test]
    fn presence_detection() {
        let dir = tempfile::tempdir().unwrap();
        let ext = dir.path();
        fs::create_dir(ext.join("devbox.local-tool-0.1.2")).unwrap();
        fs::create_dir(ext.join("ms-python.python-2024.1.0-linux-x64")).unwrap();
        fs::create_dir(ext.join("foo.bar-baz-1.0.0")).unwrap();
        fs::create_dir(ext.join("old.gone-1.0.0")).unwrap();
        fs::write(ext.join(".obsolete"), r#"{"old.gone-1.0.0": true}"#).unwrap();
        let w = |id: &str, v: Option<&str>| Wanted {
            id: id.to_owned(),
            version: v.map(str::to_owned),
        };
        assert!(is_present(ext, &w("devbox.local-tool", None)));
        assert!(is_present(ext, &w("devbox.local-tool", Some("0.1.2"))));
        assert!(!is_present(ext, &w("devbox.local-tool", Some("0.1.3"))));
        assert!(is_present(ext, &w("ms-python.python", Some("2024.1.0"))));
        assert!(is_present(ext, &w("ms-python.python", None)));
        assert!(!is_present(ext, &w("foo.bar", None)));
        assert!(!is_present(ext, &w("old.gone", None)));
        assert!(!is_present(
            &ext.join("missing"),
            &w("devbox.local-tool", None)
        ));

        // With extensions.json (what code-server 4.100 writes) it is the authority: an
        // uninstalled extension's folder stays behind but its entry is gone.
        fs::write(
            ext.join("extensions.json"),
            r#"[{"identifier":{"id":"devbox.local-tool"},"version":"0.1.2","location":{"$mid":1,"path":"/elsewhere","scheme":"file"},"relativeLocation":"devbox.local-tool-0.1.2","metadata":{"source":"vsix"}},
                {"identifier":{"id":"gone.away"},"version":"1.0.0","relativeLocation":"gone.away-1.0.0"}]"#,
        )
        .unwrap();
        assert!(is_present(ext, &w("devbox.local-tool", Some("0.1.2"))));
        assert!(is_present(ext, &w("devbox.local-tool", None)));
        assert!(!is_present(ext, &w("devbox.local-tool", Some("0.1.3"))));
        assert!(
            !is_present(ext, &w("ms-python.python", None)),
            "folder without entry"
        );
        assert!(
            !is_present(ext, &w("gone.away", None)),
            "entry without folder"
        );
        fs::write(ext.join("extensions.json"), "[]").unwrap();
        assert!(!is_present(ext, &w("devbox.local-tool", None)));
        fs::remove_file(ext.join("extensions.json")).unwrap();

        // Marketplace ids are case-insensitive; a vsix is identified by its package.json.
        let vsix = ext.join("t.vsix");
        build_vsix(&vsix, "DevBox", "Local-Tool", "0.1.2");
        let (_, present) = wanted_and_present(&ExtensionRef::Vsix(vsix), ext).unwrap();
        assert!(present);
        let (_, present) = wanted_and_present(
            &ExtensionRef::Marketplace("DevBox.Local-Tool@0.1.2".into()),
            ext,
        )
        .unwrap();
        assert!(present);
    }

    fn fake_binary(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-code-server");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn settings(dir: &Path, binary: PathBuf, timeout: Duration) -> InstallerSettings {
        InstallerSettings {
            binary,
            extensions_dir: dir.join("ext"),
            user_data_dir: dir.join("data"),
            env: vec![("DEVBOX_TEST_VAR".into(), "from-settings".into())],
            env_remove: vec!["HOME".into()],
            timeout,
        }
    }

    fn process_alive(pid: i32) -> bool {
        // Zombies do not count: they are dead, only not yet reaped by their parent.
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z"),
            Err(_) => false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // The script starts a grandchild that would outlive a kill of the leader alone.
        let binary = fake_binary(
            dir.path(),
            &format!(
                "echo installing...\nsleep 1000 &\necho $! > {p}\necho $$ >> {p}\nwhile true; do sleep 1; done",
                p = pids.display()
            ),
        );
        let s = settings(dir.path(), binary, Duration::from_secs(1));
        let permits = Semaphore::new(2);
        let started = Instant::now();
        let results = install_all(&[ExtensionRef::Marketplace("a.b".into())], &s, &permits).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].extension, "a.b");
        match &results[0].outcome {
            ExtensionOutcome::Failed(msg) => {
                assert!(msg.starts_with("timed out after 1s"), "{msg}");
                assert!(msg.contains("installing..."), "{msg}");
            }
            other => panic!("expected failure, got {other:?}"),
        }
        let text = fs::read_to_string(&pids).unwrap();
        let pids: Vec<i32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(pids.len(), 2);
        // Give the kernel a moment to reap the orphaned grandchild (init reaps it).
        let deadline = Instant::now() + Duration::from_secs(2);
        while pids.iter().any(|&p| process_alive(p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for pid in pids {
            assert!(!process_alive(pid), "process {pid} survived");
        }
        assert_eq!(permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn failure_carries_the_message_and_does_not_stop_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("args.log");
        let binary = fake_binary(
            dir.path(),
            &format!(
                r#"echo "$@" >> {log}
[ -z "$HOME" ] || {{ echo "HOME was not removed" >&2; exit 3; }}
[ "$DEVBOX_TEST_VAR" = from-settings ] || {{ echo "env not set" >&2; exit 4; }}
read line && {{ echo "stdin was not null" >&2; exit 5; }}
case "$6" in
  bad.one) echo "Installing extensions..."; printf '\033[31mError\033[0m: \n\n  getaddrinfo ENOTFOUND open-vsx.org  \n\n' >&2; exit 1 ;;
  silent.fail) exit 7 ;;
  *) mkdir -p "$2/$(echo "$6" | tr A-Z a-z)-1.0.0"; echo "Extension '$6' was successfully installed." ;;
esac"#,
                log = log.display()
            ),
        );
        let s = settings(dir.path(), binary, Duration::from_secs(20));
        fs::create_dir_all(s.extensions_dir.join("pre.installed-2.0.0")).unwrap();
        let permits = Semaphore::new(1);
        let refs = [
            ExtensionRef::Marketplace("bad.one".into()),
            ExtensionRef::Marketplace("silent.fail".into()),
            ExtensionRef::Marketplace("Good.Two".into()),
            ExtensionRef::Marketplace("pre.installed".into()),
            ExtensionRef::Marketplace("good.two".into()),
        ];
        let results = install_all(&refs, &s, &permits).await;
        let outcomes: Vec<&ExtensionOutcome> = results.iter().map(|r| &r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                &ExtensionOutcome::Failed("Error: | getaddrinfo ENOTFOUND open-vsx.org".into()),
                &ExtensionOutcome::Failed(
                    "installer failed (exit status: 7) without output".into()
                ),
                &ExtensionOutcome::Installed,
                &ExtensionOutcome::AlreadyInstalled,
                &ExtensionOutcome::AlreadyInstalled,
            ]
        );
        let args = fs::read_to_string(&log).unwrap();
        let first = args.lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                "--extensions-dir {} --user-data-dir {} --install-extension bad.one",
                s.extensions_dir.display(),
                s.user_data_dir.display()
            )
        );
        assert_eq!(args.lines().count(), 3);
    }

    #[tokio::test]
    async fn missing_binary_and_bad_vsix_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(
            dir.path(),
            dir.path().join("no-such-binary"),
            Duration::from_secs(5),
        );
        let junk = dir.path().join("junk.vsix");
        fs::write(&junk, b"nope").unwrap();
        let permits = Semaphore::new(1);
        let results = install_all(
            &[
                ExtensionRef::Marketplace("a.b".into()),
                ExtensionRef::Vsix(junk),
            ],
            &s,
            &permits,
        )
        .await;
        assert!(
            matches!(&results[0].outcome, ExtensionOutcome::Failed(m) if m.starts_with("cannot start"))
        );
        assert_eq!(results[1].extension, "junk.vsix");
        assert!(
            matches!(&results[1].outcome, ExtensionOutcome::Failed(m) if m.contains("not a valid .vsix"))
        );
    }

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
