//! Extension installation for servers: marketplace ids and local `.vsix` files. What a
//! server's extensions folder already holds is skipped without starting node; everything
//! else comes from the host-wide cache (`cache`), which runs code-server's installer
//! (`installer`) once per distinct extension, a bounded number at a time.

mod cache;
mod ids;
mod installed;
mod installer;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use ids::is_valid_extension_id;
pub use installer::InstallerSettings;

use crate::isolation::InstanceDir;
use cache::{Cache, CacheKey, Provided};

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

/// What happened to one extension of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionOutcome {
    /// The installer ran (into the cache) and the server got its copy.
    Installed,
    /// The server got a copy of what the cache already held.
    Copied,
    /// The server's extensions folder held it already.
    AlreadyInstalled,
    /// Why, in a line a user understands (the installer's last output lines).
    Failed(String),
}

impl ExtensionOutcome {
    /// The outcome as metrics label it: `installed`, `cached`, `present`, `failed`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Installed => "installed",
            Self::Copied => "cached",
            Self::AlreadyInstalled => "present",
            Self::Failed(_) => "failed",
        }
    }
}

/// Installs extensions for every server of the host. Shared by all reconcilers.
pub struct Extensions {
    settings: InstallerSettings,
    /// Bounds the installer processes running at once on the host.
    permits: Semaphore,
    cache: Cache,
}

impl Extensions {
    /// At most `concurrency` installers at once; the cache lives in `cache_dir` (what an
    /// interrupted install left there is removed now, blocking).
    pub fn new(settings: InstallerSettings, concurrency: usize, cache_dir: PathBuf) -> Self {
        Self {
            settings,
            permits: Semaphore::new(concurrency),
            cache: Cache::open(cache_dir),
        }
    }

    /// Gives the server whose extensions folder is `extensions_dir` the `extension`.
    /// Dropping the future mid-install kills the installer's process group.
    pub async fn install(
        &self,
        extension: &ExtensionRef,
        extensions_dir: &InstanceDir,
    ) -> ExtensionOutcome {
        let (wanted, key) = match probe(extension, extensions_dir).await {
            Ok(Probe::Present) => return ExtensionOutcome::AlreadyInstalled,
            Ok(Probe::Missing(wanted, key)) => (wanted, key),
            Err(why) => return ExtensionOutcome::Failed(why),
        };
        let provided = self
            .cache
            .provide(
                &key,
                extension,
                &wanted,
                Some(extensions_dir),
                &self.settings,
                &self.permits,
            )
            .await;
        match provided {
            Ok(Provided::Installed) => ExtensionOutcome::Installed,
            Ok(Provided::Copied) => ExtensionOutcome::Copied,
            Err(why) => {
                tracing::warn!(extension = %extension.label(), reason = %why, "extension install failed");
                ExtensionOutcome::Failed(why)
            }
        }
    }

    /// Removes the cache's extensions no server has been given for longer than
    /// `max_age`; returns how many.
    pub async fn prune_cache(&self, max_age: Duration) -> usize {
        self.cache.prune(max_age).await
    }

    /// Fills the cache with those of `extensions` that the server's `extensions_dir`
    /// lacks, their installers running at once (as many as the host allows), so that the
    /// installs that follow only copy. Failures are left for those installs to report
    /// (the cache remembers them).
    pub async fn prefetch(&self, extensions: &[ExtensionRef], extensions_dir: &InstanceDir) {
        let fills = extensions.iter().map(|extension| async move {
            if let Ok(Probe::Missing(wanted, key)) = probe(extension, extensions_dir).await {
                let _ = self
                    .cache
                    .provide(
                        &key,
                        extension,
                        &wanted,
                        None,
                        &self.settings,
                        &self.permits,
                    )
                    .await;
            }
        });
        futures_util::future::join_all(fills).await;
    }
}

enum Probe {
    /// The server's extensions folder holds it already.
    Present,
    /// What it installs as, and its cache entry.
    Missing(installed::Wanted, CacheKey),
}

/// Whether `extensions_dir` holds `extension` (a `.vsix` file is read: off the workers),
/// looked at with the rights of the folder's user.
async fn probe(extension: &ExtensionRef, extensions_dir: &InstanceDir) -> Result<Probe, String> {
    let (extension, dir) = (extension.clone(), extensions_dir.clone());
    let probed = tokio::task::spawn_blocking(move || {
        let wanted = installed::wanted(&extension)?;
        let present = dir
            .run(|dir| installed::is_present(dir, &wanted))
            .map_err(|err| err.to_string())?;
        if present {
            return Ok(Probe::Present);
        }
        let key = CacheKey::of(&extension, &wanted)
            .map_err(|e| format!("cannot read {}: {e}", extension.label()))?;
        Ok(Probe::Missing(wanted, key))
    })
    .await;
    probed.unwrap_or_else(|e| Err(format!("internal error: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;
    use std::time::{Duration, Instant};

    /// A server's extensions folder, worked in with devbox's own rights.
    fn own(path: impl Into<PathBuf>) -> InstanceDir {
        InstanceDir::new(path, None)
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

    fn fake_binary(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-code-server");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Host-wide installs through `binary`, at most `concurrency` at once, with the cache
    /// in `<dir>/cache`.
    fn extensions(
        dir: &Path,
        binary: PathBuf,
        timeout: Duration,
        concurrency: usize,
    ) -> Extensions {
        let settings = InstallerSettings {
            binary,
            env: vec![("DEVBOX_TEST_VAR".into(), "from-settings".into())],
            env_remove: vec!["HOME".into()],
            timeout,
        };
        Extensions::new(settings, concurrency, dir.join("cache"))
    }

    fn marketplace(id: &str) -> ExtensionRef {
        ExtensionRef::Marketplace(id.into())
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
        let extensions = extensions(dir.path(), binary, Duration::from_secs(1), 2);
        let started = Instant::now();
        let outcome = extensions
            .install(&marketplace("a.b"), &own(dir.path().join("server")))
            .await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        match &outcome {
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
        assert_eq!(extensions.permits.available_permits(), 2);
        assert_eq!(
            fs::read_dir(dir.path().join("cache")).unwrap().count(),
            0,
            "the interrupted install left nothing in the cache"
        );
    }

    /// A fake installer that logs its arguments, fails for `bad.one` and `silent.fail`,
    /// and otherwise installs like code-server: a folder and a manifest entry.
    fn fake_installer(dir: &Path, log: &Path) -> PathBuf {
        fake_binary(
            dir,
            &format!(
                r#"echo "$@" >> {log}
[ -z "$HOME" ] || {{ echo "HOME was not removed" >&2; exit 3; }}
[ "$DEVBOX_TEST_VAR" = from-settings ] || {{ echo "env not set" >&2; exit 4; }}
read line && {{ echo "stdin was not null" >&2; exit 5; }}
case "$6" in
  bad.one) echo "Installing extensions..."; printf '\033[31mError\033[0m: \n\n  getaddrinfo ENOTFOUND open-vsx.org  \n\n' >&2; exit 1 ;;
  silent.fail) exit 7 ;;
  *) folder="$(echo "$6" | tr A-Z a-z)-1.0.0"
     mkdir -p "$2/$folder/out" && echo "code" > "$2/$folder/out/main.js"
     printf '[{{"identifier":{{"id":"%s"}},"version":"1.0.0","location":{{"$mid":1,"path":"%s","scheme":"file"}},"relativeLocation":"%s"}}]' "$6" "$2/$folder" "$folder" > "$2/extensions.json"
     echo "Extension '$6' was successfully installed." ;;
esac"#,
                log = log.display()
            ),
        )
    }

    /// A temp dir, the file the fake installer logs its runs to, and installs through it.
    fn with_fake_installer(concurrency: usize) -> (tempfile::TempDir, PathBuf, Extensions) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("args.log");
        let binary = fake_installer(dir.path(), &log);
        let extensions = extensions(dir.path(), binary, Duration::from_secs(20), concurrency);
        (dir, log, extensions)
    }

    #[tokio::test]
    async fn each_extension_is_installed_once_and_copied_to_every_server() {
        let (dir, log, extensions) = with_fake_installer(1);
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let good = marketplace("Good.Two");
        assert_eq!(
            extensions.install(&good, &own(&one)).await,
            ExtensionOutcome::Installed
        );
        assert_eq!(
            extensions.install(&good, &own(&two)).await,
            ExtensionOutcome::Copied
        );
        assert_eq!(
            extensions
                .install(&marketplace("good.two"), &own(&two))
                .await,
            ExtensionOutcome::AlreadyInstalled
        );
        let args = fs::read_to_string(&log).unwrap();
        assert_eq!(args.lines().count(), 1, "one installer run: {args}");
        assert!(
            args.starts_with(&format!(
                "--extensions-dir {} --user-data-dir ",
                dir.path()
                    .join("cache/.staging-marketplace-good.two@latest/extensions")
                    .display()
            )),
            "{args}"
        );
        for server in [&one, &two] {
            let copy = server.join("good.two-1.0.0/out/main.js");
            assert_eq!(fs::read_to_string(&copy).unwrap(), "code\n");
            let manifest: serde_json::Value =
                serde_json::from_slice(&fs::read(server.join("extensions.json")).unwrap()).unwrap();
            assert_eq!(
                manifest[0]["location"]["path"],
                server.join("good.two-1.0.0").to_string_lossy().as_ref(),
                "the manifest points at the server's own copy"
            );
        }
        assert_eq!(
            fs::metadata(one.join("good.two-1.0.0/out/main.js"))
                .unwrap()
                .ino(),
            fs::metadata(two.join("good.two-1.0.0/out/main.js"))
                .unwrap()
                .ino(),
            "the copies share their files"
        );
    }

    #[tokio::test]
    async fn entries_unused_for_long_are_pruned_and_servers_keep_their_copies() {
        let (dir, log, extensions) = with_fake_installer(1);
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let (kept, dropped) = (marketplace("kept.one"), marketplace("dropped.one"));
        for extension in [&kept, &dropped] {
            extensions.install(extension, &own(&one)).await;
        }
        let day = Duration::from_secs(24 * 60 * 60);
        assert_eq!(extensions.prune_cache(day).await, 0, "all used just now");
        let cache = dir.path().join("cache");
        for entry in [
            "marketplace-kept.one@latest",
            "marketplace-dropped.one@latest",
        ] {
            fs::File::options()
                .append(true)
                .open(cache.join(entry).join("devbox-used"))
                .unwrap()
                .set_modified(std::time::SystemTime::now() - 2 * day)
                .unwrap();
        }
        // A server given `kept.one` now makes its entry young again.
        assert_eq!(
            extensions.install(&kept, &own(&two)).await,
            ExtensionOutcome::Copied
        );
        assert_eq!(extensions.prune_cache(day).await, 1);
        assert!(cache.join("marketplace-kept.one@latest").is_dir());
        assert!(!cache.join("marketplace-dropped.one@latest").exists());
        let copy = one.join("dropped.one-1.0.0/out/main.js");
        assert_eq!(
            fs::read_to_string(copy).unwrap(),
            "code\n",
            "the server's copy stays"
        );
        // The next server that wants it gets it installed again.
        assert_eq!(
            extensions.install(&dropped, &own(&two)).await,
            ExtensionOutcome::Installed
        );
        assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 3);
    }

    #[tokio::test]
    async fn prefetched_extensions_are_only_copied_and_failures_keep_their_message() {
        let (dir, log, extensions) = with_fake_installer(2);
        let wanted = [
            marketplace("one.ext"),
            marketplace("two.ext"),
            marketplace("bad.one"),
        ];
        let server = dir.path().join("server");
        extensions.prefetch(&wanted, &own(&server)).await;
        assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 3);
        assert_eq!(
            extensions.install(&wanted[0], &own(&server)).await,
            ExtensionOutcome::Copied
        );
        assert_eq!(
            extensions.install(&wanted[1], &own(&server)).await,
            ExtensionOutcome::Copied
        );
        assert_eq!(
            extensions.install(&wanted[2], &own(&server)).await,
            ExtensionOutcome::Failed("Error: | getaddrinfo ENOTFOUND open-vsx.org".into())
        );
        assert_eq!(
            fs::read_to_string(&log).unwrap().lines().count(),
            3,
            "no installer ran after the prefetch"
        );
    }

    #[tokio::test]
    async fn failures_carry_the_installers_message_and_are_remembered() {
        let (dir, log, extensions) = with_fake_installer(1);
        let noisy = ExtensionOutcome::Failed("Error: | getaddrinfo ENOTFOUND open-vsx.org".into());
        for server in ["one", "two"] {
            let server = dir.path().join(server);
            assert_eq!(
                extensions
                    .install(&marketplace("bad.one"), &own(&server))
                    .await,
                noisy
            );
            assert_eq!(
                extensions
                    .install(&marketplace("silent.fail"), &own(&server))
                    .await,
                ExtensionOutcome::Failed("installer failed (exit status: 7) without output".into())
            );
        }
        let args = fs::read_to_string(&log).unwrap();
        assert_eq!(
            args.lines().count(),
            2,
            "the second server's failures come from memory: {args}"
        );
        assert_eq!(
            fs::read_dir(dir.path().join("cache")).unwrap().count(),
            0,
            "failed installs leave nothing in the cache"
        );
    }

    #[tokio::test]
    async fn missing_binary_and_bad_vsix_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let extensions = extensions(
            dir.path(),
            dir.path().join("no-such-binary"),
            Duration::from_secs(5),
            1,
        );
        let junk = dir.path().join("junk.vsix");
        fs::write(&junk, b"nope").unwrap();
        let server = dir.path().join("server");
        assert!(matches!(
            extensions.install(&marketplace("a.b"), &own(&server)).await,
            ExtensionOutcome::Failed(m) if m.starts_with("cannot start")
        ));
        assert!(matches!(
            extensions.install(&ExtensionRef::Vsix(junk), &own(&server)).await,
            ExtensionOutcome::Failed(m) if m.contains("not a valid .vsix")
        ));
    }
}
