//! A full disk under the state directory (a small tmpfs mounted there; the test needs
//! root, as the project's test setup runs): devbox keeps serving, says so in `/health`,
//! never leaves a truncated status file, and recovers once space is freed. The
//! code-server is the fake one (fault injection): the real one would not start on a
//! full disk either, which is not what is tested here.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Devbox, wait_for};

/// A tmpfs mounted on a directory of a test's temp dir; when dropped (after the
/// `Devbox`, whose temp dir cannot remove a mount point) it is unmounted and what is
/// left of the temp dir removed.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} (this test needs root)",
            dir.display()
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        if let Some(root) = self.0.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

fn fake_code_server() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_code_server.py")
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

/// Every status file under the state dir parses (none is truncated or empty).
fn assert_status_files_whole(state: &Path) {
    for entry in std::fs::read_dir(state.join("servers"))
        .expect("servers dir")
        .flatten()
    {
        let path = entry.path().join("status.json");
        if let Ok(text) = std::fs::read(&path) {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&text).is_ok(),
                "{} is not whole: {:?}",
                path.display(),
                String::from_utf8_lossy(&text)
            );
        }
    }
}

#[test]
fn a_full_state_disk_is_reported_and_recovered_from() {
    let mut tmpfs = None;
    let devbox = Devbox::start_with(fake_code_server(), |root| {
        tmpfs = Some(Tmpfs::mount(&root.join("state"), "4m"));
    });
    devbox.write_spec("first", "  state: running\n");
    devbox.wait_running("first");
    assert_eq!(devbox.get("/health").json()["status"], "healthy");

    let filler = devbox.state().join("filler");
    fill(&filler);
    // A new server's status cannot be written now.
    devbox.write_spec("second", "  state: running\n");
    let health = wait_for(
        "/health to report the full disk",
        Duration::from_secs(30),
        || {
            let health = devbox.get("/health").json();
            (health["status"] == "degraded").then_some(health)
        },
    );
    let error = health["state_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("No space left on device") && error.contains("status"),
        "{health}"
    );
    // The API keeps answering from memory; the running server is untouched.
    let first = devbox.server("first").expect("first is listed");
    assert_eq!(first["status"], "running", "{first}");
    assert_status_files_whole(&devbox.state());

    // Space comes back: the next status change is written and health recovers.
    std::fs::remove_file(&filler).expect("remove filler");
    devbox.write_spec("second", "  state: stopped\n");
    wait_for("/health to recover", Duration::from_secs(30), || {
        (devbox.get("/health").json()["status"] == "healthy").then_some(())
    });
    wait_for("second's status file", Duration::from_secs(10), || {
        devbox
            .status("second")
            .filter(|s| s["phase"] == "stopped")
            .map(|_| ())
    });
    assert_status_files_whole(&devbox.state());
    drop(devbox);
    drop(tmpfs);
}
