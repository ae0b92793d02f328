//! End to end on the embedded default: the app on free ports, real HTTP, SQLite store and log.

use std::time::Duration;

use crate::support::{ANALYST, SendOrPanic, TestApp, eventually, token, tokens};
use chrono::{DateTime, Duration as Span, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A whole half hour a few hours ago.
fn slot(hours_ago: i64) -> DateTime<Utc> {
    let t = Utc::now() - Span::hours(hours_ago);
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(1800), 0).unwrap_or_default()
}

fn reading(meter: &str, ts: DateTime<Utc>, kwh: f64) -> Value {
    json!({"meter_id": meter, "ts": ts.to_rfc3339(), "kwh": kwh})
}

async fn post(app: &TestApp, meter_token: Option<&str>, body: String) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(app.ext("/api/v1/readings"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = meter_token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap_or_else(|e| panic!("post: {e}"));
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn read_back(app: &TestApp, meter: &str, from: DateTime<Utc>) -> Vec<Value> {
    let res = app
        .client
        .get(app.ext(&format!("/api/v1/meters/{meter}/readings")))
        .query(&[("from", from.to_rfc3339())])
        .bearer_auth(token(meter))
        .send()
        .await
        .unwrap_or_else(|e| panic!("read back: {e}"));
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap_or(Value::Null);
    body["readings"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_posted_reading_reads_back_once_even_when_posted_twice() {
    let app = TestApp::start().await;
    let ts = slot(3);
    let body = reading("MAC000123", ts, 0.123).to_string();
    let (status, res) = post(&app, Some(&token("MAC000123")), body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["accepted"], 1);
    let (status, _) = post(&app, Some(&token("MAC000123")), body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let from = ts - Span::hours(1);
    let seen = eventually(Duration::from_secs(10), || async {
        read_back(&app, "MAC000123", from).await.len() == 1
    })
    .await;
    assert!(seen, "reading never arrived in the store");
    // Give the second copy time to land too, then check it did not duplicate.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = read_back(&app, "MAC000123", from).await;
    assert_eq!(
        got,
        vec![
            json!({"ts": ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "kwh": 0.123, "interval_s": 1800})
        ]
    );
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn every_bad_request_gets_its_documented_4xx_and_stores_nothing() {
    let app = TestApp::start().await;
    let m = "MAC000777";
    let good = reading(m, slot(2), 0.5);
    let with = |k: &str, v: Value| {
        let mut r = good.clone();
        r[k] = v;
        r.to_string()
    };
    let without = |k: &str| {
        let mut r = good.clone();
        r.as_object_mut().map(|o| o.remove(k));
        r.to_string()
    };
    let forged = format!("{m}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let mut batch: Vec<Value> = (4..10).map(|h| reading(m, slot(h), 0.2)).collect();
    batch[3]["kwh"] = json!(-1.0);
    let future = (Utc::now() + Span::hours(2)).timestamp();
    let future = DateTime::from_timestamp(future - future % 1800, 0).unwrap_or_default();
    let json = "application/json";
    let mine = Some(token(m));
    // (what, token, content type, body, status, field named in the error)
    let bad =
        |what, body: String, status: u16, field| (what, mine.clone(), json, body, status, field);
    #[rustfmt::skip]
    let cases = vec![
        ("no token", None, json, good.to_string(), 401, "authorization"),
        ("forged token", Some(forged), json, good.to_string(), 401, "authorization"),
        ("garbage token", Some("x".into()), json, good.to_string(), 401, "authorization"),
        ("another meter's token", Some(token("MAC000778")), json, good.to_string(), 403, "meter_id"),
        ("not JSON content type", mine.clone(), "text/plain", good.to_string(), 415, "content-type"),
        bad("malformed body", "{\"meter_id\": ".into(), 400, "body"),
        bad("NaN literal", good.to_string().replace("0.5", "NaN"), 400, "body"),
        bad("NaN as string", with("kwh", json!("NaN")), 422, "kwh"),
        bad("negative kWh", with("kwh", json!(-0.01)), 422, "kwh"),
        bad("huge kWh", with("kwh", json!(1e9)), 422, "kwh"),
        bad("overflowing kWh", good.to_string().replace("0.5", "1e999"), 400, "body"),
        bad("misaligned ts", with("ts", json!((slot(2) + Span::minutes(7)).to_rfc3339())), 422, "ts"),
        bad("far-future ts", with("ts", json!(future.to_rfc3339())), 422, "ts"),
        bad("unknown interval", with("interval_s", json!(1234)), 422, "interval_s"),
        bad("missing kwh", without("kwh"), 422, "kwh"),
        bad("missing ts", without("ts"), 422, "ts"),
        bad("missing meter_id", without("meter_id"), 422, "meter_id"),
        bad("bad meter id", with("meter_id", json!("MAC 1")), 422, "meter_id"),
        bad("empty batch", "[]".into(), 422, "body"),
        bad("a number", "42".into(), 400, "body"),
        bad("batch with one bad reading", Value::Array(batch).to_string(), 422, "kwh"),
        bad("oversized body", format!("[{}]", " ".repeat(5 * 1024 * 1024)), 413, ""),
    ];
    for (what, tok, ctype, body, status, field) in cases {
        let mut req = app
            .client
            .post(app.ext("/api/v1/readings"))
            .header("content-type", ctype)
            .body(body);
        if let Some(t) = tok {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        assert!(res.headers().contains_key("x-request-id"), "{what}");
        let err: Value = res
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
        assert!(
            err["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:iot-demo:problem:"))
                && err["title"].is_string()
                && err["detail"].is_string()
                && err["status"] == status
                && err["request_id"].is_string(),
            "{what}: {err}"
        );
        if !field.is_empty() {
            assert_eq!(err["field"], field, "{what}: {err}");
        }
        if what == "batch with one bad reading" {
            assert_eq!(err["index"], 3, "{what}: {err}");
        }
    }
    // One good reading after all of that: once it is stored, everything before it has been
    // through the sink too, and nothing else may be there.
    let (status, _) = post(&app, Some(&token(m)), good.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let from = slot(24);
    assert!(
        eventually(Duration::from_secs(10), || async {
            !read_back(&app, m, from).await.is_empty()
        })
        .await
    );
    assert_eq!(read_back(&app, m, from).await.len(), 1);
    let summary = app
        .app
        .store
        .summary()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.readings, 1, "refused requests stored nothing");
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_full_batch_is_accepted_and_one_more_is_too_many() {
    let app = TestApp::start().await;
    let m = "MAC000900";
    let start = slot(24 * 250);
    let batch: Vec<Value> = (0..10_000)
        .map(|i| reading(m, start + Span::minutes(30 * i), 0.25))
        .collect();
    let (status, res) = post(
        &app,
        Some(&token(m)),
        Value::Array(batch.clone()).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["accepted"], 10_000);
    let mut over = batch;
    over.push(reading(m, slot(1), 0.1));
    let (status, res) = post(&app, Some(&token(m)), Value::Array(over).to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{res}");
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn read_back_is_for_the_meter_owner_only() {
    let app = TestApp::start().await;
    let url = app.ext("/api/v1/meters/MAC000001/readings");
    let res = app.client.get(&url).send_or_panic().await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .get(&url)
        .bearer_auth(token("MAC000002"))
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .client
        .get(&url)
        .query(&[("from", "yesterday")])
        .bearer_auth(token("MAC000001"))
        .send_or_panic()
        .await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a query error is invalid_query"
    );
    let err: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(err["field"], "from");
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn internal_routes_live_only_on_the_internal_listener() {
    let app = TestApp::start().await;
    for path in ["/healthz", "/readyz", "/metrics", "/internal/v1/meters"] {
        let res = app.client.get(app.ext(path)).send_or_panic().await;
        assert_eq!(
            res.status(),
            StatusCode::NOT_FOUND,
            "{path} on the external listener"
        );
    }
    let res = app.client.get(app.int("/healthz")).send_or_panic().await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.client.get(app.int("/readyz")).send_or_panic().await;
    assert_eq!(res.status(), StatusCode::OK);
    let metrics = app.client.get(app.int("/metrics")).send_or_panic().await;
    let text = metrics.text().await.unwrap_or_default();
    assert!(text.contains("iot_meter_readings_accepted_total"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn operators_register_meters_on_the_internal_listener() {
    let app = TestApp::start().await;
    let url = app.int("/internal/v1/meters");
    let body = json!({"meter_id": "HOME-1", "lat": 51.5138, "lon": -0.0984, "household_size": 2, "dwelling": "flat"});
    let res = app.client.post(&url).json(&body).send_or_panic().await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .post(&url)
        .bearer_auth(ANALYST)
        .json(&body)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(created["meter"]["region"], "E09000001");
    let issued = created["token"].as_str().unwrap_or_default();
    assert_eq!(
        tokens().verify(issued).map(|c| c.meter_id),
        Ok("HOME-1".parse().unwrap()),
        "{created}"
    );
    let bad = json!({"meter_id": "HOME-2", "region": "E09999999"});
    let res = app
        .client
        .post(&url)
        .bearer_auth(ANALYST)
        .json(&bad)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(err["field"], "region");
    let paris = json!({"meter_id": "HOME-3", "lat": 48.8566, "lon": 2.3522});
    let res = app
        .client
        .post(&url)
        .bearer_auth(ANALYST)
        .json(&paris)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let listed: Value = app
        .client
        .get(&url)
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await
        .json()
        .await
        .unwrap_or(Value::Null);
    let ids: Vec<&str> = listed["meters"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["meter_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec!["HOME-1"]);
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn readings_of_an_unregistered_meter_are_kept_without_a_region() {
    let app = TestApp::start().await;
    let m = "UNREGISTERED-9";
    let (status, _) = post(&app, Some(&token(m)), reading(m, slot(5), 0.3).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(10), || async {
            read_back(&app, m, slot(48)).await.len() == 1
        })
        .await
    );
    let meter = app
        .app
        .store
        .meter(&m.parse().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(meter, None, "stored, but in no region until registered");
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_revoked_meter_is_refused_at_once_and_a_token_issued_after_works() {
    let app = TestApp::start().await;
    let old = token("REVOKE-1");
    let body = || reading("REVOKE-1", slot(3), 0.3).to_string();
    assert_eq!(post(&app, Some(&old), body()).await.0, StatusCode::ACCEPTED);
    let url = app.int("/internal/v1/meters/REVOKE-1");
    let res = app.client.delete(&url).send_or_panic().await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "revoking needs the analyst token"
    );
    let res = app
        .client
        .delete(&url)
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (status, problem) = post(&app, Some(&old), body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{problem}"
    );
    let res = app
        .client
        .get(app.ext("/api/v1/meters/REVOKE-1/readings"))
        .bearer_auth(&old)
        .send_or_panic()
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "readback refuses it too"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let new = token("REVOKE-1");
    assert_eq!(post(&app, Some(&new), body()).await.0, StatusCode::ACCEPTED);
    let bad = app
        .client
        .delete(app.int("/internal/v1/meters/bad%20id"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.app.stop(Duration::from_secs(5)).await;
}
