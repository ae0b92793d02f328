//! Analysts' SQL over a store: the example queries of `docs/sql.md` give the job's own figures for a
//! borough, anything but a read-only query is refused, and the limits hold with clear errors.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use iot_analytics::source::{aggregate, register_store, session};
use iot_analytics::sql::{SqlEngine, SqlError, SqlLimits, SqlSource};
use iot_analytics::sql_output::{AnswerFormat, answer_bytes, answer_json};
use iot_common::ProfileFigures;
use iot_common::domain::{Meter, MeterId, Reading, RegionCode};
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;

/// The window the examples of `docs/sql.md` name: 28 London days, across the end of summer time.
const FROM: &str = "2026-10-24T23:00:00Z";
const TO: &str = "2026-11-22T00:00:00Z";
const BOROUGH: &str = "E09000007";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn date(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn region(s: &str) -> RegionCode {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// The ```sql blocks of `docs/sql.md`, the analysts' guide.
fn guide_queries() -> Vec<String> {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sql.md"))
        .unwrap_or_else(|e| panic!("docs/sql.md: {e}"));
    guide
        .split("```sql\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(q, _)| q.to_owned()))
        .collect()
}

/// Five meters in the borough and two elsewhere, half-hourly across the window and a day
/// either side, every meter-day complete (so the job's validation changes nothing), and
/// meter 3 a day late (from London midnight of the 26th), so the borough's days do not all have the same meters.
async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    store_with(false).await
}

/// Whether a faulty store leaves out (`None`) or changes the reading of meter `i` at `ts`: a
/// one-hour gap, a whole day missing, six hours missing, and a spike, in the borough.
fn fault(i: u32, ts: i64, kwh: f64) -> Option<f64> {
    let within = |a: &str, b: &str| (at(a).timestamp()..at(b).timestamp()).contains(&ts);
    match i {
        1 if within("2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z") => None,
        2 if within("2026-11-05T00:00:00Z", "2026-11-06T00:00:00Z") => None,
        0 if within("2026-11-15T00:00:00Z", "2026-11-15T06:00:00Z") => None,
        4 if ts == at("2026-11-10T18:00:00Z").timestamp() => Some(50.0),
        // Elsewhere, nine days silent.
        5 if within("2026-11-08T00:00:00Z", "2026-11-17T00:00:00Z") => None,
        _ => Some(kwh),
    }
}

async fn store_with(faulty: bool) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&SqliteStore::path_in(dir.path())).unwrap_or_else(|e| panic!("{e}")),
    );
    let mut meters = Vec::new();
    let mut readings = Vec::new();
    let (from, to) = (at(FROM).timestamp() - 86_400, at(TO).timestamp() + 86_400);
    for i in 0..7u32 {
        let id = MeterId::parse(format!("SQL{i:05}")).unwrap_or_else(|e| panic!("{e}"));
        let code = if i < 5 { BOROUGH } else { "E09000001" };
        meters.push(Meter {
            meter_id: id.clone(),
            region: Some(region(code)),
            lat: None,
            lon: None,
            household_size: None,
            dwelling: None,
            registered_at: at(FROM),
        });
        let mut ts = from;
        while ts < to {
            let slot = (ts / 1800) as u32;
            let kwh = f64::from((slot * 7 + i * 13) % 97) / 100.0;
            let kwh = if faulty { fault(i, ts, kwh) } else { Some(kwh) };
            if let Some(kwh) =
                kwh.filter(|_| !(i == 3 && ts < at("2026-10-26T00:00:00Z").timestamp()))
            {
                readings.push(Reading {
                    meter_id: id.clone(),
                    ts: DateTime::from_timestamp(ts, 0).unwrap_or_default(),
                    kwh,
                    interval_s: 1800,
                });
            }
            ts += 1800;
        }
    }
    store
        .upsert_meters(&meters)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .write_readings(&readings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (dir, store)
}

/// The job's own figures for the borough over the examples' window.
async fn job_figures(store: Arc<dyn Store>) -> ProfileFigures {
    let ctx = session(2);
    register_store(&ctx, store, at(FROM), at(TO), 4).unwrap_or_else(|e| panic!("{e}"));
    aggregate(&ctx, chrono_tz::Europe::London, None, Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|f| f.region.as_str() == BOROUGH)
        .unwrap_or_else(|| panic!("no profile for {BOROUGH}"))
}

fn engine(store: Arc<dyn Store>, limits: SqlLimits) -> SqlEngine {
    SqlEngine::new(SqlSource::Store(store), limits, 2).unwrap_or_else(|e| panic!("{e}"))
}

/// The answer's rows as JSON arrays.
async fn rows(engine: &SqlEngine, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let answer = engine
        .run(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    answer_json(&answer).unwrap_or_else(|e| panic!("{e}")).rows
}

fn close(what: &str, sql: f64, job: f64) {
    assert!(
        (sql - job).abs() <= 1e-9 * job.abs().max(1.0),
        "{what}: SQL says {sql}, the job {job}"
    );
}

fn number(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn the_sql_guide_queries_give_the_jobs_figures_for_the_borough() {
    let (_dir, store) = store().await;
    let job = job_figures(store.clone()).await;
    let queries = guide_queries();
    assert_eq!(
        queries.len(),
        2,
        "docs/sql.md shows a daily and an hourly query"
    );
    for q in &queries {
        assert!(
            q.contains(FROM) && q.contains(TO) && q.contains(BOROUGH),
            "docs/sql.md's query names this test's window and borough:\n{q}"
        );
    }
    let sql = engine(store, SqlLimits::default());

    let daily = rows(&sql, &queries[0]).await;
    let [row] = daily.as_slice() else {
        panic!("one row: {daily:?}")
    };
    assert_eq!(row[0].as_u64(), Some(job.meters), "meters");
    assert_eq!(row[1].as_u64(), Some(job.readings), "readings");
    close("avg_daily_kwh", number(&row[2]), job.avg_daily_kwh);
    close("p50_daily_kwh", number(&row[3]), job.p50_daily_kwh);
    close("p90_daily_kwh", number(&row[4]), job.p90_daily_kwh);
    close(
        "weekday_avg_daily_kwh",
        number(&row[5]),
        job.weekday_avg_daily_kwh.unwrap_or(f64::NAN),
    );
    close(
        "weekend_avg_daily_kwh",
        number(&row[6]),
        job.weekend_avg_daily_kwh.unwrap_or(f64::NAN),
    );

    let hourly = rows(&sql, &queries[1]).await;
    assert_eq!(hourly.len(), 24, "an hour per row: {hourly:?}");
    let mut peak = (0, f64::MIN);
    for (h, row) in hourly.iter().enumerate() {
        assert_eq!(number(&row[0]) as usize, h, "hours in order");
        let kwh = number(&row[1]);
        close(&format!("hourly_kwh[{h}]"), kwh, job.hourly_kwh[h]);
        if kwh > peak.1 {
            peak = (h, kwh);
        }
    }
    assert_eq!(peak.0, usize::from(job.peak_hour), "peak hour");
}

#[tokio::test]
async fn meter_days_counts_what_the_job_counts_on_faulty_readings() {
    let (_dir, store) = store_with(true).await;
    let job = job_figures(store.clone()).await;
    let sql = engine(store, SqlLimits::default());
    let q = format!(
        "SELECT count(*) FILTER (WHERE NOT excluded AND estimated = 0), \
                count(*) FILTER (WHERE NOT excluded AND estimated > 0), \
                count(*) FILTER (WHERE excluded), \
                avg(kwh), \
                count(*) FILTER (WHERE flags LIKE '%spike%') \
         FROM meter_days \
         WHERE day >= DATE '2026-10-25' AND day < DATE '2026-11-22' AND region = '{BOROUGH}'"
    );
    let got = rows(&sql, &q).await;
    let [row] = got.as_slice() else {
        panic!("one row: {got:?}")
    };
    let d = job.meter_days;
    assert_eq!(
        [row[0].as_u64(), row[1].as_u64(), row[2].as_u64()],
        [Some(d.complete), Some(d.estimated), Some(d.excluded)],
        "{d:?}"
    );
    assert!(
        d.estimated >= 3 && d.excluded >= 1,
        "the faults show: {d:?}"
    );
    close("avg_daily_kwh", number(&row[3]), job.avg_daily_kwh);
    assert_eq!(row[4].as_u64(), Some(1), "the spike is flagged");
    // Without a region filter, every region's meters; without a day filter, the default
    // window: the 28 days before today.
    let all = rows(
        &sql,
        "SELECT count(DISTINCT meter_id) FROM meter_days \
         WHERE day BETWEEN DATE '2026-10-25' AND DATE '2026-11-21'",
    )
    .await;
    assert_eq!(all[0][0].as_u64(), Some(7));

    // The console's data-quality queries.
    let (from, to) = (date("2026-10-25"), date("2026-11-22"));
    let worst = rows(&sql, &iot_common::wire::worst_meters_sql(from, to)).await;
    assert_eq!(worst[0][0], "SQL00005", "nine days left out: {worst:?}");
    assert_eq!(worst[0][4].as_u64(), Some(9));
    assert_eq!(
        worst.len(),
        5,
        "meters 0, 1, 2, 4 and 5 have edited days: {worst:?}"
    );
    let prolonged = rows(&sql, &iot_common::wire::prolonged_estimation_sql(from, to)).await;
    assert_eq!(
        prolonged,
        [vec![
            serde_json::json!("SQL00005"),
            serde_json::json!("E09000001"),
            serde_json::json!(9),
            serde_json::json!("2026-11-08"),
            serde_json::json!("2026-11-16"),
        ]],
        "only the nine days running"
    );
    let recent = rows(&sql, "SELECT CAST(min(day) AS VARCHAR) FROM meter_days").await;
    let earliest = (Utc::now()
        .with_timezone(&chrono_tz::Europe::London)
        .date_naive()
        - chrono::Days::new(28))
    .to_string();
    match recent[0][0].as_str() {
        None => {}
        Some(first) => assert!(first >= earliest.as_str(), "{first} before {earliest}"),
    }
}

#[tokio::test]
async fn only_one_read_only_query_runs() {
    let (_dir, store) = store().await;
    let sql = engine(store.clone(), SqlLimits::default());
    for (text, kind) in [
        ("DELETE FROM readings", "DELETE"),
        ("INSERT INTO meters VALUES ('x')", "INSERT"),
        ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
        ("COPY (SELECT 1) TO '/tmp/out.csv'", "COPY"),
    ] {
        match sql.run(text).await {
            Err(SqlError::Refused(k)) => assert_eq!(k, kind, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    assert!(matches!(
        sql.run("SELECT 1; SELECT 2").await,
        Err(SqlError::Several(2))
    ));
    // Nothing was written.
    assert_eq!(
        store.meters().await.unwrap_or_else(|e| panic!("{e}")).len(),
        7
    );
}

#[tokio::test]
async fn readings_need_a_time_bound_and_get_only_the_asked_region() {
    let (_dir, store) = store().await;
    let sql = engine(store, SqlLimits::default());
    match sql.run("SELECT count(*) FROM readings").await {
        Err(SqlError::Invalid(why)) => assert!(why.contains("lower bound on `ts`"), "{why}"),
        other => panic!("{other:?}"),
    }
    let counted = rows(
        &sql,
        &format!(
            "SELECT region, count(*) FROM readings WHERE ts >= TIMESTAMP '{FROM}' \
             AND ts < TIMESTAMP '{TO}' AND region = 'E09000001' GROUP BY region"
        ),
    )
    .await;
    // Two meters, every half-hour of the window: 28 days and the hour the clocks went back.
    assert_eq!(
        counted,
        vec![vec![
            serde_json::json!("E09000001"),
            serde_json::json!(2 * 1346)
        ]]
    );
}

#[tokio::test]
async fn limits_cut_or_stop_a_query_with_a_clear_error() {
    let (_dir, store) = store().await;
    let window = format!("ts >= TIMESTAMP '{FROM}' AND ts < TIMESTAMP '{TO}'");

    let few = SqlLimits {
        max_rows: 10,
        ..SqlLimits::default()
    };
    let answer = engine(store.clone(), few)
        .run(&format!("SELECT * FROM readings WHERE {window}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((answer.rows, answer.truncated), (10, true));
    let csv = answer_bytes(&answer, AnswerFormat::Csv).unwrap_or_else(|e| panic!("{e}"));
    let csv = String::from_utf8(csv).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(csv.lines().count(), 11, "a header and the ten rows:\n{csv}");
    assert!(
        csv.starts_with("meter_id,region,ts,kwh,interval_s\n"),
        "{csv}"
    );

    let tight = SqlLimits {
        memory_bytes: 64 << 10,
        ..SqlLimits::default()
    };
    match engine(store.clone(), tight)
        .run(&format!(
            "SELECT meter_id, ts, kwh FROM readings WHERE {window} ORDER BY kwh, ts"
        ))
        .await
    {
        Err(e @ SqlError::Memory { .. }) => {
            assert!(e.to_string().contains("memory"), "{e}");
        }
        other => panic!("over the memory limit: {other:?}"),
    }

    let quick = SqlLimits {
        timeout: Duration::from_secs(1),
        ..SqlLimits::default()
    };
    match engine(store, quick)
        .run(&format!(
            // Every pair of readings, each building a 3 kB string: minutes of work.
            "SELECT count(*) FROM readings a, readings b \
             WHERE a.ts >= TIMESTAMP '{FROM}' AND b.ts >= TIMESTAMP '{FROM}' \
             AND strpos(repeat(a.meter_id || b.meter_id, 200), 'zz') > 0"
        ))
        .await
    {
        Err(SqlError::Timeout(1)) => {}
        other => panic!("over the time limit: {other:?}"),
    }
}
