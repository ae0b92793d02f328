//! The Cassandra node tests run against: `IOT_TEST_CASSANDRA` names it (host or host:port,
//! e.g. the compose Cassandra at `127.0.0.1:9042`). Without it the tests that need a node say
//! so loudly and end early; with `IOT_REQUIRE_CASSANDRA` set they fail instead.

use std::io::Write;
use std::time::Duration;

use crate::client::Client;
use crate::config::CassandraConfig;
use crate::store::CassandraStore;

/// The keyspace this test binary's run uses: its own (`iot_test_<unix time>_<pid>`), so runs
/// in parallel against one node, and leftovers of earlier runs, never meet; it never touches
/// `iot_demo`'s data. `IOT_TEST_CASSANDRA_KEYSPACE` names a fixed one instead.
pub fn keyspace() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("IOT_TEST_CASSANDRA_KEYSPACE").unwrap_or_else(|_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{RUN_PREFIX}{now}_{}", std::process::id())
        })
    })
    .clone()
}

const RUN_PREFIX: &str = "iot_test_";
/// Test keyspaces older than this are dropped by the next run that starts.
const STALE_AFTER_S: u64 = 86_400;

/// Drops the keyspaces of test runs that started over a day ago (a run cannot drop its own
/// when it ends: the test harness has no hook for that).
async fn drop_stale_keyspaces(client: &Client) {
    let Ok(result) = client
        .query(
            "list keyspaces",
            "SELECT keyspace_name FROM system_schema.keyspaces",
            (),
        )
        .await
    else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (name,) in crate::client::rows::<(String,)>(result).unwrap_or_default() {
        let started = name
            .strip_prefix(RUN_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if started.is_some_and(|t| t + STALE_AFTER_S < now) {
            let _ = client
                .query(
                    "drop stale test keyspace",
                    &format!("DROP KEYSPACE IF EXISTS {name}"),
                    (),
                )
                .await;
        }
    }
}

/// The node's settings, or `None` (after a loud notice) when no node is named.
pub fn config(test: &str) -> Option<CassandraConfig> {
    let nodes = std::env::var("IOT_TEST_CASSANDRA").unwrap_or_default();
    if nodes.trim().is_empty() {
        if std::env::var_os("IOT_REQUIRE_CASSANDRA").is_some() {
            panic!("{test}: IOT_REQUIRE_CASSANDRA is set but IOT_TEST_CASSANDRA names no node");
        }
        // Straight to the process's stderr: the test harness captures `eprintln!` of
        // passing tests, and a skip must show in every run's output.
        let _ = writeln!(
            std::io::stderr(),
            "!!! SKIPPED {test}: needs a Cassandra node; set IOT_TEST_CASSANDRA=127.0.0.1:9042 \
             (the compose Cassandra: README, \"Cassandra tests\") !!!"
        );
        return None;
    }
    match CassandraConfig::new(&nodes, &keyspace()) {
        Ok(c) => Some(c),
        Err(e) => panic!("{test}: IOT_TEST_CASSANDRA: {e}"),
    }
}

/// Single-node replication for test keyspaces.
pub fn replication() -> String {
    "{'class': 'SimpleStrategy', 'replication_factor': 1}".to_owned()
}

/// A store on the test keyspace, migrated first (concurrent tests take turns on the
/// migration lock; the first of the run also drops stale runs' keyspaces).
pub async fn store(test: &str) -> Option<CassandraStore> {
    let config = config(test)?;
    let client = Client::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    static CLEANED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !CLEANED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        drop_stale_keyspaces(&client).await;
    }
    crate::migrate::migrate(
        &client,
        iot_migrations::CQL,
        &config.keyspace,
        &replication(),
        None,
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|e| panic!("{test}: migrate: {e}"));
    Some(
        CassandraStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{test}: {e}")),
    )
}
