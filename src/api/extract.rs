//! Request and response wrappers that keep the API's error contract: a body that is not
//! the expected JSON is a 400 with `{"error": …}` (axum's own rejections are plain text),
//! a creation answers 201, and a body serialized beforehand is documented as its type.

use std::marker::PhantomData;

use aide::generate::GenContext;
use aide::openapi::{Operation, Response, StatusCode as DocStatus};
use aide::{OperationInput, OperationOutput};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::ApiError;

/// The `{id}` of a server route: its uuid or its name.
#[derive(Debug, serde::Deserialize, JsonSchema)]
pub struct ServerId {
    /// The server's uuid (or its name).
    pub id: String,
}

/// A JSON request body; anything else is a 400 in the API's error shape.
pub struct JsonBody<T>(pub T);

impl<T: JsonSchema> OperationInput for JsonBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Json::<T>::operation_input(ctx, operation);
    }
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(format!(
                    "the request body is larger than {} bytes, the most a spec may hold",
                    crate::yaml::MAX_YAML_BYTES
                )))
            }
            Err(rejection) => Err(ApiError::BadRequest(describe(&rejection))),
        }
    }
}

fn describe(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body (Content-Type: application/json)".into()
        }
        other => format!("invalid JSON body: {}", other.body_text()),
    }
}

/// A `201 Created` answer with a JSON body.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> HttpResponse {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for Created<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<Response> {
        Json::<T>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, Response)> {
        Self::operation_response(ctx, operation)
            .map(|response| vec![(Some(DocStatus::Code(201)), response)])
            .unwrap_or_default()
    }
}

/// A JSON body serialized beforehand; documented as `T`.
pub struct JsonBytes<T> {
    body: Bytes,
    shape: PhantomData<T>,
}

impl<T> JsonBytes<T> {
    pub fn new(body: Bytes) -> Self {
        Self {
            body,
            shape: PhantomData,
        }
    }
}

impl<T> IntoResponse for JsonBytes<T> {
    fn into_response(self) -> HttpResponse {
        ([(header::CONTENT_TYPE, "application/json")], self.body).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for JsonBytes<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<Response> {
        Json::<T>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, Response)> {
        Json::<T>::inferred_responses(ctx, operation)
    }
}

/// Query-string parameters; a malformed query is a 400 in the API's error shape.
pub struct QueryParams<T>(pub T);

impl<T: JsonSchema> OperationInput for QueryParams<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Query::<T>::operation_input(ctx, operation);
    }
}

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!(
                "invalid query: {}",
                rejection.body_text()
            ))),
        }
    }
}
