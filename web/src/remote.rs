//! The services a web service talks to when they run elsewhere: the analytics job ("recompute
//! now" and SQL queries, sent to its internal API with the analyst token) and the simulated
//! fleet (its backfill's progress, from its internal `GET /backfill`).

use std::time::Duration;

use iot_common::Run;
use iot_common::problem::ErrorCode;
use iot_common::wire::AnswerFormat;

use crate::state::{AnalyticsError, AnalyticsPort, FleetProgress, QueryAnswer, RecomputeRequest};

/// A query may run for as long as the analytics service lets it (20 s by default), under the
/// HTTP request timeout of both services.
const QUERY_TIMEOUT: Duration = Duration::from_secs(35);

pub struct RemoteAnalytics {
    client: reqwest::Client,
    runs_url: String,
    query_url: String,
    token: String,
}

impl RemoteAnalytics {
    /// `base` is the analytics service's internal listener, e.g. `http://analytics:9083`.
    pub fn new(base: &str, token: &str) -> Result<Self, reqwest::Error> {
        let base = base.trim_end_matches('/');
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            runs_url: format!("{base}/internal/v1/runs?trigger=console"),
            query_url: format!("{base}/internal/v1/query"),
            token: token.to_owned(),
        })
    }
}

#[derive(serde::Deserialize)]
struct Started {
    run: Run,
}

fn unreachable(e: reqwest::Error) -> AnalyticsError {
    AnalyticsError::unavailable(format!("the analytics service is unreachable: {e}"))
}

/// The part of a problem document a refusal is read from.
#[derive(serde::Deserialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: String,
    detail: Option<String>,
    field: Option<String>,
}

/// A refusal as the analytics service said it: the problem document's code, field and
/// detail. Anything else (a proxy's page, a body that is no problem) is an outage when the
/// status is, and the analyst's input otherwise.
async fn refused(response: reqwest::Response) -> AnalyticsError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let problem = serde_json::from_str::<Problem>(&body).ok().and_then(|p| {
        let code = p.kind.strip_prefix("urn:iot-demo:problem:")?.parse().ok()?;
        Some((code, p))
    });
    match problem {
        Some((code, p)) => AnalyticsError {
            code,
            field: p.field,
            message: p.detail.unwrap_or_else(|| status.to_string()),
        },
        None if status.is_client_error() => AnalyticsError {
            code: ErrorCode::for_status(status),
            field: None,
            message: format!("the analytics service answered {status}: {body}"),
        },
        None => {
            AnalyticsError::unavailable(format!("the analytics service answered {status}: {body}"))
        }
    }
}

#[async_trait::async_trait]
impl AnalyticsPort for RemoteAnalytics {
    async fn recompute(&self, request: &RecomputeRequest) -> Result<Run, AnalyticsError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(from) = &request.from {
            query.push(("from", from));
        }
        if let Some(to) = &request.to {
            query.push(("to", to));
        }
        if request.publish {
            query.push(("publish", "true"));
        }
        let response = self
            .client
            .post(&self.runs_url)
            .query(&query)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        response
            .json::<Started>()
            .await
            .map(|s| s.run)
            .map_err(|e| {
                AnalyticsError::unavailable(format!(
                    "the analytics service answered something unreadable: {e}"
                ))
            })
    }

    async fn query(&self, sql: &str, format: AnswerFormat) -> Result<QueryAnswer, AnalyticsError> {
        let response = self
            .client
            .post(&self.query_url)
            .timeout(QUERY_TIMEOUT)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "sql": sql, "format": format }))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let truncated = header("x-iot-truncated").is_some_and(|v| v == "true");
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        Ok(QueryAnswer {
            content_type,
            body,
            truncated,
        })
    }
}

/// The fleet's internal listener, e.g. `http://fleet:9084`.
pub struct RemoteFleet {
    client: reqwest::Client,
    url: String,
}

impl RemoteFleet {
    pub fn new(base: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
            url: format!("{}/backfill", base.trim_end_matches('/')),
        })
    }
}

#[async_trait::async_trait]
impl FleetProgress for RemoteFleet {
    /// The report comes with 200 once stored and 503 before: both carry it.
    async fn backfill(&self) -> Option<iot_common::wire::BackfillReport> {
        let response = self.client.get(&self.url).send().await.ok()?;
        response.json().await.ok()
    }
}
