//! How large a request body may be, and how a body that is too large is refused.
//!
//! JSON bodies never need more than a spec file may hold; upload routes take the
//! configured archive size plus room for the form around it. A body whose
//! `Content-Length` already says it is too large is answered 413 before the handler
//! runs, so nothing is written.

use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::http::ApiError;

/// How long a refused body that is already on its way is read and thrown away, so that
/// the client, which sends its whole body before it reads an answer, gets the 413
/// rather than a broken pipe. Past this the connection is closed.
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// `n` MiB in bytes, or as many as fit.
pub(crate) fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// The body limit of an upload route: the archive plus room for the other form
/// fields (the archive itself is checked exactly while it streams in).
pub(super) fn upload_limit(max_upload_size_mb: u64) -> usize {
    mib(max_upload_size_mb.saturating_add(1))
}

/// Refuses a request whose declared `Content-Length` is over its route's limit.
///
/// A client that asked `Expect: 100-continue` is answered at once and never sends the
/// body. Any other client is already sending it: it is read and dropped for at most
/// [`DISCARD_TIME`] before the answer, as nginx's lingering close does.
pub(super) async fn refuse_declared_oversize(
    max_upload_size_mb: u64,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let multipart = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"multipart/"));
    let (limit, rule) = if multipart {
        (
            upload_limit(max_upload_size_mb),
            format!(
                "uploads are limited to {max_upload_size_mb} MB (ui.workspace.max_upload_size_mb)"
            ),
        )
    } else {
        let limit = crate::yaml::MAX_YAML_BYTES;
        (limit, format!("this route takes at most {limit} bytes"))
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(bytes) = declared.filter(|bytes| *bytes > limit as u64) else {
        return next.run(request).await;
    };
    let waits_for_continue = headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits_for_continue {
        discard(request).await;
    }
    ApiError::PayloadTooLarge(format!("the request body is {bytes} bytes; {rule}")).into_response()
}

/// Reads the body and drops it, for at most [`DISCARD_TIME`].
async fn discard(request: Request) {
    let mut body = request.into_body().into_data_stream();
    let drain = async { while let Some(Ok(_)) = body.next().await {} };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}
