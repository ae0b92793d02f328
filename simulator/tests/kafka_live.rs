//! The live aggregator on Kafka, against a real broker: meters post through the real meter
//! service (one `readings.v1` message per request, repeats and corrections among them) into
//! a topic of four partitions; `simulator sink` stores the readings and `simulator live`
//! keeps the slots. The aggregator is stopped with SIGTERM and killed with -9 mid-load, and
//! its figures end equal, to the micro-kWh, to the same slots computed from the stored
//! readings.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use chrono::Utc;
use iot_common::auth::MeterTokens;
use iot_common::server::HttpLimits;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_kafka::KafkaConfig;
use iot_kafka::test_broker::TestBroker;
use iot_meter::IngestConfig;
use iot_meter::service::MeterConfig;
use iot_simulator::acked_load::{Target, terminate};
use iot_simulator::live_check::{
    assert_live_equals_readings, distinct_readings, meters, post_rounds, rounds_available,
    wait_rounds,
};
use iot_testkit::KillOnDrop;

fn simulator(what: &str, broker: &TestBroker, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg(what)
        .env("IOT_KAFKA_BROKERS", broker.brokers())
        .env("IOT_KAFKA_PARTITIONS", "4")
        .env("IOT_DATA_DIR", dir)
        .env("IOT_INTERNAL_ADDR", "127.0.0.1:0")
        .env("IOT_LIVE_FLUSH_MS", "500")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start `simulator {what}`: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_figures_equal_the_stored_readings_after_sigterm_and_kill_dash_nine() {
    let Some(broker) = TestBroker::start("live aggregator on Kafka") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        SqliteStore::open(&dir.path().join("store.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let fleet = meters("LIVEK", 12, &["E09000001", "E09000007", "E09000033"]);
    store
        .upsert_meters(&fleet)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tokens =
        MeterTokens::new("live-test-secret-of-32-bytes-or-more").unwrap_or_else(|e| panic!("{e}"));
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
    .unwrap_or_else(|e| panic!("{e}"));
    meter
        .bus
        .ensure_topics()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _sink = KillOnDrop(simulator("sink", &broker, dir.path()));
    let mut live = simulator("live", &broker, dir.path());

    let rounds = 60.min(rounds_available(Utc::now()));
    let done = Arc::new(AtomicUsize::new(0));
    let with_tokens = fleet
        .iter()
        .map(|m| (m.clone(), tokens.issue(&m.meter_id)))
        .collect();
    let load = tokio::spawn(post_rounds(
        Target::new(&format!("http://{}", meter.external)),
        with_tokens,
        rounds,
        done.clone(),
    ));
    wait_rounds(&done, rounds / 3).await;
    terminate(&mut live, Duration::from_secs(20)).await;
    live = simulator("live", &broker, dir.path());
    wait_rounds(&done, 2 * rounds / 3).await;
    // Let this aggregator take part of the load before it dies.
    tokio::time::sleep(Duration::from_secs(3)).await;
    live.kill().unwrap_or_else(|e| panic!("{e}"));
    live.wait().unwrap_or_else(|e| panic!("{e}"));
    let live = KillOnDrop(simulator("live", &broker, dir.path()));
    load.await.unwrap_or_else(|e| panic!("{e}"));

    assert_live_equals_readings(
        &store,
        &fleet,
        distinct_readings(&fleet, rounds),
        Duration::from_secs(120),
    )
    .await;
    drop(live);
    meter.service.stop(Duration::from_secs(5)).await;
}
