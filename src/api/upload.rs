//! Multipart forms (`create-with-workspace`, `clone-workspace`): text fields, and a
//! `zip_file` streamed to a temporary file while its size is counted, so an upload over
//! `ui.workspace.max_upload_size_mb` is refused (413) without ever being held in memory.
//! The optional `zip_strip_top_level` field is the spec's field of that name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::Multipart;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::http::StatusCode;
use tokio::io::AsyncWriteExt;

use super::AppState;
use crate::http::ApiError;
use crate::provision::{ZipLayout, ZipLimits, check_zip};
use crate::spec::{GitWorkspace, Workspace};

/// The form field asking for an archive's one top-level folder to be stripped (the spec's
/// `workspace.zip_strip_top_level`).
const STRIP_FIELD: &str = "zip_strip_top_level";

/// Longest text field accepted.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Most text fields a form may have (the upload forms have a handful).
const MAX_FIELDS: usize = 64;

/// A parsed form.
pub struct Form {
    pub fields: HashMap<String, String>,
    /// The uploaded archive, deleted when dropped unless kept with [`Form::keep_zip`].
    pub zip: Option<tempfile::NamedTempFile>,
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Moves the uploaded archive to `target` (creating its folder).
    pub fn keep_zip(&mut self, target: &Path) -> Result<(), ApiError> {
        let Some(zip) = self.zip.take() else {
            return Ok(());
        };
        let fail = |err: &dyn std::fmt::Display| {
            ApiError::Internal(format!(
                "cannot store the upload at {}: {err}",
                target.display()
            ))
        };
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        zip.persist(target).map_err(|e| fail(&e.error))?;
        Ok(())
    }
}

/// Reads a multipart body. A form refused before its end (a field too long, an
/// archive too large) is read on and dropped for a while before the answer, so the
/// client, still sending, gets the answer rather than a broken pipe.
pub async fn read(
    state: &AppState,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Form, ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "expected a multipart form: {}",
            rejection.body_text()
        ))
    })?;
    let read = read_fields(state, &mut multipart).await;
    if read.is_err() {
        super::body_limits::discard_rest(async {
            while let Ok(Some(mut field)) = multipart.next_field().await {
                while let Ok(Some(_)) = field.chunk().await {}
            }
        })
        .await;
    }
    read
}

async fn read_fields(state: &AppState, multipart: &mut Multipart) -> Result<Form, ApiError> {
    let limit = state
        .config
        .ui
        .workspace
        .max_upload_size_mb
        .saturating_mul(1024 * 1024);
    let mut form = Form {
        fields: HashMap::new(),
        zip: None,
    };
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "zip_file" {
            // Emptied when the controller starts: an upload cut off by a crash goes then.
            let uploads = state
                .statuses
                .state_dir()
                .join(crate::controller::UPLOADS_DIR);
            let temp = temp_file(&uploads)?;
            let std_file = temp
                .reopen()
                .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
            let mut file = tokio::fs::File::from_std(std_file);
            let mut written: u64 = 0;
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                written += chunk.len() as u64;
                if written > limit {
                    return Err(too_large(limit));
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
            }
            file.flush()
                .await
                .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
            form.zip = Some(temp);
        } else {
            if form.fields.len() >= MAX_FIELDS {
                return Err(ApiError::BadRequest(format!(
                    "the form has more than {MAX_FIELDS} fields"
                )));
            }
            // Read piece by piece: a field is refused as soon as it is too long, not
            // once it is all in memory.
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
                    return Err(ApiError::BadRequest(format!(
                        "form field `{name}` is longer than {MAX_FIELD_BYTES} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                ApiError::BadRequest(format!("form field `{name}` is not UTF-8 text"))
            })?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

/// The workspace a form asks for: a git repository (`github_url`, if its scheme is
/// allowed) or the uploaded `zip_file` (checked in the layout `zip_strip_top_level`
/// asks for, and to be kept at `zip_target`).
pub async fn workspace(
    state: &AppState,
    form: &Form,
    zip_target: &Path,
) -> Result<Workspace, ApiError> {
    let strip_top_level = strip_top_level(form)?;
    match (form.field("github_url"), &form.zip) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "give either `github_url` or `zip_file`, not both".into(),
        )),
        (None, None) => Err(ApiError::BadRequest(
            "give a `github_url` or a `zip_file`".into(),
        )),
        (Some(_), None) if strip_top_level => Err(ApiError::BadRequest(format!(
            "`{STRIP_FIELD}` applies only to a `zip_file`, not to a `github_url`"
        ))),
        (Some(url), None) => {
            let url = url.trim();
            state
                .config
                .check_git_url(url)
                .map_err(ApiError::BadRequest)?;
            Ok(Workspace {
                git: Some(GitWorkspace {
                    url: url.to_owned(),
                    reference: None,
                }),
                ..Workspace::default()
            })
        }
        (None, Some(zip)) => {
            let layout = if strip_top_level {
                ZipLayout::StripTopLevel
            } else {
                ZipLayout::AsIs
            };
            check_uploaded_zip(state, zip.path(), layout).await?;
            Ok(Workspace {
                zip: Some(zip_target.to_owned()),
                zip_strip_top_level: strip_top_level,
                ..Workspace::default()
            })
        }
    }
}

/// The form's `zip_strip_top_level`: absent or empty is `false`; an HTML checkbox's `on`
/// is `true`.
fn strip_top_level(form: &Form) -> Result<bool, ApiError> {
    let Some(value) = form.field(STRIP_FIELD) else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "form field `{STRIP_FIELD}` must be `true` or `false`, not {value:?}"
        ))),
    }
}

/// Checks the uploaded archive with the workspace's zip rules, in `layout` (off the
/// async workers).
pub async fn check_uploaded_zip(
    state: &AppState,
    zip: &Path,
    layout: ZipLayout,
) -> Result<(), ApiError> {
    let limits = ZipLimits {
        max_total_bytes: state
            .config
            .ui
            .workspace
            .max_extracted_size_mb
            .saturating_mul(1024 * 1024),
        max_entries: state.config.ui.workspace.max_zip_entries,
        ..ZipLimits::default()
    };
    let path: PathBuf = zip.to_owned();
    tokio::task::spawn_blocking(move || check_zip(&path, layout, &limits))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err| {
            // The temporary file's path means nothing to the client.
            let message = err
                .to_string()
                .replace(&zip.display().to_string(), "the upload");
            ApiError::BadRequest(format!("invalid zip archive: {message}"))
        })
}

fn temp_file(dir: &Path) -> Result<tempfile::NamedTempFile, ApiError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix(".upload-")
                .suffix(".zip")
                .tempfile_in(dir)
        })
        .map_err(|e| {
            ApiError::Internal(format!("cannot store the upload in {}: {e}", dir.display()))
        })
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "upload is larger than {} MB",
        limit / (1024 * 1024)
    ))
}

fn multipart_error(err: MultipartError) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("request body too large: {}", err.body_text()))
    } else {
        ApiError::BadRequest(format!("invalid multipart body: {}", err.body_text()))
    }
}
