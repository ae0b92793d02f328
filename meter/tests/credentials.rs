//! Meter credentials an operator controls, on real `meter` processes over a Kafka-protocol
//! broker: a revocation written to the store reaches every replica within seconds, and a
//! secret rotates without downtime (the previous secret's tokens work while it is configured
//! as previous, and not after).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use iot_common::auth::MeterTokens;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_kafka::test_broker::TestBroker;
use iot_testkit::{KillOnDrop, listening};
use tokio::time::Instant;

use iot_testkit::secrets::METER_SECRET as CURRENT;
const PREVIOUS: &str = "previous-meter-secret-of-thirty-two-byte";

struct Meter {
    _child: KillOnDrop,
    url: String,
}

fn meter(broker: &TestBroker, data: &Path, previous: Option<&str>) -> Meter {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    cmd.args([
        "--external-addr",
        "127.0.0.1:0",
        "--internal-addr",
        "127.0.0.1:0",
    ])
    .env("IOT_KAFKA_BROKERS", broker.brokers())
    .env("IOT_KAFKA_PARTITIONS", "2")
    .env("IOT_METER_SECRET", CURRENT)
    .env("IOT_DATA_DIR", data)
    .env("IOT_REVOCATION_REFRESH_MS", "1000")
    .env_remove("IOT_CASSANDRA_NODES")
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    match previous {
        Some(p) => cmd.env("IOT_METER_SECRET_PREVIOUS", p),
        None => cmd.env_remove("IOT_METER_SECRET_PREVIOUS"),
    };
    // Owned at once, so the process is reaped however this function ends.
    let mut child = KillOnDrop(cmd.spawn().unwrap_or_else(|e| panic!("spawn meter: {e}")));
    let (url, _) = listening(&mut child, "meter");
    Meter { _child: child, url }
}

/// Posts one reading of `meter_id` with `token`; the status.
async fn post(client: &reqwest::Client, url: &str, meter_id: &str, token: &str) -> u16 {
    let ts = (Utc::now() - TimeDelta::hours(2))
        .duration_trunc(TimeDelta::minutes(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::json!({"meter_id": meter_id, "ts": ts.to_rfc3339(), "kwh": 0.2});
    client
        .post(format!("{url}/api/v1/readings"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Posts until the answer is not a 503 (the topics being set up) or 30 s pass.
async fn settled(client: &reqwest::Client, url: &str, meter_id: &str, token: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = post(client, url, meter_id, token).await;
        if !matches!(status, 0 | 503) || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_meter_replica_within_5_s() {
    let Some(broker) = TestBroker::start("revocation across meter replicas") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        SqliteStore::open(&SqliteStore::path_in(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    let replicas = [
        meter(&broker, dir.path(), None),
        meter(&broker, dir.path(), None),
    ];
    let tokens = MeterTokens::new(CURRENT).unwrap_or_else(|e| panic!("{e}"));
    let client = reqwest::Client::new();
    let (stolen, other) = (
        tokens.issue(&"REV-1".parse().unwrap()),
        tokens.issue(&"REV-2".parse().unwrap()),
    );
    for r in &replicas {
        assert_eq!(settled(&client, &r.url, "REV-1", &stolen).await, 202);
    }

    // What `meters revoke` and `DELETE /internal/v1/meters/{id}` write.
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .revoke_meter(&"REV-1".parse().unwrap(), Utc::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let revoked = Instant::now();
    for r in &replicas {
        loop {
            let status = post(&client, &r.url, "REV-1", &stolen).await;
            if status == 401 {
                break;
            }
            assert_eq!(
                status, 202,
                "before the revocation arrives the token still works"
            );
            assert!(
                revoked.elapsed() < Duration::from_secs(5),
                "{} still takes the token after 5 s",
                r.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "{}: 401 {:?} after the revocation",
            r.url,
            revoked.elapsed()
        );
    }
    // Another meter is untouched, and a token issued after the revocation works again.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let reissued = tokens.issue(&"REV-1".parse().unwrap());
    for r in &replicas {
        assert_eq!(post(&client, &r.url, "REV-2", &other).await, 202);
        assert_eq!(post(&client, &r.url, "REV-1", &reissued).await, 202);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_secret_works_while_it_is_configured_and_not_after() {
    let Some(broker) = TestBroker::start("meter secret rotation") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let old = MeterTokens::new(PREVIOUS)
        .unwrap_or_else(|e| panic!("{e}"))
        .issue(&"ROT-1".parse().unwrap());
    let new = MeterTokens::new(CURRENT)
        .unwrap_or_else(|e| panic!("{e}"))
        .issue(&"ROT-1".parse().unwrap());
    let client = reqwest::Client::new();

    let rotating = meter(&broker, dir.path(), Some(PREVIOUS));
    assert_eq!(settled(&client, &rotating.url, "ROT-1", &old).await, 202);
    assert_eq!(post(&client, &rotating.url, "ROT-1", &new).await, 202);
    drop(rotating);

    let rotated = meter(&broker, dir.path(), None);
    assert_eq!(settled(&client, &rotated.url, "ROT-1", &new).await, 202);
    assert_eq!(post(&client, &rotated.url, "ROT-1", &old).await, 401);
}
