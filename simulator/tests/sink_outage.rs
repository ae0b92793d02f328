//! The sink through a store outage: it retries, commits only after a write succeeded, and
//! every reading arrives. The flaky store is a test double wrapping the real SQLite store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use iot_common::Reading;
use iot_common::bus::Bus;
use iot_common::bus::sqlite_log::SqliteLog;
use iot_common::metrics::Metrics;
use iot_common::store::Store;
use iot_common::store::double::FaultyStoreDouble;
use iot_common::store::sqlite::SqliteStore;
use iot_simulator::{SinkConfig, run_sink};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_store_outage_delays_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bus = SqliteLog::open(&dir.path().join("bus.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let inner =
        SqliteStore::open(&dir.path().join("store.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(FaultyStoreDouble::new(inner.clone()));
    store.failing_writes.store(3, Ordering::SeqCst);
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let readings: Vec<Reading> = (0..1000)
        .map(|i| Reading {
            meter_id: format!("m{}", i % 10).parse().unwrap(),
            ts: t0 + chrono::Duration::minutes(30 * (i / 10)),
            kwh: 0.1,
            interval_s: 1800,
        })
        .collect();
    bus.publish(&readings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let config = SinkConfig {
        max_batch: 300,
        ..SinkConfig::default()
    };
    let sink = tokio::spawn(run_sink(
        Arc::new(bus.clone()),
        store.clone(),
        metrics.clone(),
        config,
        shutdown.clone(),
    ));
    let mut stored = 0;
    for _ in 0..200 {
        stored = inner.summary().await.map(|s| s.readings).unwrap_or(0);
        if stored == 1000 && bus.backlog().await.unwrap_or(1) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    let _ = sink.await;
    assert_eq!(stored, 1000);
    assert_eq!(
        bus.backlog().await.unwrap_or(1),
        0,
        "everything committed after the outage"
    );
    assert!(metrics.render().contains("iot_sink_store_errors_total 3"));
}
