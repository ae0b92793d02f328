//! Running a service: its listeners and background tasks, stopped together on shutdown.
//! Every binary uses this, so they all start, fail and drain the same way.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::server::{HttpLimits, serve};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The tasks of one running service. A task that fails stops the whole service: a
/// half-running service is worse than one that restarts.
pub struct Service {
    shutdown: CancellationToken,
    limits: HttpLimits,
    tasks: JoinSet<()>,
}

impl Default for Service {
    fn default() -> Self {
        Self::new()
    }
}

impl Service {
    /// A service whose listeners use the default [`HttpLimits`].
    pub fn new() -> Self {
        Self::with_limits(HttpLimits::default())
    }

    pub fn with_limits(limits: HttpLimits) -> Self {
        Self {
            shutdown: CancellationToken::new(),
            limits,
            tasks: JoinSet::new(),
        }
    }

    /// Cancelled when the service is stopping.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Binds `addr` (port 0 picks a free port) and serves `router` there until shutdown.
    pub async fn listen(
        &mut self,
        name: &'static str,
        addr: SocketAddr,
        router: Router,
    ) -> Result<SocketAddr, ListenError> {
        let to_err = |source| ListenError { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(to_err)?;
        let bound = listener.local_addr().map_err(to_err)?;
        let stop = self.shutdown.clone();
        let limits = self.limits;
        self.tasks.spawn(async move {
            if let Err(e) = serve(listener, router, limits, stop.clone()).await {
                tracing::error!(listener = name, error = %e, "listener failed, shutting down");
                stop.cancel();
            }
        });
        Ok(bound)
    }

    /// Runs `task`; if it fails, the service shuts down.
    pub fn spawn<E: Display>(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "task failed, shutting down");
                stop.cancel();
            }
        });
    }

    /// Stops everything: listeners stop accepting and drain, tasks see the shutdown token.
    /// Gives up on stragglers after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        self.shutdown.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("shutdown grace period over, aborting remaining tasks");
            self.tasks.abort_all();
        }
    }

    /// Runs until Ctrl-C, SIGTERM or a failed task, then stops within `grace`.
    pub async fn run_until_signal(self, grace: Duration) {
        crate::http::shutdown_signal(self.shutdown_token()).await;
        tracing::info!("shutting down");
        self.stop(grace).await;
    }
}
