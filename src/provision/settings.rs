//! Managed user settings: overlays the settings devbox manages (extension groups' settings
//! and the spec's `user_settings`) onto a server's `User/settings.json`, keeps whatever the
//! user set there, and removes keys devbox set before but no longer wants.
//!
//! Blocking (small files; the reconciler runs it in `spawn_blocking`). The set of keys
//! devbox wrote is remembered in `User/.devbox-managed-keys.json` beside the settings.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

const SETTINGS_FILE: &str = "settings.json";
const BACKUP_FILE: &str = "settings.json.bak";
const MANAGED_KEYS_FILE: &str = ".devbox-managed-keys.json";
/// The largest settings file read (VS Code's own are a few KiB).
const MAX_SETTINGS_BYTES: u64 = 4 << 20;

/// Why the user settings could not be written.
#[derive(thiserror::Error, Debug)]
pub enum SettingsError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialise settings: {0}")]
    Serialize(#[from] serde_json::Error),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SettingsError {
    let path = path.to_path_buf();
    move |source| SettingsError::Io {
        action,
        path,
        source,
    }
}

/// Writes `<user_data_dir>/User/settings.json`: existing user settings are kept, the managed
/// keys (`desired`: extension groups' settings then the spec's, already merged by the
/// caller) are overlaid, and keys devbox set before but no longer desires are removed. The
/// managed key set is remembered in `<user_data_dir>/User/.devbox-managed-keys.json`.
/// Writes are atomic (temp file in the same folder, fsync, rename). A corrupt existing
/// settings.json is backed up to settings.json.bak and replaced, with a warning.
/// Returns whether settings.json changed.
///
/// settings.json may be JSONC (comments, trailing commas), as VS Code writes it; it is read
/// as such, but a rewrite stores plain JSON (comments are lost only when the file changes).
pub fn apply_user_settings(
    user_data_dir: &Path,
    desired: &Map<String, Value>,
) -> Result<bool, SettingsError> {
    let dir = user_data_dir.join("User");
    fs::create_dir_all(&dir).map_err(io_err("create folder", &dir))?;
    let settings_path = dir.join(SETTINGS_FILE);
    let keys_path = dir.join(MANAGED_KEYS_FILE);

    let (current, corrupt) = read_settings(&settings_path)?;
    let previously_managed = read_managed_keys(&keys_path);
    let desired_keys: BTreeSet<String> = desired.keys().cloned().collect();

    let mut next = current.clone().unwrap_or_default();
    for key in previously_managed.difference(&desired_keys) {
        next.remove(key);
    }
    for (key, value) in desired {
        next.insert(key.clone(), value.clone());
    }

    // Remember new keys before they land in settings.json, so a crash in between can never
    // leave a devbox key that devbox does not know it owns.
    let union: BTreeSet<String> = previously_managed.union(&desired_keys).cloned().collect();
    if union != previously_managed {
        write_managed_keys(&keys_path, &union)?;
    }

    let changed = corrupt.is_some() || current.unwrap_or_default() != next;
    if changed {
        if let Some(unreadable) = corrupt {
            let backup = dir.join(BACKUP_FILE);
            // The bytes read, written anew: never a copy through whatever the backup's
            // name leads to.
            write_atomic(&backup, &unreadable)?;
            tracing::warn!(
                path = %settings_path.display(),
                backup = %backup.display(),
                "settings.json is not valid JSON; backed it up and replaced it"
            );
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(next))?;
        text.push('\n');
        write_atomic(&settings_path, text.as_bytes())?;
    }

    if desired_keys != union {
        write_managed_keys(&keys_path, &desired_keys)?;
    }
    Ok(changed)
}

/// Returns (settings, the bytes of a corrupt file); settings are `None` when the file
/// does not exist (or is corrupt). Only a regular file of sensible size is read.
type SettingsRead = (Option<Map<String, Value>>, Option<Vec<u8>>);

fn read_settings(path: &Path) -> Result<SettingsRead, SettingsError> {
    let bytes = match crate::fsutil::read_regular(path, MAX_SETTINGS_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok((None, None)),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok((None, Some(bytes)));
    };
    if text.trim().is_empty() {
        return Ok((Some(Map::new()), None));
    }
    match serde_json::from_str::<Value>(&strip_jsonc(text)) {
        Ok(Value::Object(map)) => Ok((Some(map), None)),
        _ => Ok((None, Some(bytes))),
    }
}

fn read_managed_keys(path: &Path) -> BTreeSet<String> {
    let bytes = match crate::fsutil::read_regular(path, MAX_SETTINGS_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return BTreeSet::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read managed settings keys");
            return BTreeSet::new();
        }
    };
    match serde_json::from_slice::<BTreeSet<String>>(&bytes) {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "managed settings keys file is corrupt; ignoring it");
            BTreeSet::new()
        }
    }
}

fn write_managed_keys(path: &Path, keys: &BTreeSet<String>) -> Result<(), SettingsError> {
    let mut text = serde_json::to_string_pretty(keys)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SettingsError> {
    crate::fsutil::write_atomic(path, bytes).map_err(io_err("write", path))
}

/// Turns JSONC (what VS Code accepts in settings.json) into JSON: removes `//` and `/* */`
/// comments outside strings, and trailing commas before `}` or `]`.
fn strip_jsonc(input: &str) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match (c, chars.get(i + 1).copied()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
                i += 1;
            }
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                out.push(' ');
            }
            (',', _) => {
                // Drop the comma when only whitespace/comments separate it from a closer.
                let mut j = i + 1;
                loop {
                    while j < chars.len() && chars[j].is_whitespace() {
                        j += 1;
                    }
                    if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'/') {
                        while j < chars.len() && chars[j] != '\n' {
                            j += 1;
                        }
                    } else if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'*') {
                        j += 2;
                        while j < chars.len()
                            && !(chars[j] == '*' && chars.get(j + 1) == Some(&'/'))
                        {
                            j += 1;
                        }
                        j += 2;
                    } else {
                        break;
                    }
                }
                if !matches!(chars.get(j), Some('}') | Some(']')) {
                    out.push(',');
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn read(dir: &Path) -> Map<String, Value> {
        let text = fs::read_to_string(dir.join("User/settings.json")).unwrap();
        map(serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn creates_settings_from_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let changed =
            apply_user_settings(dir.path(), &map(json!({"editor.fontSize": 14}))).unwrap();
        assert!(changed);
        assert_eq!(read(dir.path()), map(json!({"editor.fontSize": 14})));
        let keys: Vec<String> = serde_json::from_slice(
            &fs::read(dir.path().join("User/.devbox-managed-keys.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(keys, vec!["editor.fontSize"]);
        // Same input again: nothing changes.
        assert!(!apply_user_settings(dir.path(), &map(json!({"editor.fontSize": 14}))).unwrap());
    }

    #[test]
    fn empty_desired_and_no_file_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!apply_user_settings(dir.path(), &Map::new()).unwrap());
        assert!(!dir.path().join("User/settings.json").exists());
    }

    #[test]
    fn user_keys_kept_managed_overlaid_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("User");
        fs::create_dir_all(&user).unwrap();
        fs::write(
            user.join("settings.json"),
            r#"{"workbench.colorTheme": "Default Dark+", "editor.fontSize": 10}"#,
        )
        .unwrap();

        let desired = map(
            json!({"editor.fontSize": 14, "python.defaultInterpreterPath": "/usr/bin/python3"}),
        );
        assert!(apply_user_settings(dir.path(), &desired).unwrap());
        assert_eq!(
            read(dir.path()),
            map(json!({
                "workbench.colorTheme": "Default Dark+",
                "editor.fontSize": 14,
                "python.defaultInterpreterPath": "/usr/bin/python3"
            }))
        );

        // The user changes their own key in the meantime; devbox stops managing the python key.
        let mut s = read(dir.path());
        s.insert("workbench.colorTheme".into(), json!("Solarized"));
        fs::write(
            user.join("settings.json"),
            serde_json::to_string(&s).unwrap(),
        )
        .unwrap();
        assert!(apply_user_settings(dir.path(), &map(json!({"editor.fontSize": 14}))).unwrap());
        assert_eq!(
            read(dir.path()),
            map(json!({"workbench.colorTheme": "Solarized", "editor.fontSize": 14}))
        );

        // Nothing managed any more: the user's key stays, the managed one goes.
        assert!(apply_user_settings(dir.path(), &Map::new()).unwrap());
        assert_eq!(
            read(dir.path()),
            map(json!({"workbench.colorTheme": "Solarized"}))
        );
        let keys: Vec<String> =
            serde_json::from_slice(&fs::read(user.join(".devbox-managed-keys.json")).unwrap())
                .unwrap();
        assert!(keys.is_empty());
        // No temp files left.
        let mut names: Vec<String> = fs::read_dir(&user)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![".devbox-managed-keys.json", "settings.json"]);
    }

    #[test]
    fn corrupt_settings_are_backed_up_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("User");
        fs::create_dir_all(&user).unwrap();
        fs::write(user.join("settings.json"), "{ this is not json").unwrap();
        assert!(apply_user_settings(dir.path(), &map(json!({"a.b": true}))).unwrap());
        assert_eq!(read(dir.path()), map(json!({"a.b": true})));
        assert_eq!(
            fs::read_to_string(user.join("settings.json.bak")).unwrap(),
            "{ this is not json"
        );
        // A JSON array is not a settings object either.
        fs::write(user.join("settings.json"), "[1,2]").unwrap();
        assert!(apply_user_settings(dir.path(), &map(json!({"a.b": true}))).unwrap());
        assert_eq!(
            fs::read_to_string(user.join("settings.json.bak")).unwrap(),
            "[1,2]"
        );
    }

    #[test]
    fn jsonc_settings_are_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("User");
        fs::create_dir_all(&user).unwrap();
        let jsonc = "{\n  // my theme\n  \"workbench.colorTheme\": \"a//b /* not a comment */\",\n  /* block */ \"x\": [1, 2,],\n}\n";
        fs::write(user.join("settings.json"), jsonc).unwrap();
        // Nothing desired, nothing previously managed: untouched, comments and all.
        assert!(!apply_user_settings(dir.path(), &Map::new()).unwrap());
        assert_eq!(
            fs::read_to_string(user.join("settings.json")).unwrap(),
            jsonc
        );
        assert!(apply_user_settings(dir.path(), &map(json!({"k": 1}))).unwrap());
        assert_eq!(
            read(dir.path()),
            map(json!({"workbench.colorTheme": "a//b /* not a comment */", "x": [1, 2], "k": 1}))
        );
        assert!(!user.join("settings.json.bak").exists());
    }

    #[test]
    fn strip_jsonc_cases() {
        assert_eq!(strip_jsonc(r#"{"a": "x\"//y",}"#), r#"{"a": "x\"//y"}"#);
        assert_eq!(strip_jsonc("[1, // c\n]"), "[1 \n]");
        assert_eq!(strip_jsonc("[1, /* c */ ]"), "[1   ]");
    }
}
