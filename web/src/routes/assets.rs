//! The static files pages use (style sheet, scripts), compiled in and cached by browsers for
//! a day.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const APP_CSS: &str = include_str!("../../static/app.css");
const MAP_JS: &str = include_str!("../../static/map.js");
const PROGRESS_JS: &str = include_str!("../../static/progress.js");

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

pub async fn css() -> Response {
    static_file("text/css; charset=utf-8", APP_CSS)
}

pub async fn map_js() -> Response {
    static_file("text/javascript; charset=utf-8", MAP_JS)
}

pub async fn progress_js() -> Response {
    static_file("text/javascript; charset=utf-8", PROGRESS_JS)
}
