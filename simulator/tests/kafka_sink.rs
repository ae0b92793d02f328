//! The `simulator sink` process on Kafka, against a real Kafka-protocol broker: a sink
//! killed with SIGKILL in the middle of the load loses nothing and stores nothing twice.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use iot_common::bus::Bus;
use iot_common::metrics::Metrics;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_kafka::test_broker::{TestBroker, sample_readings};
use iot_kafka::{KafkaBus, KafkaConfig};
use tokio::time::Instant;

fn sink(broker: &TestBroker, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("sink")
        .env("IOT_KAFKA_BROKERS", broker.brokers())
        .env("IOT_KAFKA_PARTITIONS", "4")
        .env("IOT_DATA_DIR", dir)
        .env("IOT_INTERNAL_ADDR", "127.0.0.1:0")
        .env("IOT_SINK_BATCH", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start `simulator sink`")
}

async fn stored(store: &dyn Store) -> u64 {
    store.summary().await.map(|s| s.readings).unwrap_or(0)
}

async fn wait_for(store: &dyn Store, what: &str, done: impl Fn(u64) -> bool) -> u64 {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let n = stored(store).await;
        if done(n) {
            return n;
        }
        assert!(Instant::now() < until, "{what}: only {n} readings stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_mid_load_loses_nothing_and_duplicates_nothing() {
    let Some(broker) = TestBroker::start("sink kill -9") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bus = KafkaBus::new(
        KafkaConfig {
            partitions: 4,
            ..KafkaConfig::new(&broker.brokers())
        },
        Arc::new(Metrics::new()),
    )
    .unwrap();
    bus.ensure_topics().await.unwrap();
    let sent = sample_readings(100, 400);
    let (first, second) = sent.split_at(sent.len() / 2);
    for chunk in first.chunks(2_000) {
        bus.publish(chunk).await.unwrap();
    }

    let mut a = sink(&broker, dir.path());
    // The test reads the same SQLite file the sinks write.
    let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    wait_for(&store, "first sink started writing", |n| n > 0).await;
    let load = {
        let (bus, second) = (bus.clone(), second.to_vec());
        tokio::spawn(async move {
            for chunk in second.chunks(2_000) {
                bus.publish(chunk).await.unwrap();
            }
        })
    };
    a.kill().unwrap();
    a.wait().unwrap();
    let at_kill = stored(&store).await;
    assert!(
        at_kill < sent.len() as u64,
        "the kill should land mid-load ({at_kill} of {} stored)",
        sent.len()
    );

    let mut b = sink(&broker, dir.path());
    load.await.unwrap();
    let n = wait_for(&store, "second sink finished", |n| n >= sent.len() as u64).await;
    b.kill().ok();
    b.wait().ok();
    assert_eq!(n, sent.len() as u64, "one row per reading");
    // Every value is the one sent.
    for meter in ["M000", "M042", "M099"] {
        let expected: Vec<_> = sent
            .iter()
            .filter(|r| r.meter_id == meter)
            .cloned()
            .collect();
        let got = store
            .meter_readings(
                meter,
                expected[0].ts,
                expected[expected.len() - 1].ts + chrono::Duration::hours(1),
                10_000,
            )
            .await
            .unwrap();
        assert_eq!(got, expected, "{meter}");
    }
}

#[test]
fn sink_refuses_to_start_without_kafka() {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("sink")
        .env_remove("IOT_KAFKA_BROKERS")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IOT_KAFKA_BROKERS"), "{err}");
}
