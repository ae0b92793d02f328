//! The analysts' console on the internal listener: runs with status and timings, a
//! "recompute now" button, and the latest run's error. Signing in with the analyst token opens
//! a session ([`crate::sessions`]): the cookie holds its random id, never the token. A bearer
//! header works too. Forms that change state are refused from other sites (403), and a client
//! that keeps failing to sign in is refused for a minute (429).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use iot_common::Run;
use iot_common::http::bearer_token;
use iot_common::problem::Query;
use iot_common::problem::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::respond;
use crate::sessions::same_origin;
use crate::state::{AnalyticsError, RecomputeRequest, WebState};

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

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        let code = match e {
            AnalyticsError::Refused(_) => ErrorCode::NotStarted,
            AnalyticsError::Invalid(_) => ErrorCode::InvalidRequest,
            AnalyticsError::Unavailable(_) => ErrorCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

fn authorized(s: &WebState, headers: &HeaderMap) -> bool {
    bearer_token(headers).is_ok_and(|t| s.operator_token.matches(t))
        || s.sessions.is_signed_in(headers)
}

fn cross_site() -> ApiError {
    crate::sessions::cross_site("console's")
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

pub async fn page(State(s): State<WebState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !authorized(&s, &headers) {
        return Ok(sign_in_page(
            StatusCode::UNAUTHORIZED,
            "Sign in with the analyst token (IOT_ANALYST_TOKEN).",
        ));
    }
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
struct Progress {
    value: u64,
    max: Option<u64>,
    text: String,
}

fn progress_of(run: &Run, runs: &[Run]) -> Progress {
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
    Progress {
        value: run.rows_scanned,
        max: estimate,
        text,
    }
}

/// `GET /internal/console/progress`: the runs going now, for the console's progress bars.
pub async fn progress(State(s): State<WebState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !authorized(&s, &headers) {
        return Err(ApiError::new(ErrorCode::Unauthorized, "sign in first"));
    }
    let runs = s.store.runs(50).await?;
    let items: Vec<serde_json::Value> = runs
        .iter()
        .filter(|r| is_going(r))
        .map(|r| {
            let p = progress_of(r, &runs);
            serde_json::json!({
                "id": format!("progress-{}", r.run_id),
                "run_id": r.run_id,
                "status": r.status,
                "value": p.value,
                "max": p.max,
                "text": p.text,
                "done": false,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "items": items })).into_response())
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
    State(s): State<WebState>,
    headers: HeaderMap,
    form: Result<Form<RecomputeForm>, FormRejection>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(cross_site());
    }
    if !authorized(&s, &headers) {
        return Err(ApiError::new(ErrorCode::Unauthorized, "sign in first"));
    }
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
        Ok(_) => Ok(Redirect::to("/internal/console").into_response()),
        Err(AnalyticsError::Invalid(why)) => {
            console(&s, StatusCode::UNPROCESSABLE_ENTITY, Some(why), form).await
        }
        Err(AnalyticsError::Refused(why)) => {
            console(&s, StatusCode::CONFLICT, Some(why), form).await
        }
        Err(e) => Err(e.into()),
    }
}

/// What the SQL page starts with: a query over the last week that runs as it stands.
const EXAMPLE_SQL: &str = "SELECT region, count(DISTINCT meter_id) AS meters, count(*) AS readings, \
round(sum(kwh), 1) AS kwh\nFROM readings\nWHERE ts >= now() - INTERVAL '7 days'\n\
GROUP BY region\nORDER BY kwh DESC";

struct Column {
    name: String,
    kind: String,
}

struct Cell {
    text: String,
    number: bool,
}

struct AnswerTable {
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
    row_count: u64,
    truncated: bool,
    row_limit: u64,
    elapsed_ms: u64,
}

#[derive(Template)]
#[template(path = "console_query.html")]
struct QueryPage {
    sql: String,
    error: Option<String>,
    table: Option<AnswerTable>,
}

/// The JSON answer (`columns`, `rows`, …) as the page's table.
fn answer_table(body: &[u8]) -> Option<AnswerTable> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let columns = v
        .get("columns")?
        .as_array()?
        .iter()
        .map(|c| Column {
            name: c.get("name").and_then(|n| n.as_str()).unwrap_or("").into(),
            kind: c.get("type").and_then(|n| n.as_str()).unwrap_or("").into(),
        })
        .collect();
    let rows = v
        .get("rows")?
        .as_array()?
        .iter()
        .map(|row| {
            row.as_array()
                .map(|cells| {
                    cells
                        .iter()
                        .map(|c| Cell {
                            number: c.is_number(),
                            text: match c {
                                serde_json::Value::Null => "NULL".into(),
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            },
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let number = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Some(AnswerTable {
        columns,
        rows,
        row_count: number("row_count"),
        truncated: v.get("truncated").and_then(serde_json::Value::as_bool) == Some(true),
        row_limit: number("row_limit"),
        elapsed_ms: number("elapsed_ms"),
    })
}

pub async fn query_page(
    State(s): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !authorized(&s, &headers) {
        return Ok(sign_in_page(StatusCode::UNAUTHORIZED, "Sign in first."));
    }
    respond::page(&QueryPage {
        sql: EXAMPLE_SQL.into(),
        error: None,
        table: None,
    })
}

#[derive(Deserialize)]
pub struct QueryForm {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

#[tracing::instrument(skip_all)]
pub async fn query(
    State(s): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<QueryForm>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(cross_site());
    }
    if !authorized(&s, &headers) {
        return Err(ApiError::new(ErrorCode::Unauthorized, "sign in first"));
    }
    let format = match form.format.as_deref().unwrap_or("json") {
        f @ ("json" | "csv" | "parquet") => f,
        other => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown format `{other}`: json, csv or parquet"),
            )
            .field("format"));
        }
    };
    let job = s
        .analytics
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no analytics job is connected to this service"))?;
    let answered = job.query(&form.sql, format).await;
    let page = |error: Option<String>, table: Option<AnswerTable>, status: StatusCode| {
        respond::page_with(
            status,
            &QueryPage {
                sql: form.sql.clone(),
                error,
                table,
            },
        )
    };
    match answered {
        Err(AnalyticsError::Refused(why) | AnalyticsError::Invalid(why)) => {
            page(Some(why), None, StatusCode::BAD_REQUEST)
        }
        Err(e @ AnalyticsError::Unavailable(_)) => Err(e.into()),
        Ok(answer) if format == "json" => match answer_table(&answer.body) {
            Some(table) => page(None, Some(table), StatusCode::OK),
            None => Err(ApiError::unavailable(
                "the analytics job answered something unreadable",
            )),
        },
        Ok(answer) => {
            let mut res = (
                [
                    (header::CONTENT_TYPE, answer.content_type),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"query.{format}\""),
                    ),
                ],
                answer.body,
            )
                .into_response();
            if answer.truncated {
                res.headers_mut().insert(
                    "x-iot-truncated",
                    axum::http::HeaderValue::from_static("true"),
                );
            }
            Ok(res)
        }
    }
}

struct RunChoice {
    id: String,
    label: String,
}

/// One figure before and after, and the change as people read it.
struct Change {
    before: String,
    after: String,
    change: String,
}

struct CompareRow {
    name: String,
    /// Mean, median, p90.
    cells: Vec<Change>,
}

#[derive(Template)]
#[template(path = "console_compare.html")]
struct ComparePage {
    runs: Vec<RunChoice>,
    a: String,
    b: String,
    a_window: String,
    b_window: String,
    message: Option<String>,
    rows: Vec<CompareRow>,
}

#[derive(Deserialize)]
pub struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
}

fn change(before: Option<f64>, after: Option<f64>) -> Change {
    let text = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), crate::present::kwh);
    Change {
        before: text(before),
        after: text(after),
        change: match (before, after) {
            (Some(b), Some(a)) if b.abs() > 1e-12 => {
                format!("{:+.2} ({:+.1} %)", a - b, (a - b) / b * 100.0)
            }
            (Some(b), Some(a)) => format!("{:+.2}", a - b),
            _ => "–".into(),
        },
    }
}

/// `GET /internal/console/compare?a=RUN&b=RUN`: two runs' figures per borough side by side
/// (by default the two newest succeeded runs).
pub async fn compare(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<CompareQuery>,
) -> Result<Response, ApiError> {
    if !authorized(&s, &headers) {
        return Ok(sign_in_page(StatusCode::UNAUTHORIZED, "Sign in first."));
    }
    let succeeded: Vec<Run> = s
        .store
        .runs(100)
        .await?
        .into_iter()
        .filter(|r| r.status == iot_common::RunStatus::Succeeded)
        .collect();
    let a =
        q.a.or_else(|| succeeded.get(1).map(|r| r.run_id.clone()))
            .unwrap_or_default();
    let b =
        q.b.or_else(|| succeeded.first().map(|r| r.run_id.clone()))
            .unwrap_or_default();
    let window = |id: &str| {
        succeeded
            .iter()
            .find(|r| r.run_id == id)
            .and_then(|r| Some(crate::present::window_days(r.window_from?, r.window_to?)))
            .unwrap_or_default()
    };
    let (before, after) = (
        s.store.run_profiles(&a).await?,
        s.store.run_profiles(&b).await?,
    );
    let message = if succeeded.len() < 2 {
        Some("Two succeeded runs are needed to compare.".to_owned())
    } else if before.is_empty() || after.is_empty() {
        Some("One of these runs has no profiles kept (failed, expired, or from before the history was kept).".to_owned())
    } else {
        None
    };
    let figures = |profiles: &[iot_common::RegionProfile], code: &str| {
        profiles
            .iter()
            .find(|p| p.figures.region.as_str() == code)
            .map(|p| p.figures.clone())
    };
    let rows = if message.is_some() {
        Vec::new()
    } else {
        s.regions
            .iter()
            .filter_map(|r| {
                let (x, y) = (
                    figures(&before, r.code.as_str()),
                    figures(&after, r.code.as_str()),
                );
                if x.is_none() && y.is_none() {
                    return None;
                }
                let pick = |f: fn(&iot_common::ProfileFigures) -> f64| {
                    change(x.as_ref().map(f), y.as_ref().map(f))
                };
                Some(CompareRow {
                    name: r.name.clone(),
                    cells: vec![
                        pick(|f| f.avg_daily_kwh),
                        pick(|f| f.p50_daily_kwh),
                        pick(|f| f.p90_daily_kwh),
                    ],
                })
            })
            .collect()
    };
    respond::page(&ComparePage {
        runs: succeeded
            .iter()
            .map(|r| RunChoice {
                id: r.run_id.clone(),
                label: format!(
                    "{} · {}{}",
                    r.created_at.format("%Y-%m-%d %H:%M"),
                    match (r.window_from, r.window_to) {
                        (Some(f), Some(t)) => crate::present::window_days(f, t),
                        _ => String::new(),
                    },
                    if r.published { "" } else { " · history only" }
                ),
            })
            .collect(),
        a_window: window(&a),
        b_window: window(&b),
        a,
        b,
        message,
        rows,
    })
}
