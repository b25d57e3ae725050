//! What an extensions folder holds: code-server's `extensions.json` manifest, the
//! extension folders beside it, and the identity of a `.vsix` file. Lets devbox skip an
//! install that is already done, and record copies it makes from the cache.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ExtensionRef;

/// The manifest code-server keeps in every extensions folder.
const MANIFEST: &str = "extensions.json";
/// Folders an uninstall left behind, which VS Code deletes at its next start.
const OBSOLETE: &str = ".obsolete";

/// What to look for in an extensions folder: the id and version `extension` installs as
/// (a `.vsix` file is read for them).
pub(super) fn wanted(extension: &ExtensionRef) -> Result<Wanted, String> {
    Ok(match extension {
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
    })
}

#[derive(Debug, Clone)]
pub(super) struct Wanted {
    /// `publisher.name`, lower case.
    pub id: String,
    /// Exact version wanted, if any.
    pub version: Option<String>,
}

/// Whether `wanted` is installed in `extensions_dir`. The installer (code-server 4.100.3,
/// measured) records what is installed in `<extensions_dir>/extensions.json`
/// (`identifier.id`, `version`, `relativeLocation`) and extracts each extension to
/// `<publisher.name>-<version>` (lower case id, plus `-<target platform>` for
/// platform-specific builds). An uninstall removes the entry from extensions.json but leaves
/// the folder behind, so extensions.json is the authority when it exists; without it (older
/// layouts) the folder names count, minus those listed in `.obsolete`.
pub(super) fn is_present(extensions_dir: &Path, wanted: &Wanted) -> bool {
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
    let list = read_manifest(extensions_dir).ok()??;
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

/// The raw entries of `extensions_dir`'s manifest (kept whole: VS Code reads more fields
/// than devbox does); None when there is no manifest.
pub(super) fn read_manifest(extensions_dir: &Path) -> io::Result<Option<Vec<Value>>> {
    let path = extensions_dir.join(MANIFEST);
    match crate::fsutil::read_regular(&path, MAX_MANIFEST_BYTES)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a list of extensions: {e}", path.display()),
            )
        }),
        None => Ok(None),
    }
}

/// The largest manifest or obsolete list read (a few KiB per extension).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The folder of a manifest entry, relative to its extensions folder: one plain name,
/// never a path that leads elsewhere.
pub(super) fn entry_folder(entry: &Value) -> Option<&str> {
    entry
        .get("relativeLocation")?
        .as_str()
        .filter(|rel| !rel.is_empty() && !rel.starts_with('.') && !rel.contains('/'))
}

fn entry_id(entry: &Value) -> Option<String> {
    Some(
        entry
            .pointer("/identifier/id")?
            .as_str()?
            .to_ascii_lowercase(),
    )
}

/// Records in `extensions_dir`'s manifest the `entries` of another folder's manifest,
/// whose folders have been copied here under the same names: each replaces an entry with
/// the same id, points its `location` at the copy (code-server refuses an entry without
/// one), and its folder comes off the obsolete list, where VS Code would delete it.
pub(super) fn record_copies(extensions_dir: &Path, entries: &[Value]) -> io::Result<()> {
    let mut manifest = read_manifest(extensions_dir)?.unwrap_or_default();
    let mut folders = HashSet::new();
    for entry in entries {
        let id = entry_id(entry);
        manifest.retain(|existing| entry_id(existing) != id);
        let mut entry = entry.clone();
        if let Some(folder) = entry_folder(&entry) {
            folders.insert(folder.to_ascii_lowercase());
            let location = extensions_dir.join(folder);
            entry["location"] = serde_json::json!({
                "$mid": 1,
                "path": location.to_string_lossy(),
                "scheme": "file",
            });
        }
        manifest.push(entry);
    }
    crate::fsutil::write_atomic(
        &extensions_dir.join(MANIFEST),
        &serde_json::to_vec(&manifest).map_err(io::Error::other)?,
    )?;
    let obsolete_path = extensions_dir.join(OBSOLETE);
    if let Ok(Some(bytes)) = crate::fsutil::read_regular(&obsolete_path, MAX_MANIFEST_BYTES)
        && let Ok(mut map) = serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes)
    {
        let before = map.len();
        map.retain(|folder, _| !folders.contains(&folder.to_ascii_lowercase()));
        if map.len() != before {
            crate::fsutil::write_atomic(
                &obsolete_path,
                &serde_json::to_vec(&map).map_err(io::Error::other)?,
            )?;
        }
    }
    Ok(())
}

fn read_obsolete(extensions_dir: &Path) -> HashSet<String> {
    let Ok(Some(bytes)) =
        crate::fsutil::read_regular(&extensions_dir.join(OBSOLETE), MAX_MANIFEST_BYTES)
    else {
        return HashSet::new();
    };
    match serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
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
pub(super) fn read_vsix_identity(path: &Path) -> Result<(String, String, String), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        assert!(is_present(ext, &wanted(&ExtensionRef::Vsix(vsix)).unwrap()));
        let marketplace = ExtensionRef::Marketplace("DevBox.Local-Tool@0.1.2".into());
        assert!(is_present(ext, &wanted(&marketplace).unwrap()));
    }
}
