//! Clients that try to hurt the service, against the real binary on loopback: slowloris
//! connections and slow uploads are cut off by the timeouts while honest meters keep getting
//! their 202s; a stranger is refused before the body is read; a body of 4 MiB of zeros costs
//! about its own size. Every attacker is bounded in time and stops itself.

use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use iot_common::auth::MeterTokens;
use iot_testkit::{reset_peak_rss, status_kib};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::process::{Proc, launch_with};

const HEADER_TIMEOUT_MS: u64 = 2_000;
const REQUEST_TIMEOUT_MS: u64 = 4_000;
/// How late after its timeout a cut-off may come (scheduling on a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(3);
/// No attacker runs longer than this.
const GIVE_UP: Duration = Duration::from_secs(15);

fn limits() -> [String; 6] {
    [
        "--http-header-timeout-ms".into(),
        HEADER_TIMEOUT_MS.to_string(),
        "--http-request-timeout-ms".into(),
        REQUEST_TIMEOUT_MS.to_string(),
        "--http-idle-timeout-ms".into(),
        "2000".into(),
    ]
}

fn start(dir: &std::path::Path) -> (Proc, String, MeterTokens) {
    let flags = limits();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (proc, url, _) = launch_with(dir, &flags);
    let secret = std::fs::read_to_string(dir.join("meter-secret"))
        .unwrap_or_else(|e| panic!("meter secret: {e}"));
    let tokens = MeterTokens::new(secret.trim()).unwrap_or_else(|e| panic!("{e}"));
    let addr = url.trim_start_matches("http://").to_owned();
    (proc, addr, tokens)
}

/// Sends a request's headers a byte a second; returns how long the server took to close the
/// connection, or `None` if it was still open when the attacker gave up.
async fn trickle_headers(addr: String) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).await.ok()?;
    let head = b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut buf = [0u8; 256];
    for &b in head.iter().chain(std::iter::repeat(&b'a')) {
        if started.elapsed() > GIVE_UP {
            return None;
        }
        if s.write_all(&[b]).await.is_err() {
            return Some(started.elapsed());
        }
        // Wait a second, or less if the server closes (EOF or an error response) meanwhile.
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    None
}

/// Announces a 4 MiB body with a valid token and sends 100 bytes of it every 200 ms; returns
/// how long the server took to answer and close, with the status it answered.
async fn trickle_body(addr: String, token: String) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).await.ok()?;
    let head = format!(
        "POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 4194304\r\n\r\n["
    );
    s.write_all(head.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < GIVE_UP {
        if s.write_all(&[b' '; 100]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    if started.elapsed() >= GIVE_UP {
        return None;
    }
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    Some((started.elapsed(), status))
}

/// One honest meter posting 48 half-hourly readings a request until `until`; returns the
/// number of 202s and the slowest answer.
async fn honest_meter(
    url: String,
    meter: String,
    token: String,
    until: Instant,
) -> (usize, Duration, Vec<String>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let start = (Utc::now() - TimeDelta::days(700))
        .duration_trunc(TimeDelta::minutes(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut ok, mut slowest, mut failures) = (0, Duration::ZERO, Vec::new());
    let mut slot = 0i64;
    while Instant::now() < until {
        let batch: Vec<Value> = (0..48)
            .map(|i| {
                let ts = start + TimeDelta::minutes(30 * (slot + i));
                json!({"meter_id": meter, "ts": ts.to_rfc3339(), "kwh": 0.25})
            })
            .collect();
        slot += 48;
        let sent = Instant::now();
        let res = client
            .post(format!("{url}/api/v1/readings"))
            .bearer_auth(&token)
            .json(&batch)
            .send()
            .await;
        slowest = slowest.max(sent.elapsed());
        match res {
            Ok(r) if r.status().as_u16() == 202 => ok += 1,
            Ok(r) => failures.push(format!("status {}", r.status())),
            Err(e) => failures.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (ok, slowest, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_slow_uploads_are_cut_off_while_honest_meters_get_202s() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_proc, addr, tokens) = start(dir.path());
    let mut header_attackers = JoinSet::new();
    for _ in 0..500 {
        header_attackers.spawn(trickle_headers(addr.clone()));
    }
    let mut body_attackers = JoinSet::new();
    for i in 0..50 {
        body_attackers.spawn(trickle_body(
            addr.clone(),
            tokens.issue(&format!("SLOW{i:02}").parse().unwrap()),
        ));
    }
    // The honest meters post while the attack is at its worst (all attackers connected).
    let until = Instant::now() + Duration::from_secs(6);
    let mut honest = JoinSet::new();
    for m in 0..4 {
        let meter = format!("HONEST{m}");
        honest.spawn(honest_meter(
            format!("http://{addr}"),
            meter.clone(),
            tokens.issue(&meter.parse().unwrap()),
            until,
        ));
    }
    while let Some(r) = honest.join_next().await {
        let (ok, slowest, failures) = r.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            failures.is_empty(),
            "an honest meter was refused: {failures:?}"
        );
        assert!(ok >= 5, "an honest meter got only {ok} answers in 6 s");
        assert!(
            slowest < Duration::from_secs(2),
            "an honest meter waited {slowest:?} for its 202"
        );
        println!("honest meter: {ok} batches accepted, slowest answer {slowest:?}");
    }
    let header_limit = Duration::from_millis(HEADER_TIMEOUT_MS) + SLACK;
    let mut latest = Duration::ZERO;
    while let Some(r) = header_attackers.join_next().await {
        let closed = r.unwrap_or_else(|e| panic!("{e}"));
        let closed = closed.unwrap_or_else(|| panic!("a slowloris connection was never closed"));
        assert!(
            closed <= header_limit,
            "a slowloris connection lasted {closed:?}"
        );
        latest = latest.max(closed);
    }
    println!("500 slowloris connections closed, the last after {latest:?}");
    let request_limit = Duration::from_millis(REQUEST_TIMEOUT_MS) + SLACK;
    while let Some(r) = body_attackers.join_next().await {
        let (closed, status) = r
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a slow upload was never cut off"));
        assert!(closed <= request_limit, "a slow upload lasted {closed:?}");
        assert!(
            status.contains(" 408"),
            "a slow upload was answered `{status}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_refused_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_proc, addr, _) = start(dir.path());
    let mut s = TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = "POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer forged.k.1.AAAA\r\n\
                Content-Type: application/json\r\nContent-Length: 4194304\r\n\r\n";
    s.write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Not a byte of the body is sent: the answer can only come if the server does not wait
    // for it.
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer without the body: the server waits for it"))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // The upload is cut off: the server closes rather than reading 4 MiB it will not use.
    let chunk = vec![b' '; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    let cut_off = loop {
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => break true,
            // The server stopped reading and the socket buffers are full.
            Err(_) => break true,
        }
        if sent >= 4 * 1024 * 1024 {
            break false;
        }
    };
    assert!(
        cut_off,
        "the server read all {sent} bytes of a stranger's body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A 4 MiB body is held once, in one buffer, while it is parsed: the peak resident memory
/// after the first such body (the allocator's arenas keep later ones in memory already
/// touched, so only the first shows) grows by less than one and a half bodies. Holding a
/// second copy of the body while parsing (tried: `body.clone()` kept across the parse)
/// makes it grow by two bodies, and this test fail.
async fn four_mib_of_zeros_is_held_once_and_refused_at_its_first_reading() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (proc, addr, tokens) = start(dir.path());
    let url = format!("http://{addr}/api/v1/readings");
    let client = reqwest::Client::new();
    let token = tokens.issue(&"ZEROS".parse().unwrap());
    // Warm up: a small refused request, and time for the start-up recompute to finish.
    let res = client
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("[0]")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 422);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = reset_peak_rss(proc.id());
    let zeros = format!("[{}0]", "0,".repeat(2 * 1024 * 1024 - 2));
    assert!(zeros.len() <= 4 * 1024 * 1024);
    let body_kib = zeros.len() as u64 / 1024;
    let mut grown = None;
    for _ in 0..3 {
        let res = client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(zeros.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status().as_u16(), 422);
        let problem: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(problem["index"], 0, "{problem}");
        assert_eq!(problem["field"], "reading", "{problem}");
        grown.get_or_insert_with(|| status_kib(proc.id(), "VmHWM:").saturating_sub(before));
    }
    let grown = grown.unwrap_or_default();
    println!("peak RSS grew by {grown} KiB for the first {body_kib} KiB body of zeros");
    assert!(
        grown < body_kib * 3 / 2,
        "peak RSS grew by {grown} KiB for a {body_kib} KiB body: is the body held twice?"
    );
}
