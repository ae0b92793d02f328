//! One connection to the cluster as every part of this crate uses it: token-aware load
//! balancing, the configured consistency, a cap on requests in flight, and retries with
//! backoff for the failures that pass (timeouts, too few replicas, overload).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, NewSessionError, RequestAttemptError};
use scylla::frame::types::SerialConsistency;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::Semaphore;

use crate::config::CassandraConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to Cassandra at {nodes}: {source}")]
    Connect {
        nodes: String,
        source: Box<NewSessionError>,
    },
    #[error("Cassandra request failed: {0}")]
    Execution(Box<ExecutionError>),
    #[error("Cassandra scan failed: {0}")]
    Pager(Box<scylla::errors::PagerExecutionError>),
    #[error("Cassandra answered with data this version cannot read: {0}")]
    Decode(String),
    #[error("the cluster did not agree on the schema: {0}")]
    Agreement(String),
}

impl From<ExecutionError> for ClientError {
    fn from(e: ExecutionError) -> Self {
        ClientError::Execution(Box::new(e))
    }
}

impl From<scylla::errors::PagerExecutionError> for ClientError {
    fn from(e: scylla::errors::PagerExecutionError) -> Self {
        ClientError::Pager(Box::new(e))
    }
}

/// The session and the limits around it. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub session: Arc<Session>,
    permits: Arc<Semaphore>,
    attempts: u32,
}

impl Client {
    /// Connects without a keyspace (the migrator creates it); statements name theirs or run
    /// after [`Client::use_keyspace`].
    pub async fn connect(config: &CassandraConfig) -> Result<Self, ClientError> {
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.datacenter {
            policy = policy
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .consistency(config.consistency)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .load_balancing_policy(policy.build())
            .retry_policy(Arc::new(DefaultRetryPolicy::new()))
            .request_timeout(Some(config.request_timeout))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(Duration::from_secs(5))
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(|source| ClientError::Connect {
                nodes: config.nodes.join(","),
                source: Box::new(source),
            })?;
        Ok(Self {
            session: Arc::new(session),
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            attempts: config.attempts.max(1),
        })
    }

    /// Makes `keyspace` the default of every later statement on this session.
    pub async fn use_keyspace(&self, keyspace: &str) -> Result<(), ClientError> {
        self.session
            .use_keyspace(keyspace, false)
            .await
            .map_err(|e| ClientError::from(ExecutionError::from(e)))
    }

    /// Runs a prepared statement as [`Client::run`] does, and returns its whole answer.
    pub async fn execute(
        &self,
        what: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, ClientError> {
        self.run(what, || self.session.execute_unpaged(statement, &values))
            .await
    }

    /// Runs a statement given as text (schema changes, the migrator's own bookkeeping) as
    /// [`Client::run`] does.
    pub async fn query(
        &self,
        what: &'static str,
        text: &str,
        values: impl SerializeRow,
    ) -> Result<QueryResult, ClientError> {
        self.run(what, || self.session.query_unpaged(text, &values))
            .await
    }

    /// Runs one idempotent request, holding a concurrency permit, retrying transient
    /// failures with exponential backoff (50 ms, 100 ms, 200 ms, ... with jitter).
    pub async fn run<T, F, Fut>(&self, what: &'static str, mut request: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ExecutionError>>,
    {
        let mut attempt = 1;
        loop {
            let result = {
                // The semaphore is never closed, so acquiring only fails if it were.
                let _permit = self.permits.acquire().await.ok();
                request().await
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.attempts && is_transient(&e) => {
                    let backoff = 50u64 << (attempt - 1).min(6);
                    let jitter = rand::random::<u64>() % (backoff / 2 + 1);
                    tracing::warn!(request = what, attempt, error = %e, "Cassandra request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(backoff + jitter)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The rows of an answer, typed.
pub fn rows<T>(result: QueryResult) -> Result<Vec<T>, ClientError>
where
    T: for<'f, 'm> DeserializeRow<'f, 'm>,
{
    let decode = |e: &dyn std::fmt::Display| ClientError::Decode(e.to_string());
    let rows = result.into_rows_result().map_err(|e| decode(&e))?;
    rows.rows::<T>()
        .map_err(|e| decode(&e))?
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| decode(&e))
}

/// Failures that another attempt may not meet: timeouts, too few live replicas, an
/// overloaded or starting node, a connection that broke.
pub fn is_transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::RequestTimeout(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_) => true,
        ExecutionError::LastAttemptError(a) => match a {
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::ReadTimeout { .. }
                    | DbError::WriteTimeout { .. }
                    | DbError::Unavailable { .. }
                    | DbError::Overloaded
                    | DbError::IsBootstrapping
            ),
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            _ => false,
        },
        _ => false,
    }
}
