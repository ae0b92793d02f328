//! The sink through a store outage: it retries, commits only after a write succeeded, and
//! every reading arrives. The flaky store is a test double wrapping the real SQLite store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use iot_common::bus::Bus;
use iot_common::bus::sqlite_log::SqliteLog;
use iot_common::metrics::Metrics;
use iot_common::store::sqlite::SqliteStore;
use iot_common::store::{ScanPage, Store, StoreError, StoreSummary};
use iot_common::{Meter, Reading, RegionProfile, Run};
use iot_simulator::{SinkConfig, run_sink};
use tokio_util::sync::CancellationToken;

/// Test double: fails the first `failures` reading writes, then delegates.
struct FlakyStoreDouble {
    inner: SqliteStore,
    failures: AtomicUsize,
}

#[async_trait]
impl Store for FlakyStoreDouble {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn upsert_meters(&self, m: &[Meter]) -> Result<(), StoreError> {
        self.inner.upsert_meters(m).await
    }
    async fn meter(&self, id: &str) -> Result<Option<Meter>, StoreError> {
        self.inner.meter(id).await
    }
    async fn meters(&self) -> Result<Vec<Meter>, StoreError> {
        self.inner.meters().await
    }
    async fn write_readings(&self, r: &[Reading]) -> Result<(), StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("double: outage".into()));
        }
        self.inner.write_readings(r).await
    }
    async fn meter_readings(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.inner.meter_readings(id, from, to, limit).await
    }
    async fn scan_readings(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.inner.scan_readings(from, to, cursor, limit).await
    }
    async fn put_profiles(&self, p: &[RegionProfile]) -> Result<(), StoreError> {
        self.inner.put_profiles(p).await
    }
    async fn profiles(&self) -> Result<Vec<RegionProfile>, StoreError> {
        self.inner.profiles().await
    }
    async fn put_run(&self, r: &Run) -> Result<(), StoreError> {
        self.inner.put_run(r).await
    }
    async fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        self.inner.run(id).await
    }
    async fn runs(&self, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.inner.runs(limit).await
    }
    async fn summary(&self) -> Result<StoreSummary, StoreError> {
        self.inner.summary().await
    }
}

#[tokio::test]
async fn a_store_outage_delays_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bus = SqliteLog::open(&dir.path().join("bus.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let inner =
        SqliteStore::open(&dir.path().join("store.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(FlakyStoreDouble {
        inner: inner.clone(),
        failures: AtomicUsize::new(3),
    });
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let readings: Vec<Reading> = (0..1000)
        .map(|i| Reading {
            meter_id: format!("m{}", i % 10),
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
