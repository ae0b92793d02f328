//! The migrator against a real Cassandra node (IOT_TEST_CASSANDRA), in a keyspace of its own.

use std::time::Duration;

use iot_cassandra::client::Client;
use iot_cassandra::migrate::{MigrateError, migrate, verify};
use iot_cassandra::test_node;
use iot_migrations::Migration;

const V1: Migration = Migration {
    version: 1,
    name: "keyspace",
    sql: "CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = ${replication};",
};
const V2: Migration = Migration {
    version: 2,
    name: "table",
    sql: "CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY, v text);",
};
const V2_EDITED: Migration = Migration {
    version: 2,
    name: "table",
    sql: "CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY, v text, w text);",
};

#[tokio::test]
async fn twice_is_idempotent_concurrent_runs_agree_and_an_edited_file_is_refused() {
    let Some(mut config) = test_node::config("migrator") else {
        return;
    };
    config.keyspace = format!("iot_migrate_test_{:08x}", rand::random::<u32>());
    let ks = config.keyspace.clone();
    let files = [V1, V2];
    // Three migrators at once on an empty keyspace: one applies, the others wait and find
    // nothing left.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let config = config.clone();
        let ks = ks.clone();
        runs.push(tokio::spawn(async move {
            let client = Client::connect(&config).await.expect("connect");
            migrate(
                &client,
                &files,
                &ks,
                &test_node::replication(),
                None,
                Duration::from_secs(120),
            )
            .await
            .expect("migrate")
        }));
    }
    let mut applied_now = 0;
    for r in runs {
        applied_now += r.await.expect("join").applied.len();
    }
    assert_eq!(
        applied_now, 2,
        "each file applied exactly once across the migrators"
    );

    let client = Client::connect(&config).await.expect("connect");
    let again = migrate(
        &client,
        &files,
        &ks,
        &test_node::replication(),
        None,
        Duration::from_secs(30),
    )
    .await
    .expect("second run");
    assert!(again.applied.is_empty(), "a second run applies nothing");
    assert_eq!(again.already, 2);
    verify(&client, &files).await.expect("verify");

    match migrate(
        &client,
        &[V1, V2_EDITED],
        &ks,
        &test_node::replication(),
        None,
        Duration::from_secs(30),
    )
    .await
    {
        Err(MigrateError::Edited { version: 2, .. }) => {}
        other => panic!("an edited applied file must be refused, got {other:?}"),
    }
    client
        .session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .expect("drop test keyspace");
}

/// The shard count is fixed when the keyspace is made: a later migrate or a store asking for
/// another one is refused, one asking for none gets the keyspace's.
#[tokio::test]
async fn a_keyspace_keeps_the_region_shards_it_was_created_with() {
    let Some(mut config) = test_node::config("region shards are fixed") else {
        return;
    };
    config.keyspace = format!("iot_migrate_test_{:08x}", rand::random::<u32>());
    let ks = config.keyspace.clone();
    let client = Client::connect(&config).await.expect("connect");
    let migrate_with = |shards: Option<u32>| {
        let (client, ks) = (client.clone(), ks.clone());
        async move {
            migrate(
                &client,
                iot_migrations::CQL,
                &ks,
                &test_node::replication(),
                shards,
                Duration::from_secs(120),
            )
            .await
        }
    };
    migrate_with(Some(16)).await.expect("first migrate");
    migrate_with(None)
        .await
        .expect("a migrate naming no shards");
    match migrate_with(Some(32)).await {
        Err(MigrateError::Shards {
            asked: 32,
            stored: 16,
        }) => {}
        other => panic!("another shard count must be refused, got {other:?}"),
    }
    config.region_shards = Some(32);
    assert!(
        iot_cassandra::CassandraStore::connect(&config)
            .await
            .is_err(),
        "a store configured with other shards refuses to start"
    );
    config.region_shards = None;
    iot_cassandra::CassandraStore::connect(&config)
        .await
        .expect("a store naming no shards takes the keyspace's");
    client
        .session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .expect("drop test keyspace");
}
