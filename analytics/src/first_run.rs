//! When `analytics serve` makes its first run. A fixed delay may profile half of a history
//! still being loaded, so the stack can instead name a URL that answers 2xx once the history
//! is stored (the fleet's `/backfill`), with a bound so a stuck loader never stops the
//! schedule.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub enum FirstRun {
    /// This long after start-up.
    In(Duration),
    /// Once the URL answers 2xx, or after the patience, whichever is first.
    After(reqwest::Url, Duration),
}

/// How often the URL is asked.
const POLL: Duration = Duration::from_secs(2);

impl FirstRun {
    /// Waits for the signal; returns the delay still to go before the first run.
    pub async fn wait(self, shutdown: &CancellationToken) -> Duration {
        let (url, patience) = match self {
            Self::In(delay) => return delay,
            Self::After(url, patience) => (url, patience),
        };
        let client = match reqwest::Client::builder().timeout(POLL).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an HTTP client; first run now");
                return Duration::ZERO;
            }
        };
        let started = Instant::now();
        tracing::info!(%url, "first run waits for this URL to answer 2xx");
        loop {
            match client.get(url.clone()).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(%url, waited_s = started.elapsed().as_secs(), "first run: signal heard");
                    return Duration::ZERO;
                }
                Ok(r) => tracing::debug!(%url, status = %r.status(), "first run: not yet"),
                Err(e) => tracing::debug!(%url, error = %e, "first run: not yet"),
            }
            if started.elapsed() >= patience {
                tracing::warn!(%url, patience_s = patience.as_secs(), "first run: no signal in time; running now");
                return Duration::ZERO;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Duration::ZERO,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_first_run_waits_for_the_url_to_say_yes() {
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        // 503 twice, then 200: as the fleet's /backfill while the sink catches up.
        let app = Router::new().route(
            "/backfill",
            get(move || {
                let n = a.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}/backfill").parse().unwrap();
        let left = FirstRun::After(url, Duration::from_secs(60))
            .wait(&CancellationToken::new())
            .await;
        assert_eq!(left, Duration::ZERO);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_signal_that_never_comes_delays_the_first_run_only_so_long() {
        // Nothing listens on this port (bound, then dropped).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("http://{addr}/backfill").parse().unwrap();
        let left = FirstRun::After(url, Duration::ZERO)
            .wait(&CancellationToken::new())
            .await;
        assert_eq!(left, Duration::ZERO);
    }
}
