//! The API's one error type: every handler returns `Result<_, ApiError>`, and the
//! mapping to status codes and the `{"error": …, "detail": …}` body lives here only.
//! (`detail` carries the same text for the original web UI, which reads that field.)

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response, SchemaObject};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Serialize;

use crate::spec_files::SpecFileError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Refused by a guard (foreign `Host` or `Origin`), whoever is asking.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Internal(String),
}

/// The body of every error response.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, in a sentence.
    pub error: String,
    /// The same text, for clients that read `detail`.
    pub detail: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        if matches!(self, ApiError::Internal(_)) {
            tracing::warn!(error = %self, "request failed");
        }
        let message = self.to_string();
        let body = ErrorBody {
            error: message.clone(),
            detail: message,
        };
        (self.status(), Json(body)).into_response()
    }
}

impl From<SpecFileError> for ApiError {
    fn from(err: SpecFileError) -> Self {
        match err {
            // Like a taken name: a state of the server set, not a malformed request.
            SpecFileError::Exists(_)
            | SpecFileError::PortPinned { .. }
            | SpecFileError::PortHeld { .. }
            | SpecFileError::NoFreePort { .. } => ApiError::Conflict(err.to_string()),
            SpecFileError::TooLarge { .. } => ApiError::PayloadTooLarge(err.to_string()),
            SpecFileError::NotFound(_) => ApiError::NotFound(err.to_string()),
            // The file is devbox's business; the client needs the field and the reason.
            SpecFileError::Invalid(diags) => ApiError::BadRequest(
                diags
                    .iter()
                    .map(|d| match &d.field {
                        Some(field) => format!("{field}: {}", d.message),
                        None => d.message.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            SpecFileError::Io { .. } => ApiError::Internal(err.to_string()),
        }
    }
}

/// The error body, for the OpenAPI document. Which codes a route answers is said per
/// route (`crate::api::doc`), not inferred from this type, which may be any of them.
impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, _operation: &mut Operation) -> Option<Response> {
        let json_schema = ctx.schema.subschema_for::<ErrorBody>();
        Some(Response {
            description: "An error; `error` and `detail` say what went wrong.".into(),
            content: IndexMap::from_iter([(
                "application/json".into(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema,
                        example: None,
                        external_docs: None,
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        })
    }
}
