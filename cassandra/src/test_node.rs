//! The Cassandra node tests run against: `IOT_TEST_CASSANDRA` names it (host or host:port,
//! e.g. the node of `tests/nodes/run cassandra` at `127.0.0.1:9042`). Without it the tests that
//! need a node say so loudly and end early; with `CI` or `IOT_REQUIRE_CASSANDRA` set they fail.

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
        iot_common::test_services::missing(
            test,
            "needs a Cassandra node: start one with `tests/nodes/run cassandra` and set \
             IOT_TEST_CASSANDRA=127.0.0.1:9042 (README, \"Tests\")",
            Some("IOT_REQUIRE_CASSANDRA"),
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
    Some(migrated_store(test, &config).await)
}

/// A Cassandra node of one test's own (`tests/nodes/run`), on a loopback address of its
/// own, for tests that kill it mid-load; its data stays in its directory across restarts.
pub struct PrivateNode {
    dir: tempfile::TempDir,
    addr: std::net::Ipv4Addr,
}

impl PrivateNode {
    /// Starts the node on `addr` (port 9042) and waits until it answers a CQL query, or
    /// says loudly that it cannot (a failure under CI or `IOT_REQUIRE_CASSANDRA`).
    pub fn start(test: &str, addr: std::net::Ipv4Addr) -> Option<Self> {
        if let Err(why) = iot_common::test_services::java_runs() {
            iot_common::test_services::missing(
                test,
                &format!("no Cassandra node: {why}"),
                Some("IOT_REQUIRE_CASSANDRA"),
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("iot-cassandra-")
            .tempdir()
            .unwrap_or_else(|e| panic!("{test}: a node directory: {e}"));
        let node = Self { dir, addr };
        node.resume();
        Some(node)
    }

    /// Settings for the test keyspace on this node.
    pub fn config(&self) -> CassandraConfig {
        CassandraConfig::new(&format!("{}:9042", self.addr), &keyspace())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Kills the node at once (`kill -9`), as a crash would.
    pub fn kill(&self) {
        iot_common::test_services::kill_node(self.dir.path());
    }

    /// Starts it (again) on its data and waits until it answers.
    pub fn resume(&self) {
        iot_common::test_services::start_node(
            &["cassandra", "--addr", &self.addr.to_string()],
            self.dir.path(),
        );
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A store on `config`'s keyspace, migrated first.
pub async fn migrated_store(test: &str, config: &CassandraConfig) -> CassandraStore {
    let client = Client::connect(config)
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
    CassandraStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{test}: {e}"))
}
