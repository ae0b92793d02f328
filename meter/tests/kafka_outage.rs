//! The meter on Kafka with the broker going away: 503 with Retry-After within the publish
//! deadline, never a hang; once the broker is back, ingest recovers by itself and every
//! reading that got a 202 is in the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use iot_common::Reading;
use iot_common::auth::MeterTokens;
use iot_common::bus::Bus;
use iot_common::metrics::Metrics;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_kafka::KafkaConfig;
use iot_kafka::test_broker::TestBroker;
use iot_meter::service::{MeterConfig, start};
use iot_simulator::{SinkConfig, run_sink};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(2);

fn reading(i: i64) -> Reading {
    let base = Utc::now().duration_trunc(TimeDelta::minutes(30)).unwrap() - TimeDelta::days(30);
    Reading {
        meter_id: "MAC000001".into(),
        ts: base + TimeDelta::minutes(30 * i),
        kwh: i as f64 / 100.0,
        interval_s: 1800,
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
        meter_secret: "outage-secret".into(),
        publish_timeout: DEADLINE,
        kafka: KafkaConfig {
            partitions: 2,
            ..KafkaConfig::new(&broker.brokers())
        },
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("store.sqlite")).unwrap());
    let stop = CancellationToken::new();
    let sink_bus: Arc<dyn Bus> = Arc::new(meter.bus.clone());
    let sink = tokio::spawn(run_sink(
        sink_bus,
        store.clone(),
        Arc::new(Metrics::new()),
        SinkConfig {
            group: "outage-sink".into(),
            ..SinkConfig::default()
        },
        stop.clone(),
    ));

    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/readings", meter.external);
    let token = MeterTokens::new(b"outage-secret").issue("MAC000001");
    let post = |i: i64| {
        client
            .post(&url)
            .bearer_auth(&token)
            .json(&reading(i))
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
            accepted.push(reading(i));
        }
        i += 1;
    }
    let wait_stored = |n: usize| {
        let store = store.clone();
        async move {
            let until = Instant::now() + Duration::from_secs(90);
            while store.summary().await.unwrap().readings < n as u64 {
                assert!(
                    Instant::now() < until,
                    "accepted readings never reached the store"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_stored(accepted.len()).await;

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

    // Back, empty (the test broker keeps its data in memory): the meter recreates the topics.
    broker.resume();
    let until = Instant::now() + Duration::from_secs(90);
    let mut after = 0;
    while after < 20 {
        assert!(
            Instant::now() < until,
            "ingest did not recover after the broker returned"
        );
        if post(i).await.unwrap().status() == 202 {
            accepted.push(reading(i));
            after += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        i += 1;
    }
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 200);
    wait_stored(accepted.len()).await;
    let stored = store
        .meter_readings("MAC000001", reading(0).ts, reading(i).ts, 10_000)
        .await
        .unwrap();
    for r in &accepted {
        assert!(stored.contains(r), "accepted but missing: {r:?}");
    }
    stop.cancel();
    sink.await.unwrap().unwrap();
    meter.service.stop(Duration::from_secs(5)).await;
}
