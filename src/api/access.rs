//! What a caller may do through the API: the [`Caller`] every handler is given, and the
//! rules for users (admins may do everything).
//!
//! A user sees and changes only the servers they own; everything else answers 404, as
//! if it did not exist, so that no other name leaks. A user creates servers only from
//! what the config offers (templates, extension groups, git URLs the config allows),
//! never sets what reaches into the host (`env`, workspace paths, a port, another
//! owner) nor its own limits (`resources`), and owns at most
//! `auth.max_servers_per_user` servers. Each rule is a plain function of the caller and
//! the request, tested without a server.

use std::path::Path;

use aide::OperationInput;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::http::ApiError;
use crate::identity::Caller;
use crate::spec::DevServer;

/// The caller the HTTP front authenticated. A request that reached a handler without
/// one went around authentication: it is refused, never treated as the admin.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("who is calling is not known".into()))
    }
}

impl OperationInput for Caller {}

/// Refuses a route only admins may use.
pub fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("only admins may {what}")))
    }
}

/// Checks the name of a server a user is about to create: no data of an earlier server
/// of that name may be left (a deleted server's kept workspace, say), as the new server
/// would start in it and hand its files to someone who may not be whose they were.
/// `has_data`: whether the name's data is there. Admins may reuse any name.
pub fn check_new_name(
    caller: &Caller,
    name: &str,
    has_data: impl FnOnce(&str) -> bool,
) -> Result<(), ApiError> {
    if caller.is_admin() || !has_data(name) {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "the files of an earlier server named `{name}` are still kept (its workspace): \
         choose another name, or ask an admin to remove them"
    )))
}

/// Checks a server a user is about to create or replace (before its owner is set):
/// only what the config offers, nothing that reaches into the host. The one zip a
/// user's workspace may name is `own_upload`, where devbox keeps what they uploaded.
/// Admins may create anything.
pub fn check_create(
    caller: &Caller,
    server: &DevServer,
    own_upload: &Path,
) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    let spec = &server.spec;
    let refused = |field: &str, why: &str| {
        Err(ApiError::Forbidden(format!(
            "`{field}` may be set by admins only: {why}"
        )))
    };
    if !spec.env.is_empty() {
        return refused("env", "it reaches the instance's process");
    }
    if spec.port.is_some() {
        return refused("port", "ports are handed out by devbox");
    }
    if !spec.extensions.is_empty() {
        return refused("extensions", "users choose extension groups of the config");
    }
    if let Some(workspace) = &spec.workspace {
        if workspace.path.is_some() {
            return refused("workspace.path", "it names a folder on the host");
        }
        if workspace
            .zip
            .as_deref()
            .is_some_and(|zip| zip != own_upload)
        {
            return refused("workspace.zip", "it names a file on the host");
        }
    }
    if spec.resources.is_some() {
        return refused(
            "resources",
            "limits are the admin's (the config's default_resources apply)",
        );
    }
    if spec.runtime.is_some() {
        return refused(
            "runtime",
            "where servers run is the admin's (the config's runtime.default applies)",
        );
    }
    if server.metadata.owner.is_some() {
        return refused("owner", "a user's servers are their own");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::UserName;
    use crate::spec::{GitWorkspace, Workspace};

    fn server(edit: impl FnOnce(&mut DevServer)) -> DevServer {
        let mut server: DevServer = crate::yaml::from_str(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata: {name: x}\nspec: {}\n",
        )
        .unwrap();
        edit(&mut server);
        server
    }

    const UPLOAD: &str = "/state/servers/x/workspace.zip";

    fn refusal(caller: &Caller, server: &DevServer) -> Option<String> {
        match check_create(caller, server, Path::new(UPLOAD)) {
            Ok(()) => None,
            Err(ApiError::Forbidden(message)) => Some(message),
            Err(other) => panic!("not a 403: {other:?}"),
        }
    }

    #[test]
    fn only_admins_reuse_a_name_whose_files_are_kept() {
        let user = Caller::User(UserName::parse("ada").unwrap());
        let kept = |name: &str| name == "pool-python-1";
        assert!(matches!(
            check_new_name(&user, "pool-python-1", kept),
            Err(ApiError::Conflict(message)) if message.contains("`pool-python-1`")
        ));
        assert!(check_new_name(&user, "web", kept).is_ok());
        assert!(check_new_name(&Caller::Admin, "pool-python-1", kept).is_ok());
    }

    #[test]
    fn users_create_from_what_the_config_offers_only() {
        let user = Caller::User(UserName::parse("ada").unwrap());
        let fine = server(|s| {
            s.spec.extension_groups = vec!["python".into()];
            s.spec.workspace = Some(Workspace {
                git: Some(GitWorkspace {
                    url: "https://example.org/r.git".into(),
                    reference: None,
                }),
                ..Workspace::default()
            });
        });
        assert_eq!(refusal(&user, &fine), None);
        let uploaded = server(|s| {
            s.spec.workspace = Some(Workspace {
                zip: Some(UPLOAD.into()),
                zip_strip_top_level: true,
                ..Workspace::default()
            });
        });
        assert_eq!(
            refusal(&user, &uploaded),
            None,
            "their own upload, in any layout"
        );

        type Edit = Box<dyn FnOnce(&mut DevServer)>;
        let cases: [(&str, Edit); 8] = [
            (
                "`runtime`",
                Box::new(|s| s.spec.runtime = Some(crate::runtime::Backend::Slurm)),
            ),
            (
                "`resources`",
                Box::new(|s| {
                    s.spec.resources = Some(crate::resources::Resources {
                        pids: Some(4096),
                        ..Default::default()
                    })
                }),
            ),
            (
                "`env`",
                Box::new(|s| _ = s.spec.env.insert("A".into(), "1".into())),
            ),
            ("`port`", Box::new(|s| s.spec.port = Some(8010))),
            (
                "`extensions`",
                Box::new(|s| s.spec.extensions = vec!["a.b".into()]),
            ),
            (
                "`workspace.path`",
                Box::new(|s| {
                    s.spec.workspace = Some(Workspace {
                        path: Some("/etc".into()),
                        ..Workspace::default()
                    })
                }),
            ),
            (
                "`workspace.zip`",
                Box::new(|s| {
                    s.spec.workspace = Some(Workspace {
                        zip: Some("/x.zip".into()),
                        ..Workspace::default()
                    })
                }),
            ),
            (
                "`owner`",
                Box::new(|s| s.metadata.owner = Some("bob".into())),
            ),
        ];
        for (field, edit) in cases {
            let refused = server(edit);
            let message = refusal(&user, &refused).unwrap_or_default();
            assert!(message.contains(field), "{field}: {message}");
            assert_eq!(refusal(&Caller::Admin, &refused), None, "{field}");
        }
    }

    #[test]
    fn admin_routes_refuse_users() {
        let user = Caller::User(UserName::parse("ada").unwrap());
        assert!(admin_only(&Caller::Admin, "x").is_ok());
        assert!(matches!(
            admin_only(&user, "write specs"),
            Err(ApiError::Forbidden(m)) if m.contains("write specs")
        ));
    }
}
