//! Every error the API answers, against a real `devbox serve`: the status code, the
//! `{"error": …, "detail": …}` body, and proof that nothing was left behind (no new or
//! changed spec file, no new folder under state/servers or state/workspaces, nothing
//! under state/uploads, `GET /servers` unchanged).

mod common;

use serde_json::{Value, json};

use common::{
    Devbox, Options, Part, Reply, big_zip, form, multipart, rejected, upload_routes, zip_bytes,
};

/// A template whose items need no repository.
const TEMPLATE_CONFIG: &str = r#"packaged_assets:
  tabs:
    - name: Workshops
      items:
        - name: Databricks Workshop
          extensions_groups: [tools]
"#;

/// The names the API must refuse, and a word the error must contain.
fn bad_names() -> Vec<(String, &'static str)> {
    vec![
        ("a/b".into(), "'/'"),
        ("..".into(), "must start with a letter or a digit"),
        (
            "../etc/passwd".into(),
            "must start with a letter or a digit",
        ),
        ("x/../../y".into(), "'/'"),
        ("nul\0byte".into(), "not allowed"),
        ("bell\u{7}name".into(), "not allowed"),
        ("tab\tname".into(), "not allowed"),
        ("new\nline".into(), "not allowed"),
        ("a".repeat(64), "longer than 63"),
        (
            " leading space".into(),
            "must start with a letter or a digit",
        ),
        ("".into(), "empty"),
        ("é".into(), "must start with a letter or a digit"),
    ]
}

#[test]
fn invalid_names_are_400_on_every_create_route() {
    let devbox = Devbox::start_opts(
        Options {
            config: TEMPLATE_CONFIG.into(),
            ..Options::default()
        },
        |_| {},
    );
    let repo = tempfile::tempdir().expect("temp dir");
    common::git_repo(repo.path(), &[("README.md", "x")]);
    let url = format!("file://{}", repo.path().display());
    devbox.create(&json!({"name": "existing"}));

    for (name, needle) in bad_names() {
        rejected(
            &devbox,
            &format!("POST /servers {name:?}"),
            400,
            needle,
            || devbox.post_json("/servers", &json!({"name": name})),
        );
        rejected(
            &devbox,
            &format!("create-metadata {name:?}"),
            400,
            needle,
            || devbox.post_json("/servers/create-metadata", &json!({"name": name})),
        );
        rejected(
            &devbox,
            &format!("create-from-template {name:?}"),
            400,
            needle,
            || {
                devbox.post_json(
                "/servers/create-from-template",
                &json!({"name": name, "template_id": "Databricks Workshop", "tab_name": "Workshops"}),
            )
            },
        );
        // An empty form field counts as missing.
        let needle = if name.is_empty() { "name" } else { needle };
        rejected(
            &devbox,
            &format!("create-with-workspace {name:?}"),
            400,
            needle,
            || {
                devbox.post_multipart(
                    "/servers/create-with-workspace",
                    &[
                        ("name", Part::Text(&name)),
                        ("github_url", Part::Text(&url)),
                    ],
                )
            },
        );
    }

    // A missing name.
    for path in [
        "/servers",
        "/servers/create-metadata",
        "/servers/create-from-template",
    ] {
        rejected(
            &devbox,
            &format!("{path} without name"),
            400,
            "name",
            || {
                devbox.post_json(path, &json!({"extensions": [], "template_id": "Databricks Workshop", "tab_name": "Workshops"}))
            },
        );
    }
    rejected(
        &devbox,
        "create-with-workspace without name",
        400,
        "name",
        || {
            devbox.post_multipart(
                "/servers/create-with-workspace",
                &[("github_url", Part::Text(&url))],
            )
        },
    );
    // Form fields are bounded in length and number (refused as they arrive).
    let long = "x".repeat(2 * 1024 * 1024);
    rejected(
        &devbox,
        "a 2 MB form field",
        400,
        "longer than 65536 bytes",
        || {
            devbox.post_multipart(
                "/servers/create-with-workspace",
                &[
                    ("name", Part::Text("long")),
                    ("description", Part::Text(&long)),
                ],
            )
        },
    );
    let names: Vec<String> = (0..100).map(|i| format!("field{i}")).collect();
    let many: Vec<(&str, Part<'_>)> = names
        .iter()
        .map(|name| (name.as_str(), Part::Text("x")))
        .collect();
    rejected(
        &devbox,
        "a form of 100 fields",
        400,
        "more than 64 fields",
        || devbox.post_multipart("/servers/create-with-workspace", &many),
    );
    rejected(&devbox, "a name that is not a string", 400, "name", || {
        devbox.post_json("/servers", &json!({"name": 5}))
    });

    // The longest name that is allowed, for contrast.
    let longest = "b".repeat(63);
    devbox.create(&json!({"name": longest}));
    assert!(devbox.specs().join(format!("{longest}.yaml")).is_file());
}

#[test]
fn malformed_json_and_missing_content_type_are_400() {
    let devbox = Devbox::start_opts(
        Options {
            config: TEMPLATE_CONFIG.into(),
            ..Options::default()
        },
        |_| {},
    );
    let existing = devbox.create(&json!({"name": "existing"}));
    let id = existing["id"].as_str().expect("id");
    let routes: Vec<(String, Value)> = vec![
        ("/servers".into(), json!({"name": "x"})),
        ("/servers/create-metadata".into(), json!({"name": "x"})),
        (
            "/servers/create-from-template".into(),
            json!({"name": "x", "template_id": "Databricks Workshop", "tab_name": "Workshops"}),
        ),
        (
            format!("/servers/{id}/install-extensions"),
            json!({"extensions": ["acme.tool"]}),
        ),
        (
            format!("/servers/{id}/install-extension"),
            json!({"extension": "acme.tool"}),
        ),
        (
            format!("/servers/{id}/apply-group-settings"),
            json!({"groupName": "tools"}),
        ),
    ];
    for (path, good) in &routes {
        for bad in ["{\"name\":", "not json", "", "[1, 2]", "{\"name\": \"x\",}"] {
            rejected(
                &devbox,
                &format!("{path} with body {bad:?}"),
                400,
                "JSON",
                || {
                    devbox.call(
                        "POST",
                        path,
                        &[("Content-Type", "application/json")],
                        Some(bad.as_bytes()),
                    )
                },
            );
        }
        let body = serde_json::to_vec(good).expect("json");
        rejected(
            &devbox,
            &format!("{path} without Content-Type"),
            400,
            "Content-Type",
            || devbox.call("POST", path, &[], Some(&body)),
        );
        rejected(
            &devbox,
            &format!("{path} as text/plain"),
            400,
            "Content-Type",
            || devbox.call("POST", path, &[("Content-Type", "text/plain")], Some(&body)),
        );
    }
    rejected(
        &devbox,
        "install-extensions with a string",
        400,
        "JSON",
        || {
            devbox.post_json(
                &format!("/servers/{id}/install-extensions"),
                &json!({"extensions": "acme.tool"}),
            )
        },
    );
    rejected(&devbox, "logs?lines=abc", 400, "lines", || {
        devbox.get(&format!("/servers/{id}/logs?lines=abc"))
    });
    rejected(&devbox, "logs?lines=-1", 400, "lines", || {
        devbox.get(&format!("/servers/{id}/logs?lines=-1"))
    });
}

#[test]
fn unknown_groups_and_bad_extensions_are_400() {
    let devbox = Devbox::start();
    let existing = devbox.create(&json!({"name": "existing", "extensions": ["acme.tool"]}));
    let id = existing["id"].as_str().expect("id");
    let cases = [
        (
            json!({"extension_groups": ["nope"]}),
            "unknown extension group `nope`",
        ),
        (json!({"extensions": ["not an id"]}), "not an id"),
        (json!({"extensions": ["../x.vsix"]}), "vsix folder"),
        (json!({"extensions": ["sub/../../x.vsix"]}), "vsix folder"),
        (json!({"extensions": ["acme.tool", ""]}), "extension"),
    ];
    for (fields, needle) in &cases {
        let mut body = fields.clone();
        body["name"] = json!("new-server");
        rejected(
            &devbox,
            &format!("POST /servers {body}"),
            400,
            needle,
            || devbox.post_json("/servers", &body),
        );
    }
    for extension in ["not an id", "../x.vsix", ""] {
        rejected(
            &devbox,
            &format!("install-extension {extension:?}"),
            400,
            "",
            || {
                devbox.post_json(
                    &format!("/servers/{id}/install-extension"),
                    &json!({"extension": extension}),
                )
            },
        );
        rejected(
            &devbox,
            &format!("install-extensions {extension:?}"),
            400,
            "",
            || {
                devbox.post_json(
                    &format!("/servers/{id}/install-extensions"),
                    &json!({"extensions": ["acme.other", extension]}),
                )
            },
        );
    }
    rejected(
        &devbox,
        "install-extensions []",
        400,
        "no extensions",
        || {
            devbox.post_json(
                &format!("/servers/{id}/install-extensions"),
                &json!({"extensions": []}),
            )
        },
    );
    rejected(
        &devbox,
        "apply-group-settings nope",
        400,
        "unknown extension group `nope`",
        || {
            devbox.post_json(
                &format!("/servers/{id}/apply-group-settings"),
                &json!({"groupName": "nope"}),
            )
        },
    );
    // A port outside the range is the caller's mistake too.
    rejected(
        &devbox,
        "a port outside the range",
        400,
        "outside the range",
        || devbox.post_json("/servers", &json!({"name": "new-server", "port": 1})),
    );
}

#[test]
fn invalid_uploads_and_malformed_multipart_are_400() {
    let devbox = Devbox::start();
    let existing = devbox.post_json("/servers/create-metadata", &json!({"name": "existing"}));
    let id = existing.json()["id"].as_str().expect("id").to_owned();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let slip = zip_bytes(&[("ok.txt", "fine"), ("../evil", "pwned")]);
    let deep_slip = zip_bytes(&[("a/../../../evil2", "pwned")]);
    let absolute = zip_bytes(&[("/tmp/evil3", "pwned")]);
    let good = zip_bytes(&[("ok.txt", "fine")]);

    for (what, path) in upload_routes(&id) {
        for (label, bytes, needle) in [
            ("garbage bytes", &garbage, "invalid zip archive"),
            ("zip slip", &slip, "../evil"),
            ("deep zip slip", &deep_slip, "evil2"),
            ("absolute entry", &absolute, "evil3"),
        ] {
            rejected(&devbox, &format!("{what}: {label}"), 400, needle, || {
                devbox.post_multipart(
                    &path,
                    &form(
                        what,
                        vec![(
                            "zip_file",
                            Part::File {
                                filename: "w.zip",
                                bytes,
                            },
                        )],
                    ),
                )
            });
        }
        rejected(
            &devbox,
            &format!("{what}: neither git nor zip"),
            400,
            "github_url",
            || devbox.post_multipart(&path, &form(what, vec![])),
        );
        rejected(
            &devbox,
            &format!("{what}: both git and zip"),
            400,
            "not both",
            || {
                devbox.post_multipart(
                    &path,
                    &form(
                        what,
                        vec![
                            ("github_url", Part::Text("https://example.com/x.git")),
                            (
                                "zip_file",
                                Part::File {
                                    filename: "w.zip",
                                    bytes: &good,
                                },
                            ),
                        ],
                    ),
                )
            },
        );
        // `zip_strip_top_level`: an archive without one top-level folder, a value that is
        // not a yes or no, and a git URL (nothing to strip).
        let flat = zip_bytes(&[("ok.txt", "fine"), ("src/main.py", "pass")]);
        let strip_cases = [
            (
                "no single top-level folder",
                vec![
                    ("zip_strip_top_level", Part::Text("true")),
                    (
                        "zip_file",
                        Part::File {
                            filename: "w.zip",
                            bytes: &flat,
                        },
                    ),
                ],
                r#"zip_strip_top_level is set, but the archive holds 2 entries at its top level ("ok.txt", "src/")"#,
            ),
            (
                "not a yes or no",
                vec![
                    ("zip_strip_top_level", Part::Text("maybe")),
                    (
                        "zip_file",
                        Part::File {
                            filename: "w.zip",
                            bytes: &good,
                        },
                    ),
                ],
                "form field `zip_strip_top_level` must be `true` or `false`",
            ),
            (
                "with a git URL",
                vec![
                    ("zip_strip_top_level", Part::Text("true")),
                    ("github_url", Part::Text("https://example.com/x.git")),
                ],
                "`zip_strip_top_level` applies only to a `zip_file`",
            ),
        ];
        for (label, parts, needle) in strip_cases {
            rejected(&devbox, &format!("{what}: {label}"), 400, needle, || {
                devbox.post_multipart(&path, &form(what, parts))
            });
        }
        // Malformed multipart: a body that does not match its boundary, a truncated
        // body, no boundary, and not multipart at all.
        let (content_type, body) = multipart(&form(
            what,
            vec![("github_url", Part::Text("https://example.com/x.git"))],
        ));
        let truncated = &body[..body.len() / 2];
        for (label, content_type, body) in [
            (
                "garbage body",
                content_type.as_str(),
                b"this is not multipart".as_slice(),
            ),
            ("truncated body", content_type.as_str(), truncated),
            ("no boundary", "multipart/form-data", body.as_slice()),
            (
                "JSON instead",
                "application/json",
                br#"{"name": "x"}"#.as_slice(),
            ),
        ] {
            rejected(
                &devbox,
                &format!("{what}: {label}"),
                400,
                "multipart",
                || devbox.call("POST", &path, &[("Content-Type", content_type)], Some(body)),
            );
        }
    }
    rejected(
        &devbox,
        "extensions not a JSON array",
        400,
        "extensions",
        || {
            devbox.post_multipart(
                "/servers/create-with-workspace",
                &[
                    ("name", Part::Text("uploaded")),
                    ("extensions", Part::Text("ms-python.python")),
                    ("github_url", Part::Text("https://example.com/x.git")),
                ],
            )
        },
    );
    rejected(
        &devbox,
        "a bad extension id in the form",
        400,
        "not an id",
        || {
            devbox.post_multipart(
                "/servers/create-with-workspace",
                &[
                    ("name", Part::Text("uploaded")),
                    ("extensions", Part::Text(r#"["not an id"]"#)),
                    ("github_url", Part::Text("https://example.com/x.git")),
                ],
            )
        },
    );
    for evil in ["evil", "evil2"] {
        assert!(!devbox.path(evil).exists() && !devbox.state().join(evil).exists());
    }
    assert!(!std::path::Path::new("/tmp/evil3").exists());
    assert!(
        common::list_tree(&devbox.state().join("workspaces")).is_empty(),
        "nothing was extracted anywhere"
    );
}

#[test]
fn disallowed_git_urls_are_400_and_never_run() {
    let devbox = Devbox::start();
    let existing = devbox.post_json("/servers/create-metadata", &json!({"name": "existing"}));
    let id = existing.json()["id"].as_str().expect("id").to_owned();
    let marker = devbox.path("pwned");
    let urls = [
        ("ftp://x/y".to_owned(), "`ftp` is not allowed"),
        (
            "http://example.com/x.git".to_owned(),
            "`http` is not allowed",
        ),
        ("ext::sh -c touch /tmp/pwned".to_owned(), ""),
        (format!("ext::sh -c touch% {}", marker.display()), ""),
        (
            "--upload-pack=touch /tmp/pwned".to_owned(),
            "command-line option",
        ),
        (
            format!("--upload-pack=touch {}", marker.display()),
            "command-line option",
        ),
        (" --upload-pack=x".to_owned(), "command-line option"),
        ("-u x".to_owned(), "command-line option"),
    ];
    for (what, path) in upload_routes(&id) {
        for (url, needle) in &urls {
            rejected(
                &devbox,
                &format!("{what}: git URL {url:?}"),
                400,
                needle,
                || devbox.post_multipart(&path, &form(what, vec![("github_url", Part::Text(url))])),
            );
        }
    }
    assert!(!marker.exists(), "git was never run with the URL");
    assert!(
        !devbox.log().contains("upload-pack=touch"),
        "nothing reached the controller"
    );
}

/// (method, path, headers, body) of a request.
type Route<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Option<Vec<u8>>);

#[test]
fn unknown_ids_are_404_on_every_id_route_and_unknown_templates_are_404() {
    let devbox = Devbox::start_opts(
        Options {
            config: TEMPLATE_CONFIG.into(),
            ..Options::default()
        },
        |_| {},
    );
    devbox.create(&json!({"name": "existing"}));
    let json_body = |value: Value| serde_json::to_vec(&value).expect("json");
    let (form_type, form_body) =
        multipart(&[("github_url", Part::Text("https://example.com/x.git"))]);
    for unknown in [
        "6f1c1d2e-0000-4000-8000-000000000000",
        "nope",
        "existing-not",
    ] {
        let routes: Vec<Route<'_>> = vec![
            ("GET", format!("/servers/{unknown}"), vec![], None),
            ("DELETE", format!("/servers/{unknown}"), vec![], None),
            (
                "POST",
                format!("/servers/{unknown}/start"),
                vec![],
                Some(vec![]),
            ),
            (
                "POST",
                format!("/servers/{unknown}/stop"),
                vec![],
                Some(vec![]),
            ),
            (
                "POST",
                format!("/servers/{unknown}/restart"),
                vec![],
                Some(vec![]),
            ),
            ("GET", format!("/servers/{unknown}/health"), vec![], None),
            ("GET", format!("/servers/{unknown}/logs"), vec![], None),
            (
                "GET",
                format!("/servers/{unknown}/logs?lines=5"),
                vec![],
                None,
            ),
            (
                "POST",
                format!("/servers/{unknown}/refresh-status"),
                vec![],
                Some(vec![]),
            ),
            (
                "POST",
                format!("/servers/{unknown}/install-extensions"),
                vec![("Content-Type", "application/json")],
                Some(json_body(json!({"extensions": ["acme.tool"]}))),
            ),
            (
                "POST",
                format!("/servers/{unknown}/install-extension"),
                vec![("Content-Type", "application/json")],
                Some(json_body(json!({"extension": "acme.tool"}))),
            ),
            (
                "POST",
                format!("/servers/{unknown}/apply-group-settings"),
                vec![("Content-Type", "application/json")],
                Some(json_body(json!({"groupName": "tools"}))),
            ),
            (
                "POST",
                format!("/servers/{unknown}/clone-workspace"),
                vec![("Content-Type", form_type.as_str())],
                Some(form_body.clone()),
            ),
        ];
        for (method, path, headers, body) in &routes {
            rejected(&devbox, &format!("{method} {path}"), 404, unknown, || {
                devbox.call(method, path, headers, body.as_deref())
            });
        }
    }
    for (template, tab) in [
        ("No Such Template", "Workshops"),
        ("Databricks Workshop", "No Such Tab"),
        ("databricks workshop", "Workshops"),
    ] {
        rejected(
            &devbox,
            &format!("template {template:?} in {tab:?}"),
            404,
            template,
            || {
                devbox.post_json(
                    "/servers/create-from-template",
                    &json!({"name": "from-template", "template_id": template, "tab_name": tab}),
                )
            },
        );
    }
}

#[test]
fn taken_names_and_ports_are_409() {
    let devbox = Devbox::start_opts(
        Options {
            config: TEMPLATE_CONFIG.into(),
            ..Options::default()
        },
        |_| {},
    );
    let first = devbox.create(&json!({"name": "My Box"}));
    let first_port = first["port"].as_u64().expect("port");
    for name in ["My Box", "My-Box", "My Box  "] {
        rejected(
            &devbox,
            &format!("POST /servers {name:?}"),
            409,
            "already exists",
            || devbox.post_json("/servers", &json!({"name": name})),
        );
        rejected(
            &devbox,
            &format!("create-metadata {name:?}"),
            409,
            "already exists",
            || devbox.post_json("/servers/create-metadata", &json!({"name": name})),
        );
        rejected(
            &devbox,
            &format!("create-from-template {name:?}"),
            409,
            "already exists",
            || {
                devbox.post_json(
                "/servers/create-from-template",
                &json!({"name": name, "template_id": "Databricks Workshop", "tab_name": "Workshops"}),
            )
            },
        );
        let archive = zip_bytes(&[("a.txt", "a")]);
        rejected(
            &devbox,
            &format!("create-with-workspace {name:?}"),
            409,
            "already exists",
            || {
                devbox.post_multipart(
                    "/servers/create-with-workspace",
                    &[
                        ("name", Part::Text(name)),
                        (
                            "zip_file",
                            Part::File {
                                filename: "a.zip",
                                bytes: &archive,
                            },
                        ),
                    ],
                )
            },
        );
    }
    // A name taken by a spec written by hand.
    devbox.write_spec(
        "handmade",
        &format!("  state: stopped\n  port: {}\n", devbox.port_end),
    );
    common::wait_for("handmade to be listed", common::STARTUP, || {
        devbox.server("handmade")
    });
    rejected(
        &devbox,
        "a hand-written spec's name",
        409,
        "already exists",
        || devbox.post_json("/servers", &json!({"name": "handmade"})),
    );
    // A port another server has.
    rejected(
        &devbox,
        "another server's port",
        409,
        &first_port.to_string(),
        || devbox.post_json("/servers", &json!({"name": "thief", "port": first_port})),
    );
    rejected(
        &devbox,
        "a hand-written spec's port",
        409,
        "handmade",
        || {
            devbox.post_json(
                "/servers",
                &json!({"name": "thief", "port": devbox.port_end}),
            )
        },
    );
    assert_eq!(
        common::list_dir(&devbox.specs()),
        ["My-Box.yaml", "handmade.yaml"]
    );
}

/// `curl -F` of a file upload (curl copes with an answer that arrives before the whole
/// body was sent); returns (status, body).
fn curl_upload(devbox: &Devbox, path: &str, fields: &[&str], file: &std::path::Path) -> Reply {
    let mut command = std::process::Command::new("curl");
    command.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"]);
    for field in fields {
        command.arg("--form-string").arg(field);
    }
    command
        .arg("-F")
        .arg(format!("zip_file=@{};type=application/zip", file.display()))
        .arg(devbox.url(path));
    let output = command.output().expect("run curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (text, status) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    Reply {
        status: status.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl gave no status: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        }),
        headers: Vec::new(),
        text: text.to_owned(),
    }
}

#[test]
fn uploads_over_the_limit_are_413_and_leave_nothing() {
    let devbox = Devbox::start_opts(
        Options {
            config: "ui:\n  workspace:\n    max_upload_size_mb: 1\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    let existing = devbox.post_json("/servers/create-metadata", &json!({"name": "existing"}));
    let id = existing.json()["id"].as_str().expect("id").to_owned();
    let archive = devbox.path("big.zip");
    std::fs::write(&archive, big_zip(2 * 1024 * 1024)).expect("write zip");
    for (what, path) in upload_routes(&id) {
        let fields: &[&str] = if what == "create-with-workspace" {
            &["name=too-big"]
        } else {
            &[]
        };
        rejected(
            &devbox,
            &format!("{what}: 2 MB (curl)"),
            413,
            "1 MB",
            || curl_upload(&devbox, &path, fields, &archive),
        );
        // The same with the whole body sent at once.
        let bytes = std::fs::read(&archive).expect("read zip");
        rejected(&devbox, &format!("{what}: 2 MB (ureq)"), 413, "", || {
            devbox.post_multipart(
                &path,
                &form(
                    what,
                    vec![(
                        "zip_file",
                        Part::File {
                            filename: "big.zip",
                            bytes: &bytes,
                        },
                    )],
                ),
            )
        });
    }
    assert!(common::list_tree(&devbox.state().join("uploads")).is_empty());
    assert_eq!(
        common::list_dir(&devbox.state().join("servers")),
        ["existing"],
        "no folder for the refused server"
    );
    // Under the limit, the same route works.
    let small = devbox.path("small.zip");
    std::fs::write(&small, big_zip(512 * 1024)).expect("write zip");
    let reply = curl_upload(
        &devbox,
        "/servers/create-with-workspace",
        &["name=small"],
        &small,
    );
    assert_eq!(reply.status, 201, "{reply}");
}

#[test]
fn rejected_creates_do_not_keep_ports() {
    // Long resync: only the API's own requests make devbox look at the specs.
    let devbox = Devbox::start_opts(
        Options {
            ports: 3,
            config: "controller:\n  resync_interval: 10m\n".into(),
            ..Options::default()
        },
        |_| {},
    );
    for _ in 0..3 {
        rejected(&devbox, "a bad extension", 400, "not an id", || {
            devbox.post_json(
                "/servers",
                &json!({"name": "bad", "extensions": ["not an id"]}),
            )
        });
    }
    // Three ports, no server: three creates must succeed.
    for name in ["one", "two", "three"] {
        let reply = devbox.post_json("/servers", &json!({"name": name}));
        assert_eq!(reply.status, 201, "{name}: {reply}");
    }
}
