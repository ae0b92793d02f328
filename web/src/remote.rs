//! "Recompute now" for a web service whose batch job runs elsewhere: a POST to the
//! analytics service's internal runs API, with the analyst token.

use std::time::Duration;

use iot_common::Run;

use crate::state::{Recompute, RecomputeError};

pub struct RemoteAnalytics {
    client: reqwest::Client,
    runs_url: String,
    token: String,
}

impl RemoteAnalytics {
    /// `base` is the analytics service's internal listener, e.g. `http://analytics:9083`.
    pub fn new(base: &str, token: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            runs_url: format!(
                "{}/internal/v1/runs?trigger=console",
                base.trim_end_matches('/')
            ),
            token: token.to_owned(),
        })
    }
}

#[derive(serde::Deserialize)]
struct Started {
    run: Run,
}

#[async_trait::async_trait]
impl Recompute for RemoteAnalytics {
    async fn recompute(&self) -> Result<Run, RecomputeError> {
        let response = self
            .client
            .post(&self.runs_url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                RecomputeError::Unavailable(format!("the analytics service is unreachable: {e}"))
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::CONFLICT {
            let body = response.text().await.unwrap_or_default();
            return Err(RecomputeError::Refused(format!(
                "the analytics service answered {status}: {body}"
            )));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RecomputeError::Unavailable(format!(
                "the analytics service answered {status}: {body}"
            )));
        }
        response
            .json::<Started>()
            .await
            .map(|s| s.run)
            .map_err(|e| {
                RecomputeError::Unavailable(format!(
                    "the analytics service answered something unreadable: {e}"
                ))
            })
    }
}
