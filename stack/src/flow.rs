//! The data flow of a running stack, checked from outside as a person would see it: the
//! fleet posts through the edge to every meter replica, the sink stores, the first analytics
//! run profiles the whole backfill, the map through the edge is coloured, the live layer's
//! half hours in Cassandra equal the stored readings' and show through the edge, internal
//! routes are 404 at the edge, and the console through the analyst port recomputes.

use std::time::{Duration, Instant};

use iot_common::domain::Trigger;
use iot_common::store::{MAX_READBACK, Store};
use iot_common::{Run, RunStatus};
use serde_json::Value;

use crate::{Stack, StackError};

/// What the checks saw, for the report.
#[derive(Debug)]
pub struct FlowReport {
    /// Readings each meter replica accepted.
    pub per_replica: Vec<(String, u64)>,
    pub backfill_posted: u64,
    /// What the fleet's fault plan lets through of its backfill (all of it with faults off).
    pub backfill_expected: u64,
    pub stored: u64,
    pub first_run: Run,
    pub coloured_regions: usize,
    /// The live layer's half hours with readings (all regions, 48 hours).
    pub live_slots: usize,
    pub console_run: Run,
}

fn flow(why: impl Into<String>) -> StackError {
    StackError::Flow(why.into())
}

/// Runs every check; `regions` is how many regions the map should colour.
pub async fn check(
    stack: &mut Stack,
    analyst_token: &str,
    regions: usize,
) -> Result<FlowReport, StackError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| flow(e.to_string()))?;
    let backfill = backfill_stored(stack, &http).await?;
    let backfill_posted = backfill["readings_posted"].as_u64().unwrap_or(0);
    let backfill_expected = backfill["readings_expected"].as_u64().unwrap_or(0);
    let per_replica = replicas_served(stack, &http).await?;
    let store = stack_store(stack).await?;
    let store = store.as_ref();
    let stored = store
        .summary()
        .await
        .map_err(|e| flow(e.to_string()))?
        .readings;
    if stored < backfill_posted {
        return Err(flow(format!(
            "the fleet says its {backfill_posted} readings are stored; the store has {stored}"
        )));
    }
    let first_run = first_run_profiles_the_backfill(stack, store).await?;
    let edge = stack.addresses.of("edge")[0];
    let coloured_regions = map_is_coloured(&http, &format!("http://{edge}:8080/"), regions).await?;
    internal_routes_hidden(&http, &format!("http://{edge}:8080")).await?;
    let live_slots =
        live_equals_the_readings(stack, store, &http, &format!("http://{edge}:8080")).await?;
    let console_run = console_recomputes(
        stack,
        store,
        &http,
        &format!("http://{edge}:9090"),
        analyst_token,
    )
    .await?;
    sql_counts_what_the_run_scanned(
        &http,
        &format!("http://{edge}:9090"),
        analyst_token,
        &first_run,
    )
    .await?;
    Ok(FlowReport {
        per_replica,
        backfill_posted,
        backfill_expected,
        stored,
        first_run,
        coloured_regions,
        live_slots,
        console_run,
    })
}

/// The live aggregator's half hours in Cassandra equal, to the micro-kWh, the same half hours
/// summed from the stored readings (the fleet's backfill covers the whole 48-hour window), and
/// the edge serves them.
async fn live_equals_the_readings(
    stack: &mut Stack,
    store: &dyn Store,
    http: &reqwest::Client,
    edge: &str,
) -> Result<usize, StackError> {
    let meters = store.meters().await.map_err(|e| flow(e.to_string()))?;
    let live_slots = until(
        stack,
        Duration::from_secs(120),
        "the live layer equal to the stored readings",
        || async {
            let now = chrono::Utc::now();
            let from = iot_common::live::window_start(now);
            let mut readings = Vec::new();
            for m in &meters {
                let Some(region) = &m.region else { continue };
                let of_meter = store
                    .meter_readings(
                        &m.meter_id,
                        from,
                        now + chrono::TimeDelta::hours(1),
                        MAX_READBACK,
                    )
                    .await
                    .ok()?;
                readings.extend(of_meter.into_iter().map(|r| (region.clone(), r)));
            }
            let expected = iot_common::live::slots_of(readings.iter().map(|(g, r)| (g.clone(), r)));
            let mut live = store.live_slots(from).await.ok()?;
            live.retain(|s| s.readings > 0);
            (!expected.is_empty() && live == expected).then_some(live.len())
        },
    )
    .await?;
    let url = format!("{edge}/api/v1/live");
    let answer: Value = http
        .get(&url)
        .send()
        .await
        .map_err(|e| StackError::service("edge", format!("GET {url}: {e}")))?
        .json()
        .await
        .map_err(|e| StackError::service("web", format!("GET {url}: {e}")))?;
    let registered: u64 = answer["regions"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["registered_meters"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    if registered != meters.len() as u64 {
        return Err(flow(format!(
            "{url} counts {registered} registered meters; the store has {}",
            meters.len()
        )));
    }
    Ok(live_slots)
}

/// The stack's Cassandra keyspace, as the `migrate` service names it.
async fn stack_store(stack: &Stack) -> Result<Box<dyn Store>, StackError> {
    let nodes = stack.env("migrate", "IOT_CASSANDRA_NODES")?;
    let keyspace = stack.env("migrate", "IOT_CASSANDRA_KEYSPACE")?;
    let config = iot_cassandra::CassandraConfig::new(&nodes, &keyspace)
        .map_err(|e| flow(format!("the stack's Cassandra settings: {e}")))?;
    let store = iot_cassandra::CassandraStore::connect(&config)
        .await
        .map_err(|e| flow(format!("cannot open the stack's keyspace {keyspace}: {e}")))?;
    Ok(Box::new(store))
}

/// Polls `f` every second until it returns `Some`, failing after `limit` or when a process
/// dies.
async fn until<T, F, Fut>(
    stack: &mut Stack,
    limit: Duration,
    what: &str,
    mut f: F,
) -> Result<T, StackError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        stack.check_alive()?;
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(flow(format!("{what}: not within {} s", limit.as_secs())));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn backfill_stored(stack: &mut Stack, http: &reqwest::Client) -> Result<Value, StackError> {
    let url = format!(
        "http://{}/backfill",
        stack.env("fleet", "IOT_INTERNAL_ADDR")?
    );
    until(
        stack,
        Duration::from_secs(600),
        "the fleet's backfill stored",
        || async {
            let res = http.get(&url).send().await.ok()?;
            if !res.status().is_success() {
                return None;
            }
            res.json::<Value>().await.ok()
        },
    )
    .await
}

async fn replicas_served(
    stack: &Stack,
    http: &reqwest::Client,
) -> Result<Vec<(String, u64)>, StackError> {
    let mut out = Vec::new();
    for p in stack.replicas("meter") {
        let addr = p
            .env
            .get("IOT_INTERNAL_ADDR")
            .ok_or_else(|| StackError::service(&p.name, "has no IOT_INTERNAL_ADDR"))?;
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .map_err(|e| StackError::service(&p.name, format!("metrics: {e}")))?
            .text()
            .await
            .unwrap_or_default();
        let accepted = text
            .lines()
            .find_map(|l| l.strip_prefix("iot_meter_readings_accepted_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if accepted == 0 {
            return Err(StackError::service(
                &p.name,
                "accepted no reading: the edge did not route the fleet's posts to it",
            ));
        }
        out.push((p.name.clone(), accepted));
    }
    if out.len() < 2 {
        return Err(flow(format!(
            "expected two meter replicas or more, ran {}",
            out.len()
        )));
    }
    Ok(out)
}

async fn first_run_profiles_the_backfill(
    stack: &mut Stack,
    store: &dyn Store,
) -> Result<Run, StackError> {
    let run = until(
        stack,
        Duration::from_secs(300),
        "the first analytics run",
        || async {
            let runs = store.runs(50).await.ok()?;
            let first = runs.into_iter().min_by_key(|r| r.created_at)?;
            matches!(first.status, RunStatus::Succeeded | RunStatus::Failed).then_some(first)
        },
    )
    .await?;
    if run.status != RunStatus::Succeeded || run.trigger != Trigger::Schedule {
        return Err(StackError::service(
            "analytics",
            format!("the first run is not a succeeded scheduled run: {run:?}"),
        ));
    }
    let (Some(from), Some(to)) = (run.window_from, run.window_to) else {
        return Err(flow(format!("the first run has no window: {run:?}")));
    };
    let mut in_window = 0u64;
    for meter in store.meters().await.map_err(|e| flow(e.to_string()))? {
        in_window += store
            .meter_readings(&meter.meter_id, from, to, MAX_READBACK)
            .await
            .map_err(|e| flow(e.to_string()))?
            .len() as u64;
    }
    if in_window == 0 || run.rows_scanned != in_window {
        return Err(StackError::service(
            "analytics",
            format!(
                "the first run scanned {} readings; the store holds {in_window} in its window",
                run.rows_scanned
            ),
        ));
    }
    Ok(run)
}

async fn map_is_coloured(
    http: &reqwest::Client,
    url: &str,
    regions: usize,
) -> Result<usize, StackError> {
    let res = http
        .get(url)
        .send()
        .await
        .map_err(|e| StackError::service("edge", format!("GET {url}: {e}")))?;
    if !res.status().is_success() {
        return Err(StackError::service(
            "edge",
            format!("GET {url}: {}", res.status()),
        ));
    }
    let html = res.text().await.unwrap_or_default();
    let coloured = html
        .split("class=\"region\"")
        .skip(1)
        .filter(|region| {
            region
                .split("fill=\"")
                .nth(1)
                .is_some_and(|fill| fill.starts_with('#'))
        })
        .count();
    if coloured != regions {
        return Err(flow(format!(
            "the map through the edge colours {coloured} regions, not {regions}"
        )));
    }
    Ok(coloured)
}

/// Paths only the internal listeners serve.
const INTERNAL: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/backfill",
    "/internal/console",
    "/internal/v1/runs",
    "/internal/v1/meters",
];

async fn internal_routes_hidden(http: &reqwest::Client, base: &str) -> Result<(), StackError> {
    for path in INTERNAL {
        let status = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .map_err(|e| StackError::service("edge", format!("GET {path}: {e}")))?
            .status();
        if status != reqwest::StatusCode::NOT_FOUND {
            return Err(StackError::service(
                "edge",
                format!("GET {path} on the external port answered {status}, not 404"),
            ));
        }
    }
    Ok(())
}

/// The analysts' SQL through the edge's analyst port counts, in the first run's window, the
/// readings that run scanned.
async fn sql_counts_what_the_run_scanned(
    http: &reqwest::Client,
    analyst: &str,
    token: &str,
    run: &Run,
) -> Result<(), StackError> {
    let (Some(from), Some(to)) = (run.window_from, run.window_to) else {
        return Err(flow("the first run recorded no window"));
    };
    let sql = format!(
        "SELECT count(*) AS n FROM readings WHERE ts >= TIMESTAMP '{}' AND ts < TIMESTAMP '{}'",
        from.to_rfc3339(),
        to.to_rfc3339()
    );
    let res = http
        .post(format!("{analyst}/internal/v1/query"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "sql": sql }))
        // The query's own limit is the service's (IOT_SQL_TIMEOUT_S, 20 s): wait past it, so a
        // slow answer shows as the service's 504 rather than this client giving up first.
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| StackError::service("edge", format!("query: {e}")))?;
    if !res.status().is_success() {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        return Err(StackError::service(
            "analytics",
            format!("POST /internal/v1/query through the analyst port: {status} {body}"),
        ));
    }
    let answer: serde_json::Value = res
        .json()
        .await
        .map_err(|e| StackError::service("analytics", format!("query answer: {e}")))?;
    let n = answer["rows"][0][0].as_u64();
    if n != Some(run.rows_scanned) {
        return Err(StackError::service(
            "analytics",
            format!(
                "SQL counts {n:?} readings in the first run's window; the run scanned {}",
                run.rows_scanned
            ),
        ));
    }
    Ok(())
}

async fn console_recomputes(
    stack: &mut Stack,
    store: &dyn Store,
    http: &reqwest::Client,
    analyst: &str,
    token: &str,
) -> Result<Run, StackError> {
    let login = http
        .post(format!("{analyst}/internal/console/login"))
        .form(&[("token", token)])
        .send()
        .await
        .map_err(|e| StackError::service("edge", format!("console login: {e}")))?;
    if login.status() != reqwest::StatusCode::SEE_OTHER {
        return Err(StackError::service(
            "web",
            format!("console login through the analyst port: {}", login.status()),
        ));
    }
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| StackError::service("web", "console login set no cookie"))?;
    let url = format!("{analyst}/internal/console/recompute");
    // A run still going answers 409 until it ends.
    until(
        stack,
        Duration::from_secs(120),
        "the console's recompute",
        || async {
            let res = http
                .post(&url)
                .header("cookie", &cookie)
                .send()
                .await
                .ok()?;
            (res.status() == reqwest::StatusCode::SEE_OTHER).then_some(())
        },
    )
    .await?;
    until(
        stack,
        Duration::from_secs(300),
        "the console's run to succeed",
        || async {
            let runs = store.runs(50).await.ok()?;
            runs.into_iter()
                .find(|r| r.trigger == Trigger::Console && r.status == RunStatus::Succeeded)
        },
    )
    .await
}
