//! The analysts' console on the internal listener: runs with status and timings, a
//! "recompute now" button, and the latest run's error. Signing in with the analyst token sets
//! a same-site, HTTP-only cookie scoped to `/internal`; a bearer header works too.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use iot_common::http::{ApiError, bearer_token};
use serde::Deserialize;

use crate::routes::{WebState, store_error};

const COOKIE: &str = "iot_analyst";

struct RunRow {
    id: String,
    trigger: String,
    status: &'static str,
    created: String,
    duration: String,
    rows: u64,
    regions: u64,
    error: String,
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage {
    authorized: bool,
    message: Option<String>,
    latest_error: Option<String>,
    runs: Vec<RunRow>,
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Ok(t) = bearer_token(headers) {
        return Some(t.to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn authorized(s: &WebState, headers: &HeaderMap) -> bool {
    presented_token(headers).is_some_and(|t| s.operator_token.matches(&t))
}

fn html(status: StatusCode, page: &ConsolePage) -> Result<Response, ApiError> {
    let body = page.render().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "render_failed",
            e.to_string(),
        )
    })?;
    Ok((status, Html(body)).into_response())
}

pub async fn page(State(s): State<WebState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !authorized(&s, &headers) {
        let page = ConsolePage {
            authorized: false,
            message: Some("Sign in with the analyst token (IOT_ANALYST_TOKEN).".into()),
            latest_error: None,
            runs: Vec::new(),
        };
        return html(StatusCode::UNAUTHORIZED, &page);
    }
    let runs = s.store.runs(50).await.map_err(store_error)?;
    let latest_error = runs.first().and_then(|r| r.error.clone());
    let rows = runs
        .into_iter()
        .map(|r| RunRow {
            duration: match (r.started_at, r.finished_at) {
                (Some(a), Some(b)) => {
                    format!("{:.3} s", (b - a).num_milliseconds() as f64 / 1000.0)
                }
                _ => "–".into(),
            },
            created: r.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            status: r.status.as_str(),
            id: r.run_id,
            trigger: r.trigger,
            rows: r.rows_scanned,
            regions: r.regions_written,
            error: r.error.unwrap_or_default(),
        })
        .collect();
    let page = ConsolePage {
        authorized: true,
        message: None,
        latest_error,
        runs: rows,
    };
    html(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login(State(s): State<WebState>, Form(form): Form<Login>) -> Response {
    if !s.operator_token.matches(&form.token) {
        let page = ConsolePage {
            authorized: false,
            message: Some("That token is not the analyst token.".into()),
            latest_error: None,
            runs: Vec::new(),
        };
        return html(StatusCode::UNAUTHORIZED, &page).unwrap_or_else(IntoResponse::into_response);
    }
    // The token is URL-safe base64 or operator-chosen; refuse what cannot sit in a cookie.
    if !form
        .token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
    {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_token",
            "token has characters a cookie cannot hold",
        )
        .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/internal; HttpOnly; SameSite=Strict",
        form.token
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/internal/console"),
    )
        .into_response()
}

pub async fn recompute(
    State(s): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !authorized(&s, &headers) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in first",
        ));
    }
    let Some(job) = &s.recompute else {
        return Err(ApiError::unavailable(
            "no analytics job is connected to this service",
        ));
    };
    match job.recompute().await {
        Ok(_) => Ok(Redirect::to("/internal/console").into_response()),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, "not_started", e)),
    }
}
