//! The `migrate` command: brings keyspace `iot_demo` up to the migrations this binary
//! carries, or with `--check` only says whether it is. With no Cassandra nodes named it
//! brings the embedded SQLite store in the data directory up to date instead, so a stack
//! run on the embedded store has the same start-up order.

use std::time::Duration;

use clap::Parser;

use crate::client::Client;
use crate::config::{ConfigError, ReplicationArgs};
use crate::migrate::{MigrateError, migrate, verify};
use crate::select::{SelectError, StoreArgs};

#[derive(Debug, Parser)]
#[command(
    name = "migrate",
    version,
    about = "Apply the CQL migrations (migrations/cql) to the Cassandra keyspace, in order, once each"
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub replication: ReplicationArgs,
    /// Longest wait for another migrator's lock, in seconds.
    #[arg(long, env = "IOT_MIGRATE_LOCK_WAIT_S", default_value_t = 120)]
    pub lock_wait_s: u64,
    /// Change nothing: exit with an error unless every migration is applied and unchanged.
    #[arg(long)]
    pub check: bool,
    /// After migrating, copy the readings of the tables before migration 6
    /// (`readings_by_meter`, `meter_days`) into the current ones. Safe to repeat, and to run
    /// while the sink runs.
    #[arg(long, conflicts_with = "check")]
    pub copy_legacy_readings: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Embedded(#[from] SelectError),
    #[error("copying the legacy readings failed (run it again: it is safe to repeat): {0}")]
    Copy(#[from] iot_common::store::StoreError),
    #[error("--check compares a Cassandra keyspace with the migrations: name the nodes")]
    CheckNeedsNodes,
}

pub async fn execute(cli: Cli) -> Result<(), CliError> {
    let Some(config) = cli.store.cassandra.resolve()? else {
        if cli.check {
            return Err(CliError::CheckNeedsNodes);
        }
        // Opening the embedded store applies its schema.
        cli.store.open().await?;
        println!(
            "no Cassandra nodes named: the embedded store in {} is up to date",
            cli.store.data_dir.display()
        );
        return Ok(());
    };
    let client = Client::connect(&config).await?;
    let files = iot_migrations::CQL;
    if cli.check {
        client.use_keyspace(&config.keyspace).await?;
        verify(&client, files).await?;
        println!(
            "keyspace {}: all {} migrations applied",
            config.keyspace,
            files.len()
        );
        return Ok(());
    }
    let replication = cli.replication.cql(config.datacenter.as_deref())?;
    let report = migrate(
        &client,
        files,
        &config.keyspace,
        &replication,
        config.region_shards,
        Duration::from_secs(cli.lock_wait_s),
    )
    .await?;
    for (version, name) in &report.applied {
        println!("applied {version:04} {name}");
    }
    println!(
        "keyspace {}: {} applied now, {} already applied",
        config.keyspace,
        report.applied.len(),
        report.already
    );
    if cli.copy_legacy_readings {
        let store = crate::store::CassandraStore::connect(&config).await?;
        let copied = store.copy_legacy_readings().await?;
        println!("copied {copied} readings from readings_by_meter into the tables of migration 6");
    }
    Ok(())
}
