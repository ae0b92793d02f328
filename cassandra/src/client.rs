//! One connection to the cluster as every part of this crate uses it: token-aware load
//! balancing, the configured consistency, a cap on requests in flight, and retries with
//! backoff for the failures that pass (timeouts, too few replicas, overload). LZ4 on the
//! wire; write timestamps from a monotonic generator in this process, so "the later write
//! wins" holds whichever coordinator takes each write and whatever its clock says; password
//! authentication and TLS when configured.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::{ExecutionProfile, ExecutionProfileHandle};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, NewSessionError, RequestAttemptError};
use scylla::frame::Compression;
use scylla::frame::types::{Consistency, SerialConsistency};
use scylla::policies::load_balancing::{
    DefaultPolicy, NodeIdentifier, SingleTargetLoadBalancingPolicy,
};
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
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
    #[error("cannot set up TLS with the CA in {path}: {reason}")]
    Tls { path: String, reason: String },
}

impl ClientError {
    /// A failure that another attempt will not cure: the cluster refused the request itself
    /// (no permission, bad credentials, a request it calls invalid).
    pub fn is_permanent(&self) -> bool {
        let db = match self {
            ClientError::Execution(e) => match e.as_ref() {
                ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => db,
                _ => return false,
            },
            ClientError::Tls { .. } => return true,
            _ => return false,
        };
        matches!(
            db,
            DbError::Unauthorized
                | DbError::AuthenticationError
                | DbError::Invalid
                | DbError::SyntaxError
                | DbError::ConfigError
        )
    }

    /// A failure that passes: a timeout, too few replicas, a node starting or unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Execution(e) => is_transient(e),
            ClientError::Connect { .. } | ClientError::Agreement(_) => true,
            _ => false,
        }
    }
}

impl From<ExecutionError> for ClientError {
    fn from(e: ExecutionError) -> Self {
        ClientError::Execution(Box::new(e))
    }
}

impl From<scylla::errors::PrepareError> for ClientError {
    fn from(e: scylla::errors::PrepareError) -> Self {
        use scylla::errors::PrepareError as P;
        match e {
            P::ConnectionPoolError(e) => ExecutionError::ConnectionPoolError(e).into(),
            P::AllAttemptsFailed { first_attempt } => {
                ExecutionError::LastAttemptError(first_attempt).into()
            }
            other => ClientError::Agreement(other.to_string()),
        }
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
    /// The batch job's scans: LOCAL_ONE (an analytical read of settled data needs one
    /// replica's answer, and a replica behind by a write is caught up by repair long before
    /// it matters to a profile of weeks) and a longer deadline for large pages.
    pub scan_profile: ExecutionProfileHandle,
    permits: Arc<Semaphore>,
    attempts: u32,
}

/// The TLS settings of a connection: the nodes' certificates must chain to `ca` (and name
/// the node's address, which is what the driver checks them against).
fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let fail = |reason: String| ClientError::Tls {
        path: ca.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| fail(e.to_string()))?;
    for cert in certs {
        roots
            .add(cert.map_err(|e| fail(e.to_string()))?)
            .map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
        let policy = policy.build();
        let profile = ExecutionProfile::builder()
            .consistency(config.consistency)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .load_balancing_policy(policy.clone())
            .retry_policy(Arc::new(DefaultRetryPolicy::new()))
            .request_timeout(Some(config.request_timeout))
            .build();
        let scan_profile = profile
            .to_builder()
            .consistency(Consistency::LocalOne)
            .request_timeout(Some(config.request_timeout * 3))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(Duration::from_secs(5))
            .compression(Some(Compression::Lz4))
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = &config.credentials {
            builder = builder.user(user, password);
        }
        if let Some(ca) = &config.tls_ca {
            builder = builder.tls_context(Some(tls_config(ca)?));
        }
        let session = builder
            .build()
            .await
            .map_err(|source| ClientError::Connect {
                nodes: config.nodes.join(","),
                source: Box::new(source),
            })?;
        Ok(Self {
            session: Arc::new(session),
            scan_profile: scan_profile.into_handle(),
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            attempts: config.attempts.max(1),
        })
    }

    /// A profile that sends every request to one node, the same one from every process
    /// (the lowest address the driver knows): schema changes made on one node cannot race
    /// each other into a disagreement. `None` before the driver knows any node.
    pub fn one_node_profile(&self) -> Option<ExecutionProfileHandle> {
        let state = self.session.get_cluster_state();
        let node = state
            .get_nodes_info()
            .iter()
            .min_by_key(|n| n.address.to_string())?
            .clone();
        Some(
            ExecutionProfile::builder()
                .load_balancing_policy(SingleTargetLoadBalancingPolicy::new(
                    NodeIdentifier::Node(node),
                    None,
                ))
                .retry_policy(Arc::new(DefaultRetryPolicy::new()))
                .build()
                .into_handle(),
        )
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

    /// Runs `statement` (text with its own settings: a profile, a serial consistency) as
    /// [`Client::run`] does.
    pub async fn query_with(
        &self,
        what: &'static str,
        statement: Statement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, ClientError> {
        self.run(what, || {
            self.session.query_unpaged(statement.clone(), &values)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn db(e: DbError) -> ClientError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "test".into())).into()
    }

    #[test]
    fn refusals_are_permanent_and_outages_pass() {
        for permanent in [
            DbError::Unauthorized,
            DbError::Invalid,
            DbError::SyntaxError,
            DbError::AuthenticationError,
            DbError::ConfigError,
        ] {
            let e = db(permanent);
            assert!(e.is_permanent() && !e.is_transient(), "{e}");
        }
        for passing in [
            db(DbError::Overloaded),
            db(DbError::IsBootstrapping),
            ExecutionError::RequestTimeout(Duration::from_secs(10)).into(),
            ExecutionError::EmptyPlan.into(),
        ] {
            assert!(
                passing.is_transient() && !passing.is_permanent(),
                "{passing}"
            );
        }
    }

    #[test]
    fn a_ca_file_makes_a_tls_setting_and_a_bad_one_says_why() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        // A self-signed certificate, made for this test only (its key was thrown away).
        tls_config(&dir.join("test-ca.pem")).expect("a CA certificate");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let e = tls_config(empty.path()).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
        assert!(e.is_permanent(), "not retried");
        let e = tls_config(&dir.join("missing.pem")).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
