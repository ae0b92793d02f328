//! The meter on Kafka with the broker going away: 503 with Retry-After within the publish
//! deadline, never a hang; once the broker is back, ingest recovers by itself and every
//! reading that got a 202 is in the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use iot_common::Reading;
use iot_common::auth::MeterTokens;
use iot_common::bus::Bus;
use iot_common::metrics::Metrics;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_kafka::KafkaConfig;
use iot_kafka::test_broker::TestBroker;
use iot_meter::IngestConfig;
use iot_meter::service::{MeterConfig, start};
use iot_simulator::{SinkConfig, run_sink};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use iot_testkit::secrets::METER_SECRET as SECRET;

const DEADLINE: Duration = Duration::from_secs(2);

/// Reading `i` of the test's meter, half-hourly from `base`.
fn reading(base: DateTime<Utc>, i: i64) -> Reading {
    Reading {
        meter_id: "MAC000001".parse().unwrap(),
        ts: base + TimeDelta::minutes(30 * i),
        kwh: i as f64 / 100.0,
        interval_s: 1800,
    }
}

/// A sink in its own task, with the token that stops it.
fn spawn_sink(
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
) -> (
    CancellationToken,
    JoinHandle<Result<(), iot_simulator::sink::SinkError>>,
) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_sink(
        bus,
        store,
        Arc::new(Metrics::new()),
        SinkConfig {
            group: "outage-sink".into(),
            ..SinkConfig::default()
        },
        stop.clone(),
    ));
    (stop, task)
}

/// Waits until every reading in `expected` is in the store.
async fn wait_stored(store: &dyn Store, base: DateTime<Utc>, expected: &[Reading]) {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let stored = store
            .meter_readings(
                &"MAC000001".parse().unwrap(),
                base,
                base + TimeDelta::days(365),
                10_000,
            )
            .await
            .unwrap();
        let missing: Vec<&Reading> = expected.iter().filter(|r| !stored.contains(r)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "accepted but missing from the store: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_answers_503_while_the_broker_is_down_and_loses_nothing_it_accepted() {
    let Some(mut broker) = TestBroker::start("meter broker outage") else {
        return;
    };
    let meter = start(MeterConfig {
        external_addr: ([127, 0, 0, 1], 0).into(),
        internal_addr: ([127, 0, 0, 1], 0).into(),
        tokens: MeterTokens::new(SECRET).unwrap(),
        revocations: None,
        revocation_refresh: Duration::from_secs(2),
        http: iot_common::server::HttpLimits::default(),
        ingest: IngestConfig {
            publish_timeout: DEADLINE,
            ..IngestConfig::default()
        },
        kafka: KafkaConfig {
            partitions: 2,
            ..broker.config()
        },
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("store.sqlite")).unwrap());
    let sink_bus: Arc<dyn Bus> = Arc::new(meter.bus.clone());
    let (stop, sink) = spawn_sink(sink_bus, store.clone());

    // Fixed once: a test that crosses a half hour must not shift its readings.
    let base = Utc::now().duration_trunc(TimeDelta::minutes(30)).unwrap() - TimeDelta::days(30);
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/readings", meter.external);
    let token = MeterTokens::new(SECRET)
        .unwrap()
        .issue(&"MAC000001".parse().unwrap());
    let post = |i: i64| {
        client
            .post(&url)
            .bearer_auth(&token)
            .json(&reading(base, i))
            .timeout(Duration::from_secs(30))
            .send()
    };
    let readyz = format!("http://{}/readyz", meter.internal);

    let mut accepted = Vec::new();
    let mut i = 0;
    // The topics are created in the background at start-up; then ingest works.
    let until = Instant::now() + Duration::from_secs(60);
    while accepted.len() < 20 {
        assert!(Instant::now() < until, "the meter never accepted readings");
        if post(i).await.unwrap().status() == 202 {
            accepted.push(reading(base, i));
        }
        i += 1;
    }
    wait_stored(store.as_ref(), base, &accepted).await;
    // The sink stays up through the outage: it waits for the broker and resumes.
    broker.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let res = post(i).await.expect("an answer, not a hang");
        let took = started.elapsed();
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
        assert!(
            took < DEADLINE + Duration::from_secs(3),
            "503 came after {took:?}, the deadline is {DEADLINE:?}"
        );
        i += 1;
    }
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 503);

    // Back on its own data: the topics and the sink's committed offsets are still there.
    broker.resume();
    let until = Instant::now() + Duration::from_secs(90);
    let mut after = 0;
    while after < 20 {
        assert!(
            Instant::now() < until,
            "ingest did not recover after the broker returned"
        );
        if post(i).await.unwrap().status() == 202 {
            accepted.push(reading(base, i));
            after += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        i += 1;
    }
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 200);
    wait_stored(store.as_ref(), base, &accepted).await;
    stop.cancel();
    sink.await.unwrap().unwrap();
    meter.service.stop(Duration::from_secs(5)).await;
}
