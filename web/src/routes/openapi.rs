//! The two OpenAPI documents, as the state holds them.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use iot_common::problem::ApiError;

use crate::state::WebState;

/// The document, or 404 in a web built without them (its own tests).
fn json(body: &str) -> Response {
    if body.is_empty() {
        return ApiError::not_found().into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_owned(),
    )
        .into_response()
}

/// This document: every public route, described from the handlers.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "documents", responses(
    (status = 200, description = "The public API's OpenAPI 3.1 document.", body = Object),
))]
pub async fn public_document(State(s): State<WebState>) -> Response {
    json(&s.api_docs.public)
}

/// This document: every internal route, described from the handlers.
#[utoipa::path(get, path = "/internal/v1/openapi.json", tag = "documents", responses(
    (status = 200, description = "The internal API's OpenAPI 3.1 document.", body = Object),
))]
pub async fn internal_document(State(s): State<WebState>) -> Response {
    json(&s.api_docs.internal)
}
