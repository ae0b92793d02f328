//! The analysts' internal HTTP API: start a recompute, list runs, read one. Every route needs
//! `Authorization: Bearer <IOT_ANALYST_TOKEN>`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use iot_common::auth::StaticToken;
use iot_common::domain::Trigger;
use iot_common::http::require_analyst;
use iot_common::problem::{ApiError, ErrorCode, Query};
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

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Busy(id) => ApiError::new(
                ErrorCode::RunInProgress,
                format!("run {id} is in progress; wait for it to finish"),
            ),
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
}

async fn start(
    State(s): State<RunsState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Result<Response, ApiError> {
    require_analyst(&s.analyst_token, &headers)?;
    let run = s.analytics.trigger(q.trigger.into()).await?;
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
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    require_analyst(&s.analyst_token, &headers)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 500);
    let runs = s.analytics.store().runs(limit).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

async fn one(
    State(s): State<RunsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_analyst(&s.analyst_token, &headers)?;
    let run = s.analytics.store().run(&id).await?;
    let run = run.ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({ "run": run })).into_response())
}
