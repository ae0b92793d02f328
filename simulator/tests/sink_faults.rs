//! The sink when polls fail or a shutdown comes while a batch is filling: it writes what it
//! was handed and commits exactly that. The bus is the real embedded log behind a test double
//! that fails or holds polls on cue, which the log cannot be made to do at a chosen poll.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use iot_common::Reading;
use iot_common::bus::Bus;
use iot_common::bus::double::FaultyBusDouble;
use iot_common::bus::sqlite_log::SqliteLog;
use iot_common::metrics::Metrics;
use iot_common::store::Store;
use iot_common::store::double::FaultyStoreDouble;
use iot_common::store::sqlite::SqliteStore;
use iot_simulator::sink::SinkError;
use iot_simulator::{SinkConfig, run_sink};
use tokio_util::sync::CancellationToken;

struct Rig {
    log: SqliteLog,
    store: SqliteStore,
    sent: Vec<Reading>,
    _dir: tempfile::TempDir,
}

/// A log holding 1,000 readings of 10 meters, each with a value of its own, and a store.
async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open(&dir.path().join("bus.sqlite")).unwrap();
    let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let sent: Vec<Reading> = (0..1000)
        .map(|i| Reading {
            meter_id: format!("m{}", i % 10).parse().unwrap(),
            ts: t0 + chrono::Duration::minutes(30 * (i / 10)),
            kwh: i as f64 / 1000.0,
            interval_s: 1800,
        })
        .collect();
    log.publish(&sent).await.unwrap();
    Rig {
        log,
        store,
        sent,
        _dir: dir,
    }
}

impl Rig {
    fn sink(&self, bus: Arc<dyn Bus>, shutdown: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let config = SinkConfig {
            max_batch: 300,
            ..SinkConfig::default()
        };
        let (store, stop) = (Arc::new(self.store.clone()), shutdown.clone());
        tokio::spawn(async move {
            run_sink(bus, store, Arc::new(Metrics::new()), config, stop)
                .await
                .unwrap();
        })
    }

    /// Every stored reading, by meter then time.
    async fn stored(&self) -> Vec<Reading> {
        let (from, to) = (
            Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
        );
        let mut all = Vec::new();
        for m in 0..10 {
            all.extend(
                self.store
                    .meter_readings(&format!("m{m}").parse().unwrap(), from, to, 10_000)
                    .await
                    .unwrap(),
            );
        }
        all
    }

    fn sent_sorted(&self, first: usize) -> Vec<Reading> {
        let mut v = self.sent[..first].to_vec();
        v.sort_by(|a, b| (&a.meter_id, a.ts).cmp(&(&b.meter_id, b.ts)));
        v
    }

    /// Runs a sink on `bus` until the log is empty (15 s at most) and returns what the store
    /// then holds.
    async fn drain(&self, bus: Arc<dyn Bus>) -> Vec<Reading> {
        let shutdown = CancellationToken::new();
        let sink = self.sink(bus, &shutdown);
        for _ in 0..300 {
            if self.log.backlog().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        sink.await.unwrap();
        self.stored().await
    }
}

#[tokio::test]
async fn a_poll_failing_after_readings_were_handed_out_loses_none_of_them() {
    let rig = rig().await;
    let bus = FaultyBusDouble::new(rig.log.clone());
    // Batches fill over several polls of 50, and every second poll fails.
    bus.faults.chunk.store(50, Ordering::SeqCst);
    bus.faults.fail_every.store(2, Ordering::SeqCst);
    let faults = bus.faults.clone();
    let stored = rig.drain(Arc::new(bus)).await;
    assert!(
        faults.polls.load(Ordering::SeqCst) >= 20,
        "polls failed along the way"
    );
    assert_eq!(
        stored,
        rig.sent_sorted(1000),
        "every reading stored with its value"
    );
}

#[tokio::test]
async fn a_shutdown_while_a_batch_fills_writes_it_and_commits_exactly_that() {
    let rig = rig().await;
    let bus = FaultyBusDouble::new(rig.log.clone());
    // The first poll hands out 50 readings; the second is still waiting at the shutdown.
    bus.faults.chunk.store(50, Ordering::SeqCst);
    bus.faults.hang_from.store(2, Ordering::SeqCst);
    let faults = bus.faults.clone();
    let shutdown = CancellationToken::new();
    let sink = rig.sink(Arc::new(bus), &shutdown);
    for _ in 0..200 {
        if faults.polls.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        faults.polls.load(Ordering::SeqCst),
        2,
        "the second poll is waiting"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), sink)
        .await
        .expect("the sink stops promptly on shutdown")
        .unwrap();
    assert_eq!(
        rig.stored().await,
        rig.sent_sorted(50),
        "the 50 readings it held are written"
    );
    assert_eq!(
        rig.log.backlog().await.unwrap(),
        950,
        "exactly what was written is committed"
    );
    assert_eq!(
        rig.drain(Arc::new(rig.log.clone())).await,
        rig.sent_sorted(1000),
        "the next start stores the rest"
    );
}

/// A store that refuses the writes (no permission) is not an outage to wait out: the sink
/// stops with the reason at once and commits nothing, so a sink that can write (here, the
/// same store once allowed) later stores every reading.
#[tokio::test]
async fn a_refused_write_stops_the_sink_and_leaves_its_batch_in_the_bus() {
    let rig = rig().await;
    let refusing = FaultyStoreDouble::new(rig.store.clone());
    refusing.refusing_writes.store(true, Ordering::SeqCst);
    let stopped = tokio::time::timeout(
        Duration::from_secs(15),
        run_sink(
            Arc::new(rig.log.clone()),
            Arc::new(refusing),
            Arc::new(Metrics::new()),
            SinkConfig::default(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the sink stops by itself");
    match stopped {
        Err(SinkError::StoreRefused(e)) => assert!(e.to_string().contains("refuses"), "{e}"),
        other => panic!("expected StoreRefused, got {other:?}"),
    }
    assert!(rig.stored().await.is_empty(), "nothing written");
    assert_eq!(
        rig.drain(Arc::new(rig.log.clone())).await,
        rig.sent_sorted(1000),
        "nothing was committed: the next sink gets and stores every reading"
    );
}
