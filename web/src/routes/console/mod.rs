//! The analysts' console on the internal listener, one module per page: runs with status,
//! timings and progress, "recompute now" and sign-in (here), SQL ([`sql`]), and two runs
//! compared ([`compare`]). Signing in with the analyst token opens a session
//! ([`crate::sessions`]): the cookie holds its random id, never the token. A bearer header
//! works too. Forms that change state are refused from other sites (403), and a client that
//! keeps failing to sign in is refused for a minute (429).

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use iot_common::Run;
use iot_common::problem::{ApiError, ErrorCode};
use iot_common::wire::{Progress, ProgressItem};
use serde::Deserialize;

use crate::access::{SameSite, SignedInAnalyst, signed_in_analyst};
use crate::respond;
use crate::sessions::{SignInForm, SignInPage};
use crate::state::{RecomputeRequest, WebState};

pub mod compare;
pub mod quality;
pub mod sql;

/// Where the console lives, and where sign-in and sign-out land.
const CONSOLE: &str = "/internal/console";

struct RunRow {
    /// Running or queued: the page shows its progress.
    going: bool,
    /// "N of ~M rows, T s" while it runs.
    progress_text: String,
    id: String,
    trigger: String,
    status: String,
    created: String,
    duration: String,
    window: String,
    published: bool,
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
    /// A run is going: the page follows its progress.
    going: bool,
    /// The recompute form as sent, so a refused window can be corrected.
    form: RecomputeForm,
}

/// An analyst on one of the console's pages; anyone else gets the sign-in form (401).
pub struct AnalystPage;

impl FromRequestParts<WebState> for AnalystPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &WebState) -> Result<Self, Response> {
        if signed_in_analyst(s, &parts.headers) {
            Ok(Self)
        } else {
            Err(sign_in_page(
                StatusCode::UNAUTHORIZED,
                "Sign in with the analyst token (IOT_ANALYST_TOKEN).",
            ))
        }
    }
}

/// The sign-in form with a message, answered with `status`.
fn sign_in_page(status: StatusCode, message: &str) -> Response {
    let page = ConsolePage {
        authorized: false,
        message: Some(message.into()),
        latest_error: None,
        runs: Vec::new(),
        going: false,
        form: RecomputeForm::default(),
    };
    respond::page_with(status, &page).unwrap_or_else(IntoResponse::into_response)
}

pub async fn page(_: AnalystPage, State(s): State<WebState>) -> Result<Response, ApiError> {
    console(&s, StatusCode::OK, None, RecomputeForm::default()).await
}

/// The signed-in console with a message, answered with `status`.
async fn console(
    s: &WebState,
    status: StatusCode,
    message: Option<String>,
    form: RecomputeForm,
) -> Result<Response, ApiError> {
    let runs = s.store.runs(50).await?;
    let latest_error = runs.first().and_then(|r| r.error.clone());
    let rows = runs
        .iter()
        .map(|r| {
            let mut row = run_row(r.clone());
            if row.going {
                row.progress_text = progress_of(r, &runs).text;
            }
            row
        })
        .collect();
    respond::page_with(
        status,
        &ConsolePage {
            authorized: true,
            message,
            latest_error,
            going: runs.iter().any(is_going),
            runs: rows,
            form,
        },
    )
}

fn is_going(r: &Run) -> bool {
    matches!(
        r.status,
        iot_common::RunStatus::Running | iot_common::RunStatus::Queued
    )
}

/// How far a run has come: rows scanned of an estimate (the last succeeded run's rows,
/// scaled to this run's window), and time since it started.
struct RunProgress {
    value: u64,
    max: Option<u64>,
    text: String,
}

fn progress_of(run: &Run, runs: &[Run]) -> RunProgress {
    let span = |r: &Run| match (r.window_from, r.window_to) {
        (Some(a), Some(b)) => (b - a).num_seconds().max(1) as f64,
        _ => 0.0,
    };
    let estimate = runs
        .iter()
        .find(|r| r.status == iot_common::RunStatus::Succeeded && r.rows_scanned > 0)
        .filter(|r| span(r) > 0.0 && span(run) > 0.0)
        .map(|r| (r.rows_scanned as f64 * span(run) / span(r)).round() as u64);
    let elapsed = run
        .started_at
        .map(|t| (chrono::Utc::now() - t).num_seconds().max(0));
    let mut text = match estimate {
        Some(e) => format!(
            "{} of ~{} rows ({:.0} %)",
            run.rows_scanned,
            e,
            (run.rows_scanned as f64 / e.max(1) as f64 * 100.0).min(100.0)
        ),
        None => format!("{} rows", run.rows_scanned),
    };
    match elapsed {
        Some(s) => text.push_str(&format!(", {s} s")),
        None => text.push_str(", queued"),
    }
    RunProgress {
        value: run.rows_scanned,
        max: estimate,
        text,
    }
}

/// The runs going now, for the console's progress bars.
#[utoipa::path(get, path = "/internal/console/progress", tag = "console",
    security(("analyst_token" = [])),
    responses(
        (status = 200, description = "A bar for each run going.", body = Progress),
        (status = 401, description = "Neither the analyst token nor a console session."),
    ))]
pub async fn progress(_: SignedInAnalyst, State(s): State<WebState>) -> Result<Response, ApiError> {
    let runs = s.store.runs(50).await?;
    let items = runs
        .iter()
        .filter(|r| is_going(r))
        .map(|r| {
            let p = progress_of(r, &runs);
            ProgressItem {
                id: format!("progress-{}", r.run_id),
                value: p.value,
                max: p.max,
                text: p.text,
                done: false,
                run_id: Some(r.run_id.clone()),
                status: Some(r.status),
            }
        })
        .collect();
    Ok(axum::Json(Progress { items }).into_response())
}

fn run_row(r: Run) -> RunRow {
    RunRow {
        going: is_going(&r),
        progress_text: String::new(),
        duration: match (r.started_at, r.finished_at) {
            (Some(a), Some(b)) => format!("{:.3} s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => "–".into(),
        },
        created: r.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        window: match (r.window_from, r.window_to) {
            (Some(a), Some(b)) => crate::present::window_days(a, b),
            _ => "–".into(),
        },
        published: r.published,
        status: r.status.to_string(),
        trigger: r.trigger.to_string(),
        id: r.run_id,
        rows: r.rows_scanned,
        regions: r.regions_written,
        error: r.error.unwrap_or_default(),
    }
}

pub async fn login(
    _: SameSite,
    State(s): State<WebState>,
    extensions: Extensions,
    Form(form): Form<SignInForm>,
) -> Response {
    let client = iot_common::server::peer(&extensions).map(|p| p.ip());
    s.sessions.sign_in(
        client,
        || s.analyst_token.matches(&form.token).then_some(()),
        SignInPage {
            landing: CONSOLE,
            wrong_token: "That token is not the analyst token.",
            form: &sign_in_page,
        },
    )
}

pub async fn logout(_: SameSite, State(s): State<WebState>, headers: HeaderMap) -> Response {
    s.sessions.sign_out(&headers, CONSOLE)
}

/// The recompute form: an optional window of whole local days and "publish".
#[derive(Deserialize, Default, Clone)]
pub struct RecomputeForm {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    publish: Option<String>,
}

#[tracing::instrument(skip_all)]
pub async fn recompute(
    _: SameSite,
    _: SignedInAnalyst,
    State(s): State<WebState>,
    form: Result<Form<RecomputeForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let job = s
        .analytics
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no analytics job is connected to this service"))?;
    let form = match form {
        Ok(Form(f)) => f,
        // No form at all (a script's bare POST): the default window.
        Err(FormRejection::InvalidFormContentType(_)) => RecomputeForm::default(),
        Err(e) => {
            return Err(ApiError::new(ErrorCode::BadRequest, e.body_text()));
        }
    };
    let given = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    let request = RecomputeRequest {
        from: given(&form.from),
        to: given(&form.to),
        publish: form.publish.is_some(),
    };
    match job.recompute(&request).await {
        Ok(_) => Ok(Redirect::to(CONSOLE).into_response()),
        // The analyst's to correct: the page again, with the form as sent, and the code's status.
        Err(e) if e.is_analysts() => console(&s, e.code.status(), Some(e.words()), form).await,
        Err(e) => Err(e.into()),
    }
}
