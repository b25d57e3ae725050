//! The DevServer spec (`specs/<name>.yaml`): its types, its checks, and its resolution
//! against the config into a [`ServerSpec`] the controller acts on.
//!
//! Resolution expands extension groups and templates into plain lists, resolves `.vsix`
//! and zip paths, and computes a hash of everything that needs a restart when it changes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{Config, SettingsMap, is_extension_reference};
use crate::diagnostic::Diagnostic;
use crate::duration::HumanDuration;
use crate::identity::UserName;
use crate::provision::{ExtensionRef, WorkspaceSource, ZipLayout};
use crate::resources::Resources;
use crate::runtime::Backend;
use crate::yaml;

pub const API_VERSION: &str = "devbox/v1";
pub const KIND: &str = "DevServer";

/// Annotation the API bumps to ask for a restart without changing anything else.
pub const RESTARTED_AT_ANNOTATION: &str = "devbox/restarted-at";

/// Namespace for ids derived from names (uuid v5), so a name always maps to one id.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c0d_e5b0_9d1e_4f0a_8a53_2f6b_1c9e_7d42);

/// One `specs/<name>.yaml` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "DevServer")]
pub struct DevServer {
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: DevServerSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "devbox/v1")]
    V1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Kind {
    DevServer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Equal to the file stem: letters, digits, `-`, `_`, `.`; 1 to 63 characters,
    /// starting with a letter or digit.
    pub name: String,
    /// What the API and UI show as the server's name (may hold spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Stable id; derived from the name (uuid v5) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The user this server belongs to (1-64 letters, digits, `-`, `_`, `.`, `@`): only
    /// they (and admins) see, open and change it. Absent: the admin's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Free-form notes; `devbox/restarted-at` changes trigger a restart.
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevServerSpec {
    /// Desired state; default `running`.
    #[serde(default)]
    pub state: DesiredState,
    /// Loopback port; allocated from the config's port range when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Extension groups from the config, by key.
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extension_groups: Vec<String>,
    /// Marketplace ids (`publisher.name[@version]`) or `.vsix` files in the vsix folder.
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extensions: Vec<String>,
    /// VS Code user settings; override those of the groups.
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "serde_json::Map::is_empty"
    )]
    pub user_settings: SettingsMap,
    /// The folder to open; an empty folder when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// A template from the config's `packaged_assets`: adds its groups and repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// Extra environment for the code-server process.
    #[serde(
        default,
        deserialize_with = "crate::yaml::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Stop the server after this long without a connected browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<HumanDuration>,
    /// Limits of the instance (memory, cpus, pids); each one left out is the config's
    /// `controller.default_resources`. Admins only. Enforced with a cgroup per instance
    /// where devbox may create cgroups; elsewhere the server runs and its status says
    /// the limits are not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// What runs it: `local` (a process on devbox's host) or `slurm` (a job on the
    /// config's cluster); the config's `runtime.default` when absent. Admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whenever the process exits.
    Always,
    /// Restart when it exits with an error or a signal.
    #[default]
    OnFailure,
    /// Never restart; an exit leaves the server stopped (or failed).
    Never,
}

/// Where the workspace folder comes from: at most one of `git`, `zip`, `path`
/// (none = an empty folder).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// Clone a git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitWorkspace>,
    /// Extract a zip archive (relative paths are from the spec file's folder), keeping
    /// its layout: an entry `src/main.py` becomes `src/main.py` in the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<PathBuf>,
    /// With `zip`: the archive holds exactly one top-level folder (GitHub's
    /// `repo-main/` archives) and its content becomes the workspace; an archive with
    /// anything else at its top level is refused. Default `false`: the layout is kept.
    #[serde(default, skip_serializing_if = "is_false")]
    pub zip_strip_top_level: bool,
    /// Open an existing folder as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitWorkspace {
    pub url: String,
    /// Branch, tag or commit; the remote's default branch when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    pub tab: String,
    pub name: String,
}

/// A spec checked and resolved against the config: what the controller acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub name: String,
    pub display_name: String,
    pub id: Uuid,
    /// Whose server this is; `None`: the admin's.
    pub owner: Option<UserName>,
    /// The name of the template item it was made from (`spec.template.name`).
    pub template: Option<String>,
    /// The template whose pool it waits in, unclaimed ([`POOL_LABEL`]).
    pub pool: Option<String>,
    pub file: PathBuf,
    pub state: DesiredState,
    pub port: Option<u16>,
    pub extensions: Vec<ExtensionRef>,
    pub user_settings: SettingsMap,
    pub workspace: WorkspaceSource,
    pub env: BTreeMap<String, String>,
    pub restart_policy: RestartPolicy,
    pub idle_timeout: Option<HumanDuration>,
    /// The spec's limits, each one absent taken from the config's defaults.
    pub resources: Resources,
    pub runtime: Backend,
    /// Hash of everything that needs a restart when it changes (not `state`).
    pub hash: String,
    /// Hash of the whole resolved spec: any change at all gives a new revision.
    pub revision: String,
}

/// Whether `name` is a valid server name (also used for file stems).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= 63
        && first.is_ascii_alphanumeric()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The label of a pool server's spec, naming the template whose pool it waits in
/// (see [`crate::pool`]); a claim removes it. It counts only on a spec without an owner.
pub const POOL_LABEL: &str = "devbox/pool";
/// The annotation of a pool server's spec holding what its template made it of
/// ([`crate::pool::members::fingerprint`]); a claim removes it.
pub const POOL_FINGERPRINT_ANNOTATION: &str = "devbox/pool-template";
/// How every pool server's name starts.
pub const POOL_NAME_PREFIX: &str = "pool-";

impl Metadata {
    /// The template whose pool this server waits in, unclaimed: a `pool-…` name, the
    /// pool's label and fingerprint, and no owner (a server with an owner is someone's,
    /// whatever its labels say). Only such a server is hidden from lists and has its
    /// workspace purged when deleted, so a copy of a member's file with another name is
    /// an ordinary server.
    pub fn unclaimed_pool(&self) -> Option<&str> {
        let member = self.owner.is_none()
            && self.name.starts_with(POOL_NAME_PREFIX)
            && self.annotations.contains_key(POOL_FINGERPRINT_ANNOTATION);
        self.labels
            .get(POOL_LABEL)
            .filter(|_| member)
            .map(String::as_str)
    }
}

/// Whether `reference` may be handed to git as a branch, tag or commit (never an option).
pub fn is_valid_git_reference(reference: &str) -> bool {
    !reference.is_empty() && !reference.starts_with('-')
}

/// The id a server gets when its spec names none.
pub fn id_for_name(name: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}

impl DevServer {
    /// Parses a spec file's text, without checking it against the config.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Self, Diagnostic> {
        yaml::from_str(text).map_err(|err| Diagnostic::from_yaml(file, err))
    }

    pub fn to_yaml(&self) -> Result<String, yaml::YamlError> {
        let body = yaml::to_string(self)?;
        Ok(format!(
            "# yaml-language-server: $schema=../schemas/devserver.schema.json\n{body}"
        ))
    }
}

/// Reads, checks and resolves one spec file's text. Every problem found is returned.
pub fn load(file: &Path, text: &str, config: &Config) -> Result<ServerSpec, Vec<Diagnostic>> {
    let server = DevServer::from_yaml(file, text).map_err(|d| vec![d])?;
    resolve(file, text, &server, config)
}

/// Checks `server` (read from `file`, whose text is `text`) and resolves it against `config`.
pub fn resolve(
    file: &Path,
    text: &str,
    server: &DevServer,
    config: &Config,
) -> Result<ServerSpec, Vec<Diagnostic>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let meta = &server.metadata;
    let spec = &server.spec;

    if !is_valid_name(&meta.name) {
        problems.push((
            "metadata.name".into(),
            format!(
                "`{}` is not a valid name: use 1-63 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
                meta.name
            ),
        ));
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if meta.name != stem {
        problems.push((
            "metadata.name".into(),
            format!("`{}` must equal the file name `{stem}`", meta.name),
        ));
    }

    let range = config.server.code_server_port_range;
    if let Some(port) = spec.port.filter(|p| !range.contains(*p)) {
        problems.push((
            "spec.port".into(),
            format!(
                "port {port} is outside the range {}-{}",
                range.start, range.end
            ),
        ));
    }

    // Groups: the template's first, then the spec's own, without repeats.
    let mut groups: Vec<&str> = Vec::new();
    let mut template_git = None;
    if let Some(template) = &spec.template {
        match config.template(&template.tab, &template.name) {
            Some(item) => {
                groups.extend(item.extensions_groups.iter().map(String::as_str));
                template_git = Some((item.github_url.clone(), item.github_ref.clone()))
                    .filter(|(url, _)| !url.is_empty());
            }
            None => problems.push((
                "spec.template".into(),
                format!("no template `{}` in tab `{}`", template.name, template.tab),
            )),
        }
    }
    for (i, group) in spec.extension_groups.iter().enumerate() {
        if !config.extension_groups.contains_key(group) {
            problems.push((
                format!("spec.extension_groups[{i}]"),
                format!("unknown extension group `{group}`"),
            ));
        } else if !groups.contains(&group.as_str()) {
            groups.push(group);
        }
    }

    let mut references: Vec<(String, Option<String>)> = Vec::new(); // (reference, field when from the spec)
    let mut user_settings = SettingsMap::new();
    for group in &groups {
        if let Some(g) = config.extension_groups.get(*group) {
            references.extend(g.extensions.iter().map(|e| (e.clone(), None)));
            user_settings.extend(g.user_settings.clone());
        }
    }
    references.extend(
        spec.extensions
            .iter()
            .enumerate()
            .map(|(i, e)| (e.clone(), Some(format!("spec.extensions[{i}]")))),
    );
    user_settings.extend(spec.user_settings.clone());

    let vsix_dir = config.vsix_dir();
    let mut extensions: Vec<ExtensionRef> = Vec::new();
    for (reference, field) in references {
        let field = field.unwrap_or_else(|| "spec.extension_groups".into());
        match resolve_extension(&reference, &vsix_dir) {
            Ok(ext) if !extensions.contains(&ext) => extensions.push(ext),
            Ok(_) => {}
            Err(message) => problems.push((field, message)),
        }
    }

    let spec_dir = file.parent().unwrap_or(Path::new("."));
    let chosen = spec.workspace.clone().unwrap_or_default();
    let given = [
        chosen.git.is_some(),
        chosen.zip.is_some(),
        chosen.path.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        problems.push((
            "spec.workspace".into(),
            "give only one of `git`, `zip` and `path`".into(),
        ));
    }
    if chosen.zip_strip_top_level && chosen.zip.is_none() {
        problems.push((
            "spec.workspace.zip_strip_top_level".into(),
            "applies only to a `zip` workspace".into(),
        ));
    }
    let zip_layout = if chosen.zip_strip_top_level {
        ZipLayout::StripTopLevel
    } else {
        ZipLayout::AsIs
    };
    let workspace = match (chosen, template_git) {
        (Workspace { git: Some(git), .. }, _) => {
            if let Err(message) = config.check_git_url(&git.url) {
                problems.push(("spec.workspace.git.url".into(), message));
            }
            if git
                .reference
                .as_deref()
                .is_some_and(|r| !is_valid_git_reference(r))
            {
                problems.push((
                    "spec.workspace.git.ref".into(),
                    "not a valid git reference".into(),
                ));
            }
            WorkspaceSource::Git {
                url: git.url,
                reference: git.reference,
            }
        }
        (
            Workspace {
                zip: Some(path), ..
            },
            _,
        ) => WorkspaceSource::Zip {
            archive: absolute_from(spec_dir, &path),
            layout: zip_layout,
        },
        (
            Workspace {
                path: Some(path), ..
            },
            _,
        ) => WorkspaceSource::Path(absolute_from(spec_dir, &path)),
        (_, Some((url, reference))) => WorkspaceSource::Git { url, reference },
        (_, None) => WorkspaceSource::Empty,
    };

    for key in spec.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            problems.push((
                format!("spec.env.{key}"),
                "not a valid environment variable name".into(),
            ));
        }
    }
    if let Some(resources) = &spec.resources {
        problems.extend(resources.problems("spec.resources"));
    }
    let owner = match meta.owner.as_deref().map(UserName::parse).transpose() {
        Ok(owner) => owner,
        Err(err) => {
            problems.push(("metadata.owner".into(), err.to_string()));
            None
        }
    };
    if let Some(name) = &meta.display_name
        && (name.is_empty() || name.chars().any(char::is_control))
    {
        problems.push((
            "metadata.display_name".into(),
            "must be non-empty text without control characters".into(),
        ));
    }

    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|(field, message)| Diagnostic::field(file, text, field, message))
            .collect());
    }

    let mut resolved = ServerSpec {
        name: meta.name.clone(),
        display_name: meta
            .display_name
            .clone()
            .unwrap_or_else(|| meta.name.clone()),
        id: meta.id.unwrap_or_else(|| id_for_name(&meta.name)),
        owner,
        template: spec.template.as_ref().map(|t| t.name.clone()),
        pool: meta.unclaimed_pool().map(str::to_owned),
        file: file.to_owned(),
        state: spec.state,
        port: spec.port,
        extensions,
        user_settings,
        workspace,
        env: spec.env.clone(),
        restart_policy: spec.restart_policy,
        idle_timeout: spec.idle_timeout,
        resources: spec
            .resources
            .unwrap_or_default()
            .or(config.controller.default_resources),
        runtime: spec.runtime.unwrap_or(config.runtime.default),
        hash: String::new(),
        revision: String::new(),
    };
    resolved.hash = restart_hash(
        &resolved,
        meta.annotations.get(RESTARTED_AT_ANNOTATION),
        config.isolation.per_owner(),
    );
    resolved.revision = short_digest(format!("{resolved:?}{:?}", meta.annotations).as_bytes());
    Ok(resolved)
}

/// A `.vsix` reference resolves inside the vsix folder and must not leave it; anything
/// else must be a marketplace id.
fn resolve_extension(reference: &str, vsix_dir: &Path) -> Result<ExtensionRef, String> {
    if !is_extension_reference(reference) {
        return Err(format!(
            "`{reference}` is neither an extension id (publisher.name) nor a .vsix file"
        ));
    }
    if !reference.ends_with(".vsix") {
        return Ok(ExtensionRef::Marketplace(reference.to_owned()));
    }
    let relative = Path::new(reference);
    let relative = relative.strip_prefix("./").unwrap_or(relative);
    let relative = relative.strip_prefix("vsix").unwrap_or(relative);
    let escapes = relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)));
    if escapes || relative.as_os_str().is_empty() {
        return Err(format!(
            "`{reference}` must name a file inside the vsix folder {}",
            vsix_dir.display()
        ));
    }
    Ok(ExtensionRef::Vsix(vsix_dir.join(relative)))
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn absolute_from(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

fn restart_hash(spec: &ServerSpec, restarted_at: Option<&String>, per_owner: bool) -> String {
    // Everything that changes what runs, in a stable textual form (serde_json keeps map
    // order for BTreeMap and for serde_json::Map without `preserve_order`).
    let mut material = serde_json::json!({
        "port": spec.port,
        "extensions": format!("{:?}", spec.extensions),
        "user_settings": spec.user_settings,
        "workspace": workspace_material(&spec.workspace),
        "env": spec.env,
        "restarted_at": restarted_at,
    });
    // Only when set: the hash of a spec without limits stays what it was before limits
    // existed, so that an upgraded devbox adopts its instances instead of restarting
    // them.
    if !spec.resources.is_empty() {
        material["resources"] = serde_json::json!(spec.resources.to_string());
    }
    // With each owner's instances under their own user, the owner is who it runs as:
    // a server given to someone (a claimed pool server, a seat link for an unowned
    // one) starts again as its new owner's user. Only when set, so that the admin's
    // servers keep the hash they had.
    if per_owner && let Some(owner) = &spec.owner {
        material["run_as"] = serde_json::json!(owner.as_str());
    }
    // Likewise only off the default backend.
    if spec.runtime != Backend::Local {
        material["runtime"] = serde_json::json!(spec.runtime.name());
    }
    short_digest(material.to_string().as_bytes())
}

/// The workspace's part of the restart hash: its source, and for a zip its layout too,
/// so changing `zip_strip_top_level` restarts the server as changing `zip` does. A zip
/// kept as it is hashes as every zip did before layouts existed, so an upgraded devbox
/// adopts such servers instead of restarting them.
fn workspace_material(source: &WorkspaceSource) -> String {
    match source {
        WorkspaceSource::Zip {
            archive,
            layout: ZipLayout::AsIs,
        } => format!("Zip({archive:?})"),
        WorkspaceSource::Zip { archive, layout } => format!("Zip({archive:?}, {layout:?})"),
        other => format!("{other:?}"),
    }
}

/// 24 hex digits of SHA-256: plenty to tell revisions of one spec apart.
fn short_digest(bytes: &[u8]) -> String {
    crate::digest::sha256_hex(bytes, 12)
}

/// Spec files for tests of modules that read the specs directory.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    /// Writes `<dir>/<name>.yaml`: a spec named `name` whose `spec:` section is `body`
    /// (lines indented by two spaces).
    pub(crate) fn write_spec(dir: &Path, name: &str, body: &str) {
        let text = format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{body}"
        );
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::embedded_default()
    }

    fn spec_text(name: &str, body: &str) -> String {
        format!("apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: {name}\nspec:\n{body}")
    }

    #[test]
    fn empty_lists_and_maps_read_as_none() {
        let text = "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: a\n  labels:\nspec:\n  extensions:\n  extension_groups:\n  env:\n  user_settings:\n";
        let spec = load(Path::new("specs/a.yaml"), text, &config()).expect("valid");
        assert!(spec.extensions.is_empty() && spec.env.is_empty());
    }

    #[test]
    fn minimal_spec_resolves_with_defaults() {
        let text = spec_text("alice", "  state: running\n");
        let spec = load(Path::new("specs/alice.yaml"), &text, &config()).unwrap();
        assert_eq!(spec.state, DesiredState::Running);
        assert_eq!(spec.id, id_for_name("alice"));
        assert_eq!(spec.workspace, WorkspaceSource::Empty);
        assert_eq!(spec.restart_policy, RestartPolicy::OnFailure);
    }

    #[test]
    fn groups_expand_and_spec_settings_win() {
        let text = spec_text(
            "bob",
            "  extension_groups: [python]\n  extensions: [ms-python.python, acme.tool]\n  user_settings:\n    python.languageServer: Pylance\n",
        );
        let spec = load(Path::new("specs/bob.yaml"), &text, &config()).unwrap();
        let labels: Vec<_> = spec.extensions.iter().map(ExtensionRef::label).collect();
        assert_eq!(
            labels,
            ["ms-python.python", "ms-pyright.pyright", "acme.tool"]
        );
        assert_eq!(spec.user_settings["python.languageServer"], "Pylance");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let text = spec_text(
            "carol",
            "  port: 9999\n  extension_groups: [python, nope]\n  extensions: [../../etc/x.vsix, 'bad id']\n",
        );
        let errs = load(Path::new("specs/dave.yaml"), &text, &config()).unwrap_err();
        let fields: Vec<_> = errs.iter().filter_map(|d| d.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "spec.port",
                "spec.extension_groups[1]",
                "spec.extensions[0]",
                "spec.extensions[1]"
            ]
        );
        let port = &errs[1];
        assert_eq!((port.line, port.column), (Some(6), Some(3)));
        assert!(
            port.to_string()
                .starts_with("specs/dave.yaml:6:3: spec.port: port 9999"),
            "{port}"
        );
    }

    #[test]
    fn unknown_field_and_bad_yaml_are_errors() {
        let text = spec_text("eve", "  stat: running\n");
        let errs = load(Path::new("specs/eve.yaml"), &text, &config()).unwrap_err();
        assert!(
            errs[0].message.contains("unknown field `stat`"),
            "{}",
            errs[0]
        );
        let errs = load(Path::new("specs/eve.yaml"), "spec: [\n", &config()).unwrap_err();
        assert!(errs[0].line.is_some());
    }

    #[test]
    fn names() {
        assert!(is_valid_name("alice"));
        assert!(is_valid_name("a.b_c-1"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(".hidden"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("my box"));
        assert!(!is_valid_name(&"a".repeat(64)));
    }

    #[test]
    fn hash_ignores_state_but_not_settings() {
        let cfg = config();
        let a = load(
            Path::new("a.yaml"),
            &spec_text("a", "  state: running\n"),
            &cfg,
        )
        .unwrap();
        let b = load(
            Path::new("a.yaml"),
            &spec_text("a", "  state: stopped\n"),
            &cfg,
        )
        .unwrap();
        let c = load(
            Path::new("a.yaml"),
            &spec_text("a", "  user_settings: {editor.fontSize: 3}\n"),
            &cfg,
        )
        .unwrap();
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_ne!(a.revision, b.revision, "any change is a new revision");
    }

    #[test]
    fn with_owners_under_their_own_users_a_new_owner_restarts_the_server() {
        let owned = |owner: Option<&str>, cfg: &Config| {
            let meta = owner.map_or(String::new(), |o| format!("  owner: {o}\n"));
            let text = format!(
                "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: a\n{meta}spec:\n  state: running\n"
            );
            load(Path::new("a.yaml"), &text, cfg).expect("valid")
        };
        let shared = config();
        let mut isolated = config();
        isolated.isolation.run_as = crate::config::RunAs::Owner;
        // Everyone's instances as devbox's user: an owner is only who may open it.
        assert_eq!(owned(None, &shared).hash, owned(Some("ada"), &shared).hash);
        // Each owner's under their own: given to ada, it must run as ada's user.
        let admins = owned(None, &isolated);
        assert_eq!(
            admins.hash,
            owned(None, &shared).hash,
            "the admin's keep their hash"
        );
        assert_ne!(admins.hash, owned(Some("ada"), &isolated).hash);
        assert_ne!(
            owned(Some("ada"), &isolated).hash,
            owned(Some("bob"), &isolated).hash
        );
    }

    #[test]
    fn zip_layout_is_kept_unless_stripping_is_asked_and_changing_it_restarts() {
        let cfg = config();
        let zip = |extra: &str| {
            let body = format!("  workspace:\n    zip: /specs/lesson.zip\n{extra}");
            load(Path::new("specs/a.yaml"), &spec_text("a", &body), &cfg)
        };
        let kept = zip("").expect("valid");
        assert_eq!(
            kept.workspace,
            WorkspaceSource::Zip {
                archive: "/specs/lesson.zip".into(),
                layout: ZipLayout::AsIs
            }
        );
        // What every zip spec hashed to before `zip_strip_top_level` existed: an upgraded
        // devbox adopts its servers instead of restarting them.
        assert_eq!(kept.hash, "d60c3165d62b4783b55f0fd2");
        assert_eq!(
            zip("    zip_strip_top_level: false\n").expect("valid").hash,
            kept.hash
        );

        let stripped = zip("    zip_strip_top_level: true\n").expect("valid");
        assert!(matches!(
            stripped.workspace,
            WorkspaceSource::Zip {
                layout: ZipLayout::StripTopLevel,
                ..
            }
        ));
        assert_ne!(
            stripped.hash, kept.hash,
            "a new layout is a workspace change"
        );

        let text = spec_text(
            "a",
            "  workspace:\n    path: /srv/x\n    zip_strip_top_level: true\n",
        );
        let errs = load(Path::new("specs/a.yaml"), &text, &cfg).expect_err("not a zip");
        assert_eq!(
            errs[0].field.as_deref(),
            Some("spec.workspace.zip_strip_top_level"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn resources_fall_back_on_the_config_and_restart_when_changed() {
        let mut cfg = config();
        let plain = load(
            Path::new("a.yaml"),
            &spec_text("a", "  state: running\n"),
            &cfg,
        )
        .expect("valid");
        assert!(plain.resources.is_empty());
        let limited = load(
            Path::new("a.yaml"),
            &spec_text("a", "  resources: {memory: 256MiB, pids: 512}\n"),
            &cfg,
        )
        .expect("valid");
        assert_eq!(
            limited.resources.to_string(),
            "memory 256 MiB, pids 512",
            "{limited:?}"
        );
        assert_ne!(plain.hash, limited.hash, "new limits need a new instance");
        cfg.controller.default_resources =
            crate::yaml::from_str("{memory: 1GiB, cpus: 1.5}").expect("resources");
        let defaulted = load(
            Path::new("a.yaml"),
            &spec_text("a", "  resources: {memory: 256MiB, pids: 512}\n"),
            &cfg,
        )
        .expect("valid");
        assert_eq!(
            defaulted.resources.to_string(),
            "memory 256 MiB, cpus 1.5, pids 512"
        );
        let errs = load(
            Path::new("a.yaml"),
            &spec_text("a", "  resources: {pids: 0}\n"),
            &cfg,
        )
        .expect_err("no processes at all");
        assert_eq!(errs[0].field.as_deref(), Some("spec.resources.pids"));
    }

    #[test]
    fn template_adds_groups_and_repository() {
        let text = spec_text(
            "w",
            "  template: {tab: Workshops, name: Databricks Workshop}\n",
        );
        let spec = load(Path::new("w.yaml"), &text, &config()).unwrap();
        assert!(matches!(spec.workspace, WorkspaceSource::Git { .. }));
        assert!(
            spec.extensions
                .iter()
                .any(|e| e.label() == "databricks.databricks")
        );
    }

    #[test]
    fn round_trips_through_yaml() {
        let text = spec_text(
            "r",
            "  port: 8020\n  workspace:\n    git: {url: 'https://x/y.git', ref: main}\n",
        );
        let server = DevServer::from_yaml(Path::new("r.yaml"), &text).unwrap();
        let again = DevServer::from_yaml(Path::new("r.yaml"), &server.to_yaml().unwrap()).unwrap();
        assert_eq!(server, again);
    }
}
