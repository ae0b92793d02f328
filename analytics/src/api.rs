//! The analysts' internal HTTP API: start a recompute, list runs, read one, and ask a SQL
//! query (`POST /internal/v1/query`). Every route needs
//! `Authorization: Bearer <IOT_ANALYST_TOKEN>`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use iot_common::auth::StaticToken;
use iot_common::domain::Run;
use iot_common::domain::Trigger;
use iot_common::http::{Analyst, AnalystSecret};
use iot_common::problem::{ApiError, ErrorCode, Query};
use iot_common::wire::JsonAnswer;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::job::{Analytics, JobError, RunRequest};
use crate::output::OutputError;
use crate::sql::{SqlEngine, SqlError};
use crate::sql_output::{AnswerFormat, answer_bytes};

#[derive(Clone)]
pub struct RunsState {
    pub analytics: Arc<Analytics>,
    pub analyst_token: StaticToken,
    pub sql: Arc<SqlEngine>,
}

impl AnalystSecret for RunsState {
    fn analyst_token(&self) -> &StaticToken {
        &self.analyst_token
    }
}

pub fn runs_router(state: RunsState) -> Router {
    let (router, _) = api().split_for_parts();
    router.with_state(state)
}

/// The description of [`runs_router`], for the internal document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

fn api() -> OpenApiRouter<RunsState> {
    OpenApiRouter::new()
        .routes(routes!(list, start))
        .routes(routes!(one))
        .routes(routes!(query))
}

/// A run, as the runs routes answer it.
#[derive(Serialize, ToSchema)]
struct RunAnswer {
    run: Run,
}

/// The newest runs.
#[derive(Serialize, ToSchema)]
struct RunList {
    runs: Vec<Run>,
}

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> Self {
        let code = match e {
            SqlError::Refused(_) | SqlError::Several(_) => ErrorCode::QueryRefused,
            SqlError::Empty | SqlError::Invalid(_) => ErrorCode::QueryInvalid,
            SqlError::Memory { .. } | SqlError::Timeout(_) => ErrorCode::QueryOverLimit,
            SqlError::Busy(_) => ErrorCode::Overloaded,
            SqlError::Store(_) => ErrorCode::Unavailable,
            SqlError::Internal(_) => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string()).field("sql")
    }
}

impl From<OutputError> for ApiError {
    fn from(e: OutputError) -> Self {
        ApiError::new(ErrorCode::Internal, e.to_string())
    }
}

/// One read-only SQL query over the store's tables.
#[derive(Deserialize, ToSchema)]
struct QueryBody {
    /// One `SELECT` (or `WITH … SELECT`); a query on `readings` bounds `ts`.
    #[schema(example = "SELECT region, count(*) FROM meters GROUP BY region")]
    sql: String,
    /// The answer's format; `json` when absent.
    #[serde(default)]
    #[schema(inline)]
    format: AnswerFormat,
}

/// Says in a header that a file answer was cut at the row limit (a JSON answer says so in
/// its body).
pub const TRUNCATED_HEADER: &str = "x-iot-truncated";

/// Runs one read-only SQL query; the answer as JSON, CSV or Parquet (a download, with
/// `x-iot-truncated` saying whether the row limit cut it).
#[utoipa::path(post, path = "/internal/v1/query", tag = "analytics",
    security(("analyst_token" = [])),
    request_body(content = QueryBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer.", content(
            (JsonAnswer = "application/json"),
            (String = "text/csv; charset=utf-8"),
            (Vec<u8> = "application/vnd.apache.parquet"),
        )),
        (status = 400, description = "Not `{\"sql\", \"format\"}`; SQL that is not one read-only query, does not parse or plan."),
        (status = 401, description = "No analyst token."),
        (status = 413, description = "The body is over the listener's limit."),
        (status = 415, description = "`Content-Type` is not `application/json`."),
        (status = 422, description = "The query went over its memory or time limit."),
    ))]
async fn query(
    _: Analyst,
    State(s): State<RunsState>,
    body: Result<Json<QueryBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(q) = body.map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedBody,
            format!("send {{\"sql\": \"…\", \"format\": \"json|csv|parquet\"}}: {e}"),
        )
    })?;
    let answer = s.sql.run(&q.sql).await?;
    tracing::info!(
        rows = answer.rows,
        truncated = answer.truncated,
        ms = answer.elapsed.as_millis() as u64,
        "query answered"
    );
    let bytes = answer_bytes(&answer, q.format)?;
    let mut res = ([(header::CONTENT_TYPE, q.format.content_type())], bytes).into_response();
    if q.format != AnswerFormat::Json {
        let disposition = format!("attachment; filename=\"query.{}\"", q.format.extension());
        if let Ok(v) = header::HeaderValue::from_str(&disposition) {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        res.headers_mut().insert(
            TRUNCATED_HEADER,
            header::HeaderValue::from_static(if answer.truncated { "true" } else { "false" }),
        );
    }
    Ok(res)
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Busy(id) => ApiError::new(
                ErrorCode::RunInProgress,
                format!("run {id} is in progress; wait for it to finish"),
            ),
            JobError::Window { field, reason } => {
                ApiError::new(ErrorCode::InvalidQuery, reason).field(field)
            }
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

/// Who may ask for a run over this API: a caller names itself only as `api` or `console`
/// (the console names itself so its runs read the same in every layout).
/// Who asked for the run, as its record says.
#[derive(Deserialize, Default, Clone, Copy, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Caller {
    #[default]
    Api,
    Console,
}

impl From<Caller> for Trigger {
    fn from(c: Caller) -> Trigger {
        match c {
            Caller::Api => Trigger::Api,
            Caller::Console => Trigger::Console,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StartQuery {
    /// Who asks; `api` when absent.
    #[serde(default)]
    #[param(inline)]
    trigger: Caller,
    /// First local day of the window (`YYYY-MM-DD`); with `to`. The last 28 days when both
    /// are absent or empty.
    #[param(pattern = "^[ \t]*([0-9]{4}-[0-9]{2}-[0-9]{2})?[ \t]*$")]
    from: Option<String>,
    /// The day after the window's last (not included).
    #[param(pattern = "^[ \t]*([0-9]{4}-[0-9]{2}-[0-9]{2})?[ \t]*$")]
    to: Option<String>,
    /// Let a run over a chosen window replace the map's profiles.
    #[serde(default)]
    publish: bool,
}

/// A day field as a form sends it: spaces and tabs around it do not count.
fn blank_trimmed(v: &str) -> &str {
    v.trim_matches([' ', '\t'])
}

/// The run an analyst asks for: the default window, or whole days `from`..`to`, each field
/// refused on its own when it is not a date or only one is given.
pub fn run_request(
    from: Option<&str>,
    to: Option<&str>,
    publish: bool,
) -> Result<RunRequest, ApiError> {
    let day = |field: &'static str, v: &str| {
        let t = blank_trimmed(v);
        let shaped = t.len() == 10
            && t.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        shaped
            .then(|| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
            .flatten()
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("`{v}` is not a day: use YYYY-MM-DD"),
                )
                .field(field)
            })
    };
    let (from, to) = (
        from.filter(|v| !blank_trimmed(v).is_empty()),
        to.filter(|v| !blank_trimmed(v).is_empty()),
    );
    let days = match (from, to) {
        (None, None) => None,
        (Some(f), Some(t)) => Some((day("from", f)?, day("to", t)?)),
        (Some(_), None) => {
            return Err(
                ApiError::new(ErrorCode::InvalidQuery, "give `to` with `from`").field("to"),
            );
        }
        (None, Some(_)) => {
            return Err(
                ApiError::new(ErrorCode::InvalidQuery, "give `from` with `to`").field("from"),
            );
        }
    };
    Ok(RunRequest { days, publish })
}

/// Starts a recompute; the run's record says how it goes (`Location`).
#[utoipa::path(post, path = "/internal/v1/runs", tag = "analytics",
    security(("analyst_token" = [])),
    params(StartQuery),
    responses(
        (status = 202, description = "The run is queued.", body = RunAnswer,
         headers(("location" = String, description = "The run's record."))),
        (status = 400, description = "A parameter is not a day, or one of `from` and `to` is missing, or the window is wrong."),
        (status = 401, description = "No analyst token."),
        (status = 409, description = "A run is in progress already."),
    ))]
async fn start(
    _: Analyst,
    State(s): State<RunsState>,
    Query(q): Query<StartQuery>,
) -> Result<Response, ApiError> {
    let request = run_request(q.from.as_deref(), q.to.as_deref(), q.publish)?;
    let run = s.analytics.trigger(q.trigger.into(), request).await?;
    let location = format!("/internal/v1/runs/{}", run.run_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(RunAnswer { run }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// How many runs, newest first: 20 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// Most runs one answer lists.
const MAX_RUNS_LISTED: usize = 500;

/// The newest runs.
#[utoipa::path(get, path = "/internal/v1/runs", tag = "analytics",
    security(("analyst_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The runs, newest first.", body = RunList),
        (status = 400, description = "`limit` is not 1 to 500."),
        (status = 401, description = "No analyst token."),
    ))]
async fn list(
    _: Analyst,
    State(s): State<RunsState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_RUNS_LISTED).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_RUNS_LISTED}"),
        )
        .field("limit"));
    }
    let runs = s.analytics.store().runs(limit).await?;
    Ok(Json(RunList { runs }).into_response())
}

/// One run's record.
#[utoipa::path(get, path = "/internal/v1/runs/{id}", tag = "analytics",
    security(("analyst_token" = [])),
    params(("id" = String, Path, description = "The run's id.")),
    responses(
        (status = 200, description = "The run.", body = RunAnswer),
        (status = 401, description = "No analyst token."),
        (status = 404, description = "No such run."),
    ))]
async fn one(
    _: Analyst,
    State(s): State<RunsState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = s.analytics.store().run(&id).await?;
    let run = run.ok_or_else(ApiError::not_found)?;
    Ok(Json(RunAnswer { run }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(from: Option<&str>, to: Option<&str>) -> Option<String> {
        run_request(from, to, false).err().and_then(|e| e.field)
    }

    #[test]
    fn a_window_names_the_field_at_fault() {
        assert_eq!(
            field(Some("2026-13-01"), Some("2026-11-02")).as_deref(),
            Some("from")
        );
        assert_eq!(
            field(Some("2026-11-01"), Some("next week")).as_deref(),
            Some("to")
        );
        assert_eq!(field(Some("2026-11-01"), None).as_deref(), Some("to"));
        assert_eq!(field(None, Some("2026-11-01")).as_deref(), Some("from"));
        let ok = run_request(Some("2026-11-01"), Some(" 2026-11-08 "), true)
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert!(ok.publish && ok.days.is_some());
        let default =
            run_request(Some(""), None, false).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(default, RunRequest::default());
    }
}
