//! Which store a binary uses: Cassandra when nodes are named, else the embedded SQLite file
//! in the data directory.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use iot_common::store::sqlite::SqliteStore;
use iot_common::store::{Store, StoreError};

use crate::config::{CassandraArgs, ConfigError};
use crate::store::CassandraStore;

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the embedded store (`store.sqlite`), used when no Cassandra nodes are named.
    #[arg(long, env = "IOT_DATA_DIR", default_value = "iot-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub cassandra: CassandraArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create the data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl StoreArgs {
    /// Opens the store these flags name, and says which in the log.
    pub async fn open(&self) -> Result<Arc<dyn Store>, SelectError> {
        match self.cassandra.resolve()? {
            Some(config) => {
                tracing::info!(nodes = ?config.nodes, keyspace = %config.keyspace, "store: Cassandra");
                Ok(Arc::new(CassandraStore::connect(&config).await?))
            }
            None => {
                std::fs::create_dir_all(&self.data_dir).map_err(|source| SelectError::DataDir {
                    dir: self.data_dir.clone(),
                    source,
                })?;
                let path = SqliteStore::path_in(&self.data_dir);
                tracing::info!(path = %path.display(), "store: embedded SQLite");
                Ok(Arc::new(SqliteStore::open(&path)?))
            }
        }
    }

    /// Retries [`StoreArgs::open`] while Cassandra is still starting (compose starts
    /// services once `migrate` finished, but a node can restart), up to `patience`.
    pub async fn open_patiently(
        &self,
        patience: std::time::Duration,
    ) -> Result<Arc<dyn Store>, SelectError> {
        let start = std::time::Instant::now();
        loop {
            match self.open().await {
                Err(SelectError::Store(StoreError::Unavailable(e)))
                    if start.elapsed() < patience =>
                {
                    tracing::warn!(error = %e, "store not reachable yet; retrying in 2 s");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                other => return other,
            }
        }
    }
}
