//! The sink on Kafka, against a real Kafka-protocol broker: the `simulator sink` process
//! killed with SIGKILL, or stopped with SIGTERM again and again, in the middle of the load
//! loses nothing and stores nothing twice; a dead-letter topic that refuses a poison message
//! stops the sink on it without skipping anything; a reading dated ahead of the sink's clock
//! is stored, not judged again.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use iot_common::Reading;
use iot_common::auth::MeterTokens;
use iot_common::bus::Bus;
use iot_common::metrics::Metrics;
use iot_common::server::HttpLimits;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_kafka::bus::{produce_readings, producer_config};
use iot_kafka::message::{SCHEMA_V1, encode};
use iot_kafka::test_broker::{TestBroker, sample_readings};
use iot_kafka::{KafkaBus, KafkaConfig};
use iot_meter::IngestConfig;
use iot_meter::service::MeterConfig;
use iot_simulator::acked_load::{
    AckedLoad, Target, assert_all_stored, stored, terminate, wait_stored,
};
use iot_simulator::{SinkConfig, run_sink};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

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

async fn wait_for(store: &dyn Store, what: &str, done: impl Fn(u64) -> bool) -> u64 {
    wait_stored(store, what, Duration::from_secs(120), done).await
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
            ..broker.config()
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
                &meter.parse().unwrap(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_stopped_with_sigterm_again_and_again_under_load_keeps_every_202() {
    let Some(broker) = TestBroker::start("sink SIGTERM under load") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = MeterTokens::new("sigterm-test-secret-of-32-bytes-or-more").unwrap();
    let meter = iot_meter::service::start(MeterConfig {
        external_addr: ([127, 0, 0, 1], 0).into(),
        internal_addr: ([127, 0, 0, 1], 0).into(),
        tokens: tokens.clone(),
        revocations: None,
        revocation_refresh: Duration::from_secs(2),
        http: HttpLimits::default(),
        ingest: IngestConfig::default(),
        kafka: KafkaConfig {
            partitions: 4,
            ..broker.config()
        },
    })
    .await
    .unwrap();
    meter.bus.ensure_topics().await.unwrap();
    // Four meters posting 48 readings a request through the real meter, concurrently.
    let target = Target::new(&format!("http://{}", meter.external));
    let load = AckedLoad::start(target, &tokens, "SIG", 4, 48);
    let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    let mut child = sink(&broker, dir.path());
    for round in 0..8 {
        // Mid-load: this sink has joined and is storing.
        let before = stored(&store).await;
        wait_for(&store, &format!("round {round}: sink storing"), |n| {
            n >= before + 500
        })
        .await;
        terminate(&mut child, Duration::from_secs(20)).await;
        child = sink(&broker, dir.path());
    }
    let accepted = load.stop().await;
    assert!(accepted.len() > 4_000, "the load ran: {}", accepted.len());
    assert_all_stored(&store, &accepted, Duration::from_secs(90)).await;
    terminate(&mut child, Duration::from_secs(20)).await;
    meter.service.stop(Duration::from_secs(5)).await;
}

/// A dead-letter topic that was never created: the broker refuses messages for it.
const REFUSED_TOPIC: &str = "meter-readings-dlq-missing";

/// A bus on `broker` with one partition (so order is total) and the given dead-letter topic.
fn bus_with_dlq(broker: &TestBroker, dlq_topic: &str) -> (KafkaBus, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let config = KafkaConfig {
        partitions: 1,
        dlq_topic: dlq_topic.into(),
        session_timeout: Duration::from_secs(6),
        ..broker.config()
    };
    (KafkaBus::new(config, metrics.clone()).unwrap(), metrics)
}

/// Runs an in-process sink on `bus` into `store`; cancel the token to stop it.
fn run(
    bus: &KafkaBus,
    store: &SqliteStore,
    metrics: Arc<Metrics>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let config = SinkConfig {
        group: "dlq-outage".into(),
        max_batch: 100,
        ..SinkConfig::default()
    };
    let task = tokio::spawn(run_sink(
        Arc::new(bus.clone()),
        Arc::new(store.clone()),
        metrics,
        config,
        stop.clone(),
    ));
    (
        stop,
        tokio::spawn(async move { task.await.unwrap().unwrap() }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_outage_mid_batch_stops_the_sink_on_the_poison_and_skips_nothing() {
    let Some(broker) = TestBroker::start("sink dead-letter outage") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    let (refused, refused_metrics) = bus_with_dlq(&broker, REFUSED_TOPIC);
    let (good, good_metrics) = bus_with_dlq(&broker, "meter-readings-dlq");
    good.ensure_topics().await.unwrap();
    // Ten readings, a message that is not a reading, ten more: one meter, one partition.
    let sent = sample_readings(1, 20);
    let producer: FutureProducer = producer_config(good.config()).create().unwrap();
    let encoded: Vec<Vec<u8>> = sent.iter().map(encode).collect();
    let mut messages: Vec<(&str, &[u8], &str)> = encoded
        .iter()
        .map(|p| ("M000", p.as_slice(), SCHEMA_V1))
        .collect();
    messages.insert(10, ("M000", b"{not json", SCHEMA_V1));
    produce_readings(&producer, "meter-readings", messages)
        .await
        .unwrap();

    let (stop, sink) = run(&refused, &store, refused_metrics.clone());
    wait_for(&store, "the readings before the poison", |n| n >= 10).await;
    // It keeps trying the dead-letter topic, and stores nothing past the poison meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stored(&store).await,
        10,
        "nothing past the poison is handed out"
    );
    assert_eq!(refused_metrics.dead_letters.get(), 0);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .unwrap()
        .unwrap();

    // The operator mends the dead-letter topic: the next sink of the group takes over from
    // the poison on.
    let (stop, sink) = run(&good, &store, good_metrics.clone());
    wait_for(&store, "the readings after the poison", |n| n >= 20).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        good_metrics.dead_letters.get(),
        1,
        "the poison is a dead letter, once"
    );
    assert_eq!(stored(&store).await, 20);
    let got = store
        .meter_readings(
            &"M000".parse().unwrap(),
            sent[0].ts,
            sent[19].ts + TimeDelta::hours(1),
            100,
        )
        .await
        .unwrap();
    assert_eq!(got, sent, "every reading with its value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_dated_ahead_of_the_sinks_clock_is_stored_not_judged_again() {
    let Some(broker) = TestBroker::start("sink clock") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    let (bus, metrics) = bus_with_dlq(&broker, "meter-readings-dlq");
    bus.ensure_topics().await.unwrap();
    // A meter whose clock runs ahead of the sink's: the meter accepted these by its own
    // clock (within its 5-minute skew), and the sink's clock is an hour and a day behind.
    let ahead = (Utc::now() + TimeDelta::hours(1))
        .duration_trunc(TimeDelta::minutes(30))
        .unwrap();
    let readings: Vec<Reading> = [TimeDelta::zero(), TimeDelta::days(1)]
        .into_iter()
        .map(|d| Reading {
            meter_id: "AHEAD".parse().unwrap(),
            ts: ahead + d,
            kwh: 0.3,
            interval_s: 1800,
        })
        .collect();
    bus.publish(&readings).await.unwrap();
    let (stop, sink) = run(&bus, &store, metrics.clone());
    wait_for(&store, "readings dated ahead", |n| n >= 2).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(metrics.dead_letters.get(), 0, "nothing dead-lettered");
    let got = store
        .meter_readings(
            &"AHEAD".parse().unwrap(),
            ahead,
            ahead + TimeDelta::days(2),
            10,
        )
        .await
        .unwrap();
    assert_eq!(got, readings);
}
