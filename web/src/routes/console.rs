//! The analysts' console on the internal listener: runs with status and timings, a
//! "recompute now" button, and the latest run's error. Signing in with the analyst token opens
//! a session ([`crate::sessions`]): the cookie holds its random id, never the token. A bearer
//! header works too. Forms that change state are refused from other sites (403), and a client
//! that keeps failing to sign in is refused for a minute (429).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use iot_common::Run;
use iot_common::http::bearer_token;
use iot_common::problem::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::respond;
use crate::sessions::same_origin;
use crate::state::{RecomputeError, WebState};

struct RunRow {
    id: String,
    trigger: String,
    status: String,
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

impl From<RecomputeError> for ApiError {
    fn from(e: RecomputeError) -> Self {
        let code = match e {
            RecomputeError::Refused(_) => ErrorCode::NotStarted,
            RecomputeError::Unavailable(_) => ErrorCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

fn authorized(s: &WebState, headers: &HeaderMap) -> bool {
    bearer_token(headers).is_ok_and(|t| s.operator_token.matches(t))
        || s.sessions.is_signed_in(headers)
}

fn cross_site() -> ApiError {
    ApiError::new(
        ErrorCode::CrossSite,
        "this form must be sent from the console's own page",
    )
    .field("origin")
}

/// The sign-in form with a message, answered with `status`.
fn sign_in_page(status: StatusCode, message: &str) -> Response {
    let page = ConsolePage {
        authorized: false,
        message: Some(message.into()),
        latest_error: None,
        runs: Vec::new(),
    };
    respond::page_with(status, &page).unwrap_or_else(IntoResponse::into_response)
}

pub async fn page(State(s): State<WebState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !authorized(&s, &headers) {
        return Ok(sign_in_page(
            StatusCode::UNAUTHORIZED,
            "Sign in with the analyst token (IOT_ANALYST_TOKEN).",
        ));
    }
    let runs = s.store.runs(50).await?;
    let latest_error = runs.first().and_then(|r| r.error.clone());
    respond::page(&ConsolePage {
        authorized: true,
        message: None,
        latest_error,
        runs: runs.into_iter().map(run_row).collect(),
    })
}

fn run_row(r: Run) -> RunRow {
    RunRow {
        duration: match (r.started_at, r.finished_at) {
            (Some(a), Some(b)) => format!("{:.3} s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => "–".into(),
        },
        created: r.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        status: r.status.to_string(),
        trigger: r.trigger.to_string(),
        id: r.run_id,
        rows: r.rows_scanned,
        regions: r.regions_written,
        error: r.error.unwrap_or_default(),
    }
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login(
    State(s): State<WebState>,
    extensions: Extensions,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site().into_response();
    }
    let client = iot_common::server::peer(&extensions).map(|p| p.ip());
    if let Some(wait) = s.sessions.throttled(client) {
        let mut res = sign_in_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins from here; wait a minute and try again.",
        );
        res.headers_mut().insert(header::RETRY_AFTER, wait.into());
        return res;
    }
    if !s.operator_token.matches(&form.token) {
        s.sessions.failed(client);
        tracing::warn!(client = ?client, "failed console sign-in");
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            "That token is not the analyst token.",
        );
    }
    (
        [(header::SET_COOKIE, s.sessions.open())],
        Redirect::to("/internal/console"),
    )
        .into_response()
}

pub async fn logout(State(s): State<WebState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return cross_site().into_response();
    }
    (
        [(header::SET_COOKIE, s.sessions.close(&headers))],
        Redirect::to("/internal/console"),
    )
        .into_response()
}

#[tracing::instrument(skip_all)]
pub async fn recompute(
    State(s): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(cross_site());
    }
    if !authorized(&s, &headers) {
        return Err(ApiError::new(ErrorCode::Unauthorized, "sign in first"));
    }
    let job = s
        .recompute
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no analytics job is connected to this service"))?;
    job.recompute().await?;
    Ok(Redirect::to("/internal/console").into_response())
}
