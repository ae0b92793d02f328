//! What it costs and the data to take away: a household's page prices its own half hours on
//! each tariff (to the penny of a hand computation) and picks the night tariff for a home
//! that uses most at night; the tariff chosen is kept in the session; an unusual week is
//! noted with its days; a year of half hours downloads as CSV that parses back to the stored
//! values; and a bad tariff file stops start-up naming the entry.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use chrono::{DateTime, Days, NaiveDate, Timelike, Utc};
use chrono_tz::Europe::London;
use iot_common::domain::{MeterId, Reading};
use iot_testkit::no_redirect_client;
use iot_web::export::day_start;
use reqwest::StatusCode;

use crate::support::{SendOrPanic, TestApp, register, sign_in, with_profiles};

/// Every half hour of the local days `first..first + days`, `kwh(day index, local minute)`
/// each, stored as the sink would store them.
async fn store_days(
    app: &TestApp,
    id: &str,
    first: NaiveDate,
    days: u64,
    kwh: impl Fn(u64, u32) -> f64,
) -> Vec<Reading> {
    let readings = half_hours(id, first, days, kwh);
    store(app, &readings).await;
    readings
}

async fn store(app: &TestApp, readings: &[Reading]) {
    for batch in readings.chunks(5_000) {
        app.app
            .store
            .write_readings(batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn half_hours(
    id: &str,
    first: NaiveDate,
    days: u64,
    kwh: impl Fn(u64, u32) -> f64,
) -> Vec<Reading> {
    let meter = MeterId::parse(id).unwrap_or_else(|e| panic!("{e}"));
    let mut readings = Vec::new();
    for k in 0..days {
        let d = first + Days::new(k);
        let (mut t, end) = (day_start(London, d), day_start(London, d + Days::new(1)));
        while t < end {
            let local = t.with_timezone(&London);
            readings.push(Reading {
                meter_id: meter.clone(),
                ts: t,
                kwh: kwh(k, local.hour() * 60 + local.minute()),
                interval_s: 1800,
            });
            t += chrono::Duration::minutes(30);
        }
    }
    readings
}

fn today() -> NaiveDate {
    Utc::now().with_timezone(&London).date_naive()
}

/// The shipped tariffs' night hours, 23:30 to 06:30 local.
fn off_peak(minute: u32) -> bool {
    !(390..1410).contains(&minute)
}

async fn page(app: &TestApp, auth: (&str, &str)) -> String {
    let res = no_redirect_client()
        .get(app.ext("/me"))
        .header(auth.0, auth.1)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap_or_default()
}

/// The text of the element with `id`, tags dropped.
fn element(html: &str, id: &str) -> String {
    let open = format!("id=\"{id}\"");
    let Some(at) = html.find(&open) else {
        return String::new();
    };
    let rest = &html[at..];
    let start = rest.find('>').map_or(0, |i| i + 1);
    let end = rest.find("</").unwrap_or(rest.len());
    rest[start..end].to_owned()
}

/// Pence of `tenths` tenths of a kWh at `hundredths` hundredths of a penny per kWh, rounded
/// to the penny, halves up: the hand computation, in integers.
fn line(tenths: i64, hundredths: i64) -> i64 {
    (tenths * hundredths + 500) / 1000
}

fn pounds(p: i64) -> String {
    format!("£{}.{:02}", p / 100, p % 100)
}

#[tokio::test]
async fn a_household_page_prices_its_own_half_hours_and_picks_the_tariff_that_suits_it() {
    let app = TestApp::start().await;
    let night_token = register(&app, "NIGHT001").await;
    let day_token = register(&app, "DAY00001").await;
    let days = 14;
    let first = today() - Days::new(days);
    // A night-heavy home (1 kWh each off-peak half hour, 0.1 otherwise), and a daytime one
    // (1 kWh each half hour from 09:00 to 18:00, 0.1 otherwise).
    let night = store_days(&app, "NIGHT001", first, days, |_, m| {
        if off_peak(m) { 1.0 } else { 0.1 }
    })
    .await;
    let day = store_days(&app, "DAY00001", first, days, |_, m| {
        if (540..1080).contains(&m) { 1.0 } else { 0.1 }
    })
    .await;

    // By hand, in tenths of a kWh and hundredths of a penny: the shipped price cap is
    // 25.73p/kWh and 51.37p/day; the night tariff 34p, 14p from 23:30 to 06:30, 51.37p/day.
    let standing = (days as i64 * 5137 + 50) / 100;
    let tenths = |rs: &[Reading], off: bool| -> i64 {
        rs.iter()
            .filter(|r| {
                let l = r.ts.with_timezone(&London);
                off_peak(l.hour() * 60 + l.minute()) == off
            })
            .map(|r| (r.kwh * 10.0).round() as i64)
            .sum()
    };
    let flat_bill = |rs: &[Reading]| line(tenths(rs, true) + tenths(rs, false), 2573) + standing;
    let night_bill =
        |rs: &[Reading]| line(tenths(rs, true), 1400) + line(tenths(rs, false), 3400) + standing;

    let html = page(&app, ("authorization", &format!("Bearer {night_token}"))).await;
    assert_eq!(
        element(&html, "cost-total"),
        pounds(flat_bill(&night)),
        "on the default tariff"
    );
    assert_eq!(
        element(&html, "cheapest"),
        "Two-rate night tariff (Economy 7 style)"
    );
    assert!(html.contains(&pounds(night_bill(&night))), "{html}");
    let html = page(&app, ("authorization", &format!("Bearer {day_token}"))).await;
    assert_eq!(element(&html, "cost-total"), pounds(flat_bill(&day)));
    assert_eq!(
        element(&html, "cheapest"),
        "Standard variable, at the price cap"
    );
    assert!(html.contains(&pounds(night_bill(&day))));

    // Chosen on the page, kept in the session.
    let c = no_redirect_client();
    let set = sign_in(&app, &night_token).await;
    let cookie = set.split(';').next().unwrap_or_default().to_owned();
    let chose = c
        .post(app.ext("/me/tariff"))
        .header("cookie", &cookie)
        .form(&[("tariff", "night")])
        .send_or_panic()
        .await;
    assert_eq!(chose.status(), StatusCode::SEE_OTHER);
    let html = page(&app, ("cookie", &cookie)).await;
    assert_eq!(
        element(&html, "cost-total"),
        pounds(night_bill(&night)),
        "{html}"
    );
    assert!(html.contains("Two-rate night tariff (Economy 7 style) (yours)"));
    let unknown = c
        .post(app.ext("/me/tariff"))
        .header("cookie", &cookie)
        .form(&[("tariff", "free-electricity")])
        .send_or_panic()
        .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let cross = c
        .post(app.ext("/me/tariff"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("tariff", "price-cap")])
        .send_or_panic()
        .await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let html = page(&app, ("cookie", &cookie)).await;
    assert_eq!(
        element(&html, "cost-total"),
        pounds(night_bill(&night)),
        "unchanged"
    );
    app.app.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_unusual_week_is_noted_with_the_days_that_made_it() {
    let app = with_profiles().await;
    let token = register(&app, "BUSY0001").await;
    let calm = register(&app, "CALM0001").await;
    let first = today() - Days::new(35);
    // Four weeks at 9.6 kWh a day, then five days of 24 kWh among the last seven: a mean
    // of 19.9 kWh, above 1.3 × 9.6 and above every borough's p90 day here (at most 19).
    store_days(&app, "BUSY0001", first, 35, |k, _| {
        if k >= 28 && k != 30 && k != 32 {
            0.5
        } else {
            0.2
        }
    })
    .await;
    store_days(&app, "CALM0001", first, 35, |_, _| 0.2).await;
    let html = page(&app, ("authorization", &format!("Bearer {token}"))).await;
    let at = html
        .find("id=\"unusual\"")
        .unwrap_or_else(|| panic!("no note: {html}"));
    let note = &html[at..at + html[at..].find("</div>").unwrap_or(0)];
    assert_eq!(note.matches("<li>").count(), 5, "{note}");
    assert!(
        note.contains("24.00 kWh") && note.contains("usual 9.60 kWh"),
        "{note}"
    );
    let html = page(&app, ("authorization", &format!("Bearer {calm}"))).await;
    assert!(
        !html.contains("id=\"unusual\""),
        "a steady week says nothing"
    );
    app.app.stop(std::time::Duration::from_secs(5)).await;
}

/// CSV rows as `header → value` maps.
fn csv_rows(csv: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| ((*h).to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_year_of_half_hours_downloads_as_csv_and_parses_back_to_the_stored_values() {
    let app = TestApp::start().await;
    register(&app, "YEAR0001").await;
    let token2 = register(&app, "YEAR0002").await;
    let first = today() - Days::new(365);
    // Values with three decimals that vary, and two missing half hours on day 100 (10:00
    // and 10:30 local), which VEE interpolates.
    let mut stored = half_hours("YEAR0002", first, 365, |k, m| {
        f64::from(((k as u32 * 7 + m / 30 * 13) % 900) + 1) / 1000.0
    });
    let gap_day = first + Days::new(100);
    let gap = [
        day_start(London, gap_day) + chrono::Duration::minutes(600),
        day_start(London, gap_day) + chrono::Duration::minutes(630),
    ];
    stored.retain(|r| !gap.contains(&r.ts));
    store(&app, &stored).await;

    let from = day_start(London, first);
    let to = day_start(London, today());
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let res = app
        .client
        .get(app.ext("/api/v1/meters/YEAR0002/readings"))
        .query(&[("from", rfc(from)), ("to", rfc(to))])
        .bearer_auth(&token2)
        .header("accept", "text/csv")
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    assert!(
        res.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    let csv = res.text().await.unwrap_or_default();
    let rows = csv_rows(&csv);
    let measured: BTreeMap<DateTime<Utc>, f64> = rows
        .iter()
        .filter(|r| r["quality"] == "measured")
        .map(|r| {
            let ts = r["start"].parse().unwrap_or_else(|e| panic!("{e}: {r:?}"));
            let kwh = r["kwh"].parse().unwrap_or_else(|e| panic!("{e}: {r:?}"));
            (ts, kwh)
        })
        .collect();
    assert_eq!(measured.len(), stored.len(), "every stored reading, once");
    for r in &stored {
        assert_eq!(measured.get(&r.ts), Some(&r.kwh), "{}", r.ts);
    }
    let estimated: Vec<&BTreeMap<String, String>> =
        rows.iter().filter(|r| r["quality"] != "measured").collect();
    assert_eq!(estimated.len(), 2, "the gap, flagged");
    assert!(
        estimated
            .iter()
            .all(|r| r["quality"] == "estimated_interpolated")
    );
    assert_eq!(rows.len(), stored.len() + 2);

    let daily = app
        .client
        .get(app.ext("/api/v1/meters/YEAR0002/daily"))
        .query(&[("from", rfc(from)), ("to", rfc(to))])
        .bearer_auth(&token2)
        .send_or_panic()
        .await;
    assert_eq!(daily.status(), StatusCode::OK);
    let days = csv_rows(&daily.text().await.unwrap_or_default());
    assert_eq!(days.len(), 365);
    let gap_row = days.iter().find(|d| d["date"] == gap_day.to_string());
    assert_eq!(gap_row.map(|d| d["status"].as_str()), Some("estimated"));
    assert!(
        days.iter()
            .filter(|d| d["date"] != gap_day.to_string())
            .all(|d| d["status"] == "complete")
    );

    // The page's own download, by local days.
    let me = app
        .client
        .get(app.ext("/me/daily.csv"))
        .query(&[
            ("from", first.to_string()),
            ("to", (first + Days::new(6)).to_string()),
        ])
        .bearer_auth(&token2)
        .send_or_panic()
        .await;
    assert_eq!(me.status(), StatusCode::OK);
    assert!(
        me.headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("YEAR0002-daily-")),
    );
    assert_eq!(csv_rows(&me.text().await.unwrap_or_default()).len(), 7);
    let too_long = app
        .client
        .get(app.ext("/me/readings.csv"))
        .query(&[("from", "2020-01-01"), ("to", "2026-01-01")])
        .bearer_auth(&token2)
        .send_or_panic()
        .await;
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    for (from, to) in [
        ("yesterday", ""),
        ("+262143-12-30", "+262143-12-31"),
        ("2026-02-30", ""),
    ] {
        let bad = app
            .client
            .get(app.ext("/me/readings.csv"))
            .query(&[("from", from), ("to", to)])
            .bearer_auth(&token2)
            .send_or_panic()
            .await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "{from} {to}");
    }
    let over = app
        .client
        .get(app.ext("/api/v1/meters/YEAR0002/readings"))
        .query(&[
            ("from", "2020-01-01T00:00:00Z"),
            ("to", "2026-01-01T00:00:00Z"),
        ])
        .bearer_auth(&token2)
        .header("accept", "text/csv")
        .send_or_panic()
        .await;
    assert_eq!(over.status(), StatusCode::BAD_REQUEST, "over the retention");
    let others = app
        .client
        .get(app.ext("/api/v1/meters/YEAR0001/daily"))
        .bearer_auth(&token2)
        .send_or_panic()
        .await;
    assert_eq!(
        others.status(),
        StatusCode::FORBIDDEN,
        "another meter's data"
    );
    app.app.stop(std::time::Duration::from_secs(5)).await;
}

#[test]
fn a_bad_tariff_file_stops_start_up_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("tariffs.toml");
    std::fs::write(
        &file,
        "[[tariff]]\nid = \"ok\"\nname = \"OK\"\napplies_from = \"2026-01-01\"\nsource = \"s\"\n\
         standing_charge_p_per_day = 50\nunit_rate_p_per_kwh = 25\n\n\
         [[tariff]]\nid = \"cheap-nights\"\nname = \"Cheap nights\"\napplies_from = \"2026-01-01\"\n\
         source = \"s\"\nstanding_charge_p_per_day = 50\nunit_rate_p_per_kwh = 30\n\
         [[tariff.off_peak]]\nfrom = \"23:00\"\nto = \"7am\"\nunit_rate_p_per_kwh = 12\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_iot-demo"))
        .args([
            "--meters",
            "0",
            "--external-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ])
        .env("IOT_DATA_DIR", dir.path())
        .env("IOT_TARIFFS", &file)
        .env_remove("IOT_METER_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("iot-demo: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(
        stderr.contains("tariff 2 (`cheap-nights`): off_peak 1: `to` `7am` is not a time of day"),
        "{stderr}"
    );
}
