//! Provisioning with real code-server: a .vsix built by the test, a marketplace id that
//! fails (no gallery in the test config) without blocking the start, a git workspace
//! cloned from a local repository, zip workspaces in the archive's layout or without its
//! top-level folder, and a zip-slip archive rejected.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Devbox, list_tree, request_once, wait_for, write_vsix, write_zip};

#[test]
fn vsix_installs_and_a_failing_marketplace_id_does_not_block_the_start() {
    let devbox = Devbox::start();
    write_vsix(
        &devbox.path("vsix/local-tool.vsix"),
        "devbox-test",
        "local-tool",
    );
    devbox.write_spec(
        "ext",
        "  state: running\n  extensions: [local-tool.vsix, acme.not-there]\n",
    );
    devbox.wait_running("ext");

    // The status file is written in the background, a moment after the API shows it.
    let status = wait_for(
        "the status file to show running",
        Duration::from_secs(10),
        || devbox.status("ext").filter(|s| s["phase"] == "running"),
    );
    let results = status["extension_results"].as_array().expect("results");
    assert_eq!(results[0]["extension"], "local-tool.vsix");
    assert_eq!(results[0]["state"], "installed", "{status}");
    assert_eq!(results[1]["extension"], "acme.not-there");
    assert_eq!(results[1]["state"], "failed");
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("gallery"),
        "the error says why: {status}"
    );

    // A second server wanting the same .vsix gets a copy of the cached install.
    devbox.write_spec(
        "ext2",
        "  state: running\n  extensions: [local-tool.vsix]\n",
    );
    devbox.wait_running("ext2");
    assert!(
        devbox
            .log()
            .contains("extension local-tool.vsix installed from the extension cache"),
        "the second server's copy came from the cache:\n{}",
        devbox.log_tail()
    );
    for server in ["ext", "ext2"] {
        let scratch = tempfile::tempdir().expect("temp dir");
        let listed = Command::new(&devbox.code_server)
            .arg("--extensions-dir")
            .arg(devbox.state().join(format!("servers/{server}/extensions")))
            .arg("--list-extensions")
            .env("XDG_CONFIG_HOME", scratch.path())
            .env("XDG_DATA_HOME", scratch.path())
            .output()
            .expect("code-server --list-extensions");
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed.lines().any(|l| l.trim() == "devbox-test.local-tool"),
            "{server}: {listed}"
        );
    }
}

#[test]
fn git_workspace_is_cloned_at_its_ref() {
    let repo_dir = tempfile::tempdir().expect("temp dir");
    let repo = git2::Repository::init(repo_dir.path()).expect("init");
    let signature = git2::Signature::now("Test", "test@example.com").expect("signature");
    let commit_file = |file: &str, parents: &[&git2::Commit<'_>]| {
        std::fs::write(repo_dir.path().join(file), file).expect("write");
        let mut index = repo.index().expect("index");
        index.add_path(Path::new(file)).expect("add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("find tree");
        let oid = repo
            .commit(None, &signature, &signature, file, &tree, parents)
            .expect("commit");
        repo.find_commit(oid).expect("find commit")
    };
    let first = commit_file("README.md", &[]);
    repo.branch("main", &first, true).expect("main");
    repo.set_head("refs/heads/main").expect("head");
    let second = commit_file("lesson-2.md", &[&first]);
    repo.branch("lesson-2", &second, true).expect("branch");

    let devbox = Devbox::start();
    let url = format!("file://{}", repo_dir.path().display());
    devbox.write_spec(
        "cloned",
        &format!("  state: running\n  workspace:\n    git: {{url: '{url}', ref: lesson-2}}\n"),
    );
    devbox.wait_running("cloned");
    let workspace = devbox.state().join("workspaces/cloned");
    assert!(workspace.join("README.md").is_file());
    assert!(
        workspace.join("lesson-2.md").is_file(),
        "the branch was checked out"
    );
}

#[test]
fn zip_workspace_is_extracted_and_zip_slip_is_rejected() {
    let devbox = Devbox::start();
    let archive = devbox.path("project.zip");
    write_zip(
        &archive,
        &[
            ("project/src/main.py", "print('hi')\n"),
            ("project/README.md", "# hi\n"),
        ],
    );
    devbox.write_spec(
        "zipped",
        &format!(
            "  state: running\n  workspace:\n    zip: {}\n    zip_strip_top_level: true\n",
            archive.display()
        ),
    );
    let (_, port) = devbox.wait_running("zipped");
    let workspace = devbox.state().join("workspaces/zipped");
    assert_eq!(folder_opened(&devbox, port), workspace);
    assert_eq!(
        list_tree(&workspace),
        ["README.md", "src", "src/main.py"],
        "the content of `project/`, without it"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/main.py")).expect("extracted"),
        "print('hi')\n"
    );

    let evil = devbox.path("evil.zip");
    write_zip(&evil, &[("ok.txt", "fine"), ("../../escaped.txt", "pwned")]);
    devbox.write_spec(
        "slip",
        &format!(
            "  state: running\n  workspace:\n    zip: {}\n",
            evil.display()
        ),
    );
    let server = wait_for("slip to fail", Duration::from_secs(30), || {
        devbox.server("slip").filter(|s| s["phase"] == "failed")
    });
    let message = server["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("escaped.txt"),
        "the error names the entry: {message}"
    );
    assert!(server["pid"].is_null());
    assert!(!devbox.path("escaped.txt").exists() && !devbox.state().join("escaped.txt").exists());
    assert!(
        !devbox.state().join("workspaces/slip").exists(),
        "nothing half-extracted"
    );
}

/// The folder code-server opens for a browser at `port`: where its start page, reached
/// through devbox's proxy, sends the browser (`./?folder=<path>`).
fn folder_opened(devbox: &Devbox, port: u16) -> PathBuf {
    let reply = request_once("GET", &devbox.url(&format!("/vscode/{port}/")), &[], None);
    assert_eq!(reply.status, 302, "{reply}");
    let location = reply.header("location").expect("a Location").to_owned();
    let folder = location
        .strip_prefix("./?folder=")
        .unwrap_or_else(|| panic!("code-server names its folder: {location}"));
    PathBuf::from(percent_decode(folder))
}

/// `%XX` escapes decoded (what code-server escapes in its `folder=` parameter).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("a UTF-8 folder")
}

/// A spec body running a zip workspace of `archive`, with `extra` lines under `workspace`.
fn zip_spec(archive: &Path, extra: &str) -> String {
    format!(
        "  state: running\n  workspace:\n    zip: {}\n{extra}",
        archive.display()
    )
}

#[test]
fn zip_workspace_keeps_the_archives_layout_unless_told_to_strip_its_folder() {
    let devbox = Devbox::start();

    // One folder at the top is kept, as the original tool did.
    let lesson = devbox.path("lesson.zip");
    write_zip(&lesson, &[("src/main.py", "print('lesson')\n")]);
    devbox.write_spec("as-is", &zip_spec(&lesson, ""));
    let (_, port) = devbox.wait_running("as-is");
    let workspace = devbox.state().join("workspaces/as-is");
    assert_eq!(folder_opened(&devbox, port), workspace);
    assert_eq!(list_tree(&workspace), ["src", "src/main.py"]);
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/main.py")).expect("extracted"),
        "print('lesson')\n"
    );

    // Stripping asked of an archive without exactly one top-level folder: refused,
    // naming the field, and nothing extracted.
    let flat = devbox.path("flat.zip");
    write_zip(
        &flat,
        &[
            ("src/main.py", "print('flat')\n"),
            ("README.md", "# flat\n"),
        ],
    );
    devbox.write_spec("flat", &zip_spec(&flat, "    zip_strip_top_level: true\n"));
    let server = devbox.wait_status("flat", "failed");
    let message = server["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("zip_strip_top_level")
            && message.contains(r#"holds 2 entries at its top level ("src/", "README.md")"#),
        "the error names the field and what the archive holds: {message}"
    );
    assert!(server["pid"].is_null());
    let flat_workspace = devbox.state().join("workspaces/flat");
    assert!(!flat_workspace.exists(), "nothing half-extracted");

    // Dropping the field is a workspace change: the server starts, in the archive's layout.
    devbox.write_spec("flat", &zip_spec(&flat, ""));
    let (pid, port) = devbox.wait_running("flat");
    assert_eq!(folder_opened(&devbox, port), flat_workspace);
    assert_eq!(
        list_tree(&flat_workspace),
        ["README.md", "src", "src/main.py"]
    );

    // Setting it again restarts the server too, as a new zip would; the workspace,
    // which now holds files, is kept as it is (user work is never replaced).
    devbox.write_spec("flat", &zip_spec(&flat, "    zip_strip_top_level: true\n"));
    let restarted = wait_for(
        &format!("flat to run again\n{}", devbox.log_tail()),
        common::STARTUP,
        || {
            devbox
                .server("flat")
                .filter(|s| s["status"] == "running" && s["pid"].as_u64() != Some(u64::from(pid)))
        },
    );
    assert!(restarted["pid"].is_u64(), "{restarted}");
    assert_eq!(
        list_tree(&flat_workspace),
        ["README.md", "src", "src/main.py"]
    );
}
