//! The analysts' internal HTTP API: start a recompute, list runs, read one. Every route needs
//! `Authorization: Bearer <IOT_ANALYST_TOKEN>`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use iot_common::auth::StaticToken;
use iot_common::http::{ApiError, require_analyst};
use serde::Deserialize;
use serde_json::json;

use crate::job::{Analytics, JobError};

#[derive(Clone)]
pub struct RunsState {
    pub analytics: Arc<Analytics>,
    pub analyst_token: StaticToken,
}

pub fn runs_router(state: RunsState) -> Router {
    Router::new()
        .route("/internal/v1/runs", get(list).post(start))
        .route("/internal/v1/runs/{id}", get(one))
        .with_state(state)
}

fn invalid_query(e: axum::extract::rejection::QueryRejection, field: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_query",
        e.body_text(),
    )
    .field(field)
}

fn job_error(e: JobError) -> ApiError {
    match e {
        JobError::Busy(id) => ApiError::new(
            StatusCode::CONFLICT,
            "run_in_progress",
            format!("run {id} is in progress; wait for it to finish"),
        ),
        other => ApiError::unavailable(other.to_string()),
    }
}

/// Who asked for a run, as recorded on it. A closed set, so a caller cannot write free text
/// into the run history; the console names itself so its runs read the same in every layout.
#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Trigger {
    #[default]
    Api,
    Console,
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    trigger: Trigger,
}

async fn start(
    State(s): State<RunsState>,
    headers: HeaderMap,
    query: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_analyst(&s.analyst_token, &headers)?;
    let Query(q) = query.map_err(|e| invalid_query(e, "trigger"))?;
    let trigger = match q.trigger {
        Trigger::Api => "api",
        Trigger::Console => "console",
    };
    let run = s.analytics.trigger(trigger).await.map_err(job_error)?;
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
    State(s): State<RunsState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_analyst(&s.analyst_token, &headers)?;
    let Query(q) = query.map_err(|e| invalid_query(e, "limit"))?;
    let limit = q.limit.unwrap_or(20).clamp(1, 500);
    let runs = s
        .analytics
        .store()
        .runs(limit)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

async fn one(
    State(s): State<RunsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_analyst(&s.analyst_token, &headers)?;
    match s.analytics.store().run(&id).await {
        Ok(Some(run)) => Ok(Json(json!({ "run": run })).into_response()),
        Ok(None) => Err(ApiError::not_found()),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}
