//! The analysts' internal HTTP API: start a recompute, list runs, read one, and ask a SQL
//! query (`POST /internal/v1/query`). Every route needs
//! `Authorization: Bearer <IOT_ANALYST_TOKEN>`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use iot_common::auth::StaticToken;
use iot_common::domain::Trigger;
use iot_common::http::{Analyst, AnalystSecret};
use iot_common::problem::{ApiError, ErrorCode, Query};
use serde::Deserialize;
use serde_json::json;

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
    Router::new()
        .route("/internal/v1/runs", get(list).post(start))
        .route("/internal/v1/runs/{id}", get(one))
        .route("/internal/v1/query", post(query))
        .with_state(state)
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

#[derive(Deserialize)]
struct QueryBody {
    sql: String,
    #[serde(default)]
    format: AnswerFormat,
}

/// Says in a header that a file answer was cut at the row limit (a JSON answer says so in
/// its body).
pub const TRUNCATED_HEADER: &str = "x-iot-truncated";

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
#[derive(Deserialize, Default, Clone, Copy)]
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

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    trigger: Caller,
    /// First local day of the window (`YYYY-MM-DD`); with `to`.
    from: Option<String>,
    /// The day after the window's last (not included).
    to: Option<String>,
    /// Let a run over a chosen window replace the map's profiles.
    #[serde(default)]
    publish: bool,
}

/// The run an analyst asks for: the default window, or whole days `from`..`to`, each field
/// refused on its own when it is not a date or only one is given.
pub fn run_request(
    from: Option<&str>,
    to: Option<&str>,
    publish: bool,
) -> Result<RunRequest, ApiError> {
    let day = |field: &'static str, v: &str| {
        v.trim().parse::<chrono::NaiveDate>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("`{v}` is not a day: use YYYY-MM-DD"),
            )
            .field(field)
        })
    };
    let (from, to) = (
        from.filter(|v| !v.trim().is_empty()),
        to.filter(|v| !v.trim().is_empty()),
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
        Json(json!({ "run": run })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(
    _: Analyst,
    State(s): State<RunsState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 500);
    let runs = s.analytics.store().runs(limit).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

async fn one(
    _: Analyst,
    State(s): State<RunsState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let run = s.analytics.store().run(&id).await?;
    let run = run.ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({ "run": run })).into_response())
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
