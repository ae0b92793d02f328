//! Turning a page into a response: an askama template rendered as HTML with the status it
//! is answered with. A template that fails to render is the service's fault (500).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use iot_common::problem::{ApiError, ErrorCode};

/// `page` as HTML, answered with `status`.
pub fn page_with(status: StatusCode, page: &impl Template) -> Result<Response, ApiError> {
    let html = page
        .render()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("render failed: {e}")))?;
    Ok((status, Html(html)).into_response())
}

/// `page` as HTML, 200.
pub fn page(page: &impl Template) -> Result<Response, ApiError> {
    page_with(StatusCode::OK, page)
}
