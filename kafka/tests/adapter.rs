//! The Kafka adapter against a real Kafka-protocol broker (see `iot_kafka::test_broker`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iot_common::Reading;
use iot_common::bus::{Bus, Consumer};
use iot_common::metrics::Metrics;
use iot_kafka::test_broker::{TestBroker, sample_readings};
use iot_kafka::{KafkaBus, KafkaConfig};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::Instant;

fn bus(broker: &TestBroker, partitions: i32) -> (KafkaBus, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let config = KafkaConfig {
        partitions,
        session_timeout: Duration::from_secs(6),
        ..broker.config()
    };
    (KafkaBus::new(config, metrics.clone()).unwrap(), metrics)
}

/// Polls until `n` readings came or a minute passed.
async fn take(consumer: &mut dyn Consumer, n: usize) -> Vec<Reading> {
    let until = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < until {
        match consumer
            .poll(n - got.len(), Duration::from_millis(500))
            .await
        {
            Ok(batch) => got.extend(batch),
            Err(e) => eprintln!("poll: {e}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_round_trip_in_order_per_meter_and_commits_stick() {
    let Some(broker) = TestBroker::start("kafka round trip") else {
        return;
    };
    let (bus, _) = bus(&broker, 3);
    bus.ensure_topics().await.unwrap();
    bus.ensure_topics().await.expect("existing topics are fine");
    bus.ping().await.unwrap();

    let sent = sample_readings(5, 60);
    for chunk in sent.chunks(100) {
        bus.publish(chunk).await.unwrap();
    }
    let mut consumer = bus.subscribe("round-trip").await.unwrap();
    let got = take(consumer.as_mut(), sent.len()).await;
    assert_eq!(got.len(), sent.len(), "every published reading is consumed");
    let mut by_meter: HashMap<&str, Vec<&Reading>> = HashMap::new();
    for r in &got {
        by_meter.entry(&r.meter_id).or_default().push(r);
    }
    for (meter, rs) in &by_meter {
        let expected: Vec<&Reading> = sent.iter().filter(|r| r.meter_id == *meter).collect();
        assert_eq!(rs, &expected, "meter {meter}: same readings, same order");
    }
    consumer.commit().await.unwrap();
    drop(consumer);

    // A new member of the group resumes after the commit: only new readings arrive.
    let later = vec![Reading {
        meter_id: "LATE".parse().unwrap(),
        ..sent[0].clone()
    }];
    bus.publish(&later).await.unwrap();
    let mut consumer = bus.subscribe("round-trip").await.unwrap();
    let got = take(consumer.as_mut(), 1).await;
    assert_eq!(got, later);
    let extra = consumer.poll(10, Duration::from_secs(2)).await.unwrap();
    assert!(extra.is_empty(), "nothing committed comes back: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_rest_arrive() {
    let Some(broker) = TestBroker::start("kafka dead letters") else {
        return;
    };
    let (bus, metrics) = bus(&broker, 1);
    bus.ensure_topics().await.unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let good = r#"{"meter_id":"M1","ts":"2026-11-01T00:00:00Z","kwh":0.5}"#;
    let good2 = r#"{"meter_id":"M1","ts":"2026-11-01T00:30:00Z","kwh":0.25}"#;
    let messages: [(&str, &str, Option<&str>); 5] = [
        ("M1", good, None),
        ("M1", "{not json", None),
        (
            "M1",
            r#"{"meter_id":"M1","ts":"2026-11-01T01:00:00Z","kwh":-3}"#,
            None,
        ),
        ("M1", good, Some("reading.v9")),
        ("M1", good2, Some("reading.v1")),
    ];
    for (key, payload, schema) in messages {
        let mut record = FutureRecord::to("meter-readings").key(key).payload(payload);
        if let Some(schema) = schema {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "iot-schema",
                value: Some(schema),
            }));
        }
        producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let mut consumer = bus.subscribe("dlq-test").await.unwrap();
    let got = take(consumer.as_mut(), 2).await;
    assert_eq!(
        got.iter().map(|r| r.kwh).collect::<Vec<_>>(),
        [0.5, 0.25],
        "the valid readings around the poison arrive"
    );
    consumer.commit().await.unwrap();
    assert_eq!(metrics.dead_letters.get(), 3);

    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&["meter-readings-dlq"]).unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        let header = |name: &str| {
            msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        let source = header("iot-dlq-source").expect("source header");
        assert!(source.starts_with("meter-readings/0/"), "{source}");
        assert_eq!(msg.key(), Some(&b"M1"[..]), "the key is kept");
        reasons.push(header("iot-dlq-reason").expect("reason header"));
    }
    assert!(reasons[0].contains("not valid JSON"), "{reasons:?}");
    assert!(reasons[1].contains("kwh"), "{reasons:?}");
    assert!(reasons[2].contains("reading.v9"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_a_group_split_the_partitions() {
    let Some(broker) = TestBroker::start("kafka group split") else {
        return;
    };
    let (bus, _) = bus(&broker, 4);
    bus.ensure_topics().await.unwrap();
    let sent = sample_readings(40, 25);
    let seen: Arc<Mutex<HashSet<(iot_common::domain::MeterId, i64)>>> = Arc::default();
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut consumer = bus.subscribe("split").await.unwrap();
        let (seen, total) = (seen.clone(), sent.len());
        members.push(tokio::spawn(async move {
            let mut mine = 0;
            let until = Instant::now() + Duration::from_secs(90);
            while seen.lock().unwrap().len() < total && Instant::now() < until {
                let batch = consumer
                    .poll(200, Duration::from_millis(300))
                    .await
                    .unwrap_or_default();
                mine += batch.len();
                seen.lock()
                    .unwrap()
                    .extend(batch.iter().map(|r| (r.meter_id.clone(), r.ts.timestamp())));
                consumer.commit().await.ok();
            }
            mine
        }));
    }
    // Publish once both have joined, so the work is split rather than raced for.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for chunk in sent.chunks(250) {
        bus.publish(chunk).await.unwrap();
    }
    let mut counts = Vec::new();
    for m in members {
        counts.push(m.await.unwrap());
    }
    assert_eq!(seen.lock().unwrap().len(), sent.len(), "nothing lost");
    assert!(
        counts.iter().all(|&c| c > 0),
        "both members consumed: {counts:?}"
    );
}

/// A run of one meter's readings travels as `readings.v1` messages of at most 1,000: a poll
/// hands a message out whole when it fits, and one larger than the poll is handed out in
/// parts, the whole message coming again after a commit between them (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_meters_run_travels_in_few_messages_each_handed_out_whole() {
    let Some(broker) = TestBroker::start("kafka batch messages") else {
        return;
    };
    let (bus, _) = bus(&broker, 1);
    bus.ensure_topics().await.unwrap();
    let sent = sample_readings(1, 2500);
    bus.publish(&sent).await.unwrap();

    let mut whole = bus.subscribe("whole").await.unwrap();
    let first = loop {
        let got = whole.poll(1500, Duration::from_millis(500)).await.unwrap();
        if !got.is_empty() {
            break got;
        }
    };
    assert_eq!(
        first,
        sent[..1000],
        "the first message, whole, and not a part of the next"
    );

    let mut part = bus.subscribe("part").await.unwrap();
    let got = take(part.as_mut(), 600).await;
    assert_eq!(got, sent[..600]);
    part.commit().await.unwrap();
    drop(part);
    let mut next = bus.subscribe("part").await.unwrap();
    let got = take(next.as_mut(), sent.len()).await;
    assert_eq!(
        got, sent,
        "the split message comes again whole, then the rest, in order"
    );
    next.commit().await.unwrap();
    let extra = next.poll(5000, Duration::from_secs(2)).await.unwrap();
    assert!(extra.is_empty(), "nothing more: {}", extra.len());
}
