//! A code-server that dies at once (a fake, for fault injection) is restarted with
//! growing delays and ends `failed`, quoting its last output.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Devbox, wait_for};

#[test]
fn crash_loop_ends_failed_with_backoff_and_last_output() {
    let fake_dir = tempfile::tempdir().expect("temp dir");
    let fake = fake_dir.path().join("code-server");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'fake code-server: cannot start (boom)' >&2\nexit 3\n",
    )
    .expect("write fake");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let devbox = Devbox::start_with(fake, |_| {});
    devbox.write_spec("crashy", "  state: running\n");
    let server = wait_for("crashy to fail", Duration::from_secs(30), || {
        devbox.server("crashy").filter(|s| s["phase"] == "failed")
    });
    let message = server["message"].as_str().unwrap_or_default();
    assert!(message.contains("exit code 3"), "{message}");
    assert_eq!(
        message.matches("boom").count(),
        1,
        "the reason quotes the last attempt's output, once: {message}"
    );

    // The status file is written in the background, a moment after the API shows it.
    let status = wait_for(
        "the status file to record the crashes",
        Duration::from_secs(10),
        || {
            devbox
                .status("crashy")
                .filter(|s| s["consecutive_crashes"].as_u64() >= Some(3))
        },
    );
    assert!(
        status["next_retry_at"].is_string(),
        "a next retry is scheduled: {status}"
    );

    // The delays between attempts grow: 200ms, 400ms, 800ms, then the 1s cap.
    let events =
        std::fs::read_to_string(devbox.state().join("servers/crashy/events.log")).expect("events");
    let delays: Vec<&str> = events
        .lines()
        .filter_map(|l| l.rsplit_once("retry in ").map(|(_, d)| d))
        .collect();
    assert!(delays.len() >= 3, "{events}");
    assert_eq!(&delays[..3], ["200ms", "400ms", "800ms"], "{events}");
}
