//! Malformed or invalid spec files never stop, restart or delete anything: the server
//! keeps its last applied state, its status names the file and field, and every other
//! server is untouched. `devbox validate` reports the same errors.

mod common;

use std::time::Duration;

use common::{Devbox, wait_for};

/// Waits until `name` shows an error mentioning all of `needles`; returns the message.
fn wait_error(devbox: &Devbox, name: &str, needles: &[&str]) -> String {
    wait_for(
        &format!("{name} to report {needles:?}"),
        Duration::from_secs(20),
        || {
            let server = devbox.server(name)?;
            let message = server["message"].as_str()?.to_owned();
            needles
                .iter()
                .all(|n| message.contains(n))
                .then_some(message)
        },
    )
}

#[test]
fn invalid_specs_never_disturb_other_servers() {
    let devbox = Devbox::start();
    let good_port = devbox.port_start + 5;
    devbox.write_spec("good", &format!("  state: running\n  port: {good_port}\n"));
    let (good_pid, port) = devbox.wait_running("good");
    assert_eq!(port, good_port);

    let header =
        |name: &str| format!("apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\n");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "bad-yaml",
            format!("{}spec:\n  state: [running\n", header("bad-yaml")),
            vec!["bad-yaml.yaml:"],
        ),
        (
            "typo",
            format!("{}spec:\n  stat: running\n", header("typo")),
            vec!["typo.yaml:6:3", "unknown field `stat`"],
        ),
        (
            "wrong-name",
            format!("{}spec:\n  state: running\n", header("Not A Name")),
            vec!["wrong-name.yaml:4:3", "metadata.name"],
        ),
        (
            "far-port",
            format!("{}spec:\n  port: 80\n", header("far-port")),
            vec!["far-port.yaml:6:3", "spec.port", "outside the range"],
        ),
        (
            "no-group",
            format!("{}spec:\n  extension_groups: [nope]\n", header("no-group")),
            vec![
                "no-group.yaml:6:",
                "spec.extension_groups[0]",
                "unknown extension group `nope`",
            ],
        ),
        (
            "thief",
            format!("{}spec:\n  port: {good_port}\n", header("thief")),
            vec!["thief.yaml:6:3", "spec.port", "`good`"],
        ),
    ];
    for (name, text, needles) in &cases {
        devbox.write_spec_text(&format!("{name}.yaml"), text);
        let message = wait_error(&devbox, name, needles);
        let server = devbox.server(name).expect("listed");
        assert_eq!(server["status"], "failed", "{name}: {message}");
        assert!(server["pid"].is_null(), "{name} never started");
    }

    // The running server's own spec turns invalid: it keeps running as it was.
    devbox.write_spec(
        "good",
        &format!("  state: stopped\n  port: {good_port}\n  bogus: 1\n"),
    );
    let message = wait_error(&devbox, "good", &["good.yaml:8:3", "unknown field `bogus`"]);
    let good = devbox.server("good").expect("good");
    assert_eq!(good["status"], "running", "{message}");
    assert_eq!(good["pid"].as_u64(), Some(u64::from(good_pid)));
    // The status file is written in the background, a moment after the API shows it.
    wait_for(
        "the status file to record the error",
        Duration::from_secs(10),
        || {
            devbox
                .status("good")
                .filter(|s| s["spec_errors"][0]["field"] == "spec.bogus")
        },
    );

    // Fixed again, with its old content: nothing restarts and the error clears.
    devbox.write_spec("good", &format!("  state: running\n  port: {good_port}\n"));
    wait_for("good's error to clear", Duration::from_secs(20), || {
        devbox
            .server("good")
            .filter(|s| s["message"].is_null())
            .map(|_| ())
    });
    assert_eq!(
        devbox.server("good").expect("good")["pid"].as_u64(),
        Some(u64::from(good_pid))
    );
    assert!(devbox.healthz("good").is_some());

    // `devbox validate` reports the same problems, with locations, and fails.
    let output = devbox
        .command()
        .arg("validate")
        .arg(devbox.specs())
        .output()
        .expect("validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    for (_, _, needles) in &cases {
        for needle in needles {
            assert!(
                stdout.contains(needle),
                "validate output lacks {needle:?}:\n{stdout}"
            );
        }
    }
}
