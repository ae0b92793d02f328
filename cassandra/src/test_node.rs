//! The Cassandra node tests run against: `IOT_TEST_CASSANDRA` names it (host or host:port,
//! e.g. the compose Cassandra at `127.0.0.1:9042`). Without it the tests that need a node say
//! so loudly and end early; with `IOT_REQUIRE_CASSANDRA` set they fail instead.

use std::io::Write;
use std::time::Duration;

use crate::client::Client;
use crate::config::CassandraConfig;
use crate::store::CassandraStore;

/// The keyspace tests use, so they never touch `iot_demo`'s data.
pub fn keyspace() -> String {
    std::env::var("IOT_TEST_CASSANDRA_KEYSPACE").unwrap_or_else(|_| "iot_demo_test".into())
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
/// migration lock).
pub async fn store(test: &str) -> Option<CassandraStore> {
    let config = config(test)?;
    let client = Client::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    crate::migrate::migrate(
        &client,
        iot_migrations::CQL,
        &config.keyspace,
        &replication(),
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
