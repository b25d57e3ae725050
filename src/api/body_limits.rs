//! How large a request body may be, how long it may take to arrive, and how a body
//! that breaks either rule is refused.
//!
//! JSON bodies never need more than a spec file may hold; upload routes take the
//! configured archive size plus room for the form around it. A body whose
//! `Content-Length` already says it is too large is answered 413 before the handler
//! runs, so nothing is written. A body must also arrive whole within a deadline (a
//! client sending a byte now and then would otherwise hold its connection forever):
//! `server.header_read_timeout` for JSON, plus the time the largest upload takes at
//! [`SLOWEST_UPLOAD_RATE`] for a multipart form.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http_body::Frame;

use crate::http::ApiError;

/// The slowest upload devbox waits for, in bytes per second (a poor mobile link).
pub(crate) const SLOWEST_UPLOAD_RATE: u64 = 64 * 1024;

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
    let multipart = is_multipart(&request);
    let headers = request.headers();
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
    discard_rest(async { while let Some(Ok(_)) = body.next().await {} }).await;
}

/// Runs `drain` (the reading of a body that is refused) for at most [`DISCARD_TIME`].
pub(crate) async fn discard_rest(drain: impl Future<Output = ()>) {
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

fn is_multipart(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"multipart/"))
}

/// How long a body may take to arrive whole: `base` for JSON, and for an upload the
/// time its largest size takes at [`SLOWEST_UPLOAD_RATE`] besides.
pub(crate) fn body_deadline(base: Duration, max_upload_size_mb: u64, multipart: bool) -> Duration {
    if !multipart {
        return base;
    }
    let upload = max_upload_size_mb.saturating_mul(1024 * 1024) / SLOWEST_UPLOAD_RATE;
    base.saturating_add(Duration::from_secs(upload))
}

/// Gives the request's body its deadline ([`body_deadline`]); a body still arriving
/// then fails to read, and the handler answers with an error before doing anything.
pub(crate) async fn limit_body_time(
    base: Duration,
    max_upload_size_mb: u64,
    request: Request,
    next: Next,
) -> Response {
    let deadline = body_deadline(base, max_upload_size_mb, is_multipart(&request));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            body,
            deadline,
            timer: Box::pin(tokio::time::sleep(deadline)),
        })
    });
    next.run(request).await
}

/// A body past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
pub struct BodyTooSlow(Duration);

/// A body that fails once its deadline has passed, whatever it has sent by then.
struct DeadlineBody {
    body: Body,
    deadline: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTooSlow(this.deadline).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_get_the_time_their_largest_size_takes_at_the_slowest_rate() {
        let base = Duration::from_secs(30);
        assert_eq!(body_deadline(base, 50, false), base);
        // 50 MiB at 64 KiB/s: 800 s.
        assert_eq!(body_deadline(base, 50, true), Duration::from_secs(830));
        assert!(body_deadline(base, u64::MAX, true) > base, "no overflow");
    }
}
