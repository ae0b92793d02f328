//! `/me`: a household's own page. A resident signs in with their meter's token (the one the
//! meter posts with), which opens a session whose cookie holds only a random id; a
//! `Authorization: Bearer` header works too, for scripts. The page shows the meter's last 28
//! days against its borough: daily use over the borough's median-to-p90 band, the average
//! day's hourly curve over the borough's, and where the household stands among the
//! borough's meters. Only the signed-in meter's readings are ever read.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Europe::London;
use iot_common::domain::{MeterId, Reading};
use iot_common::http::bearer_token;
use iot_common::problem::ApiError;
use iot_common::store::MAX_READBACK;
use iot_common::{ProfileFigures, RegionProfile};

use crate::access::SameSite;
use crate::present::{day, kwh};
use crate::respond;
use crate::sessions::{SignInForm, SignInPage};
use crate::state::WebState;
use crate::svg::{Bar, Tick, at, hour_ticks};

/// Days the page covers: whole local days before today, as the default profile window.
const DAYS: u64 = 28;

struct Borough {
    name: String,
    p50: String,
    p90: String,
}

struct Band {
    x: String,
    x2: String,
    y: String,
    w: String,
    h: String,
    median_y: String,
    label: String,
}

struct DailyChart {
    width: u32,
    height: u32,
    bars: Vec<Bar>,
    ticks: Vec<Tick>,
    band: Option<Band>,
}

struct HourlyChart {
    width: u32,
    height: u32,
    bars: Vec<Bar>,
    line: Option<String>,
    ticks: Vec<Tick>,
}

struct Home {
    meter_id: String,
    region_name: Option<String>,
    borough: Option<Borough>,
    mean: String,
    percentile: Option<String>,
    daily: DailyChart,
    hourly: HourlyChart,
    readings: usize,
    first_day: String,
    last_day: String,
}

#[derive(Template)]
#[template(path = "me.html")]
struct MePage<'a> {
    attribution: &'a str,
    home: Option<Home>,
    message: Option<String>,
}

fn sign_in(s: &WebState, status: StatusCode, message: Option<&str>) -> Response {
    let page = MePage {
        attribution: s.attribution(),
        home: None,
        message: message.map(str::to_owned),
    };
    respond::page_with(status, &page).unwrap_or_else(IntoResponse::into_response)
}

/// The meter a request speaks for: a valid bearer token, else a live session whose token
/// has not been revoked since. Anyone else gets the sign-in form instead (200 when nobody
/// signed in; 401 with the reason for a bad token or a revoked session, whose cookie is
/// cleared).
pub struct Resident(MeterId);

impl FromRequestParts<WebState> for Resident {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &WebState) -> Result<Self, Response> {
        let headers = &parts.headers;
        if let Ok(token) = bearer_token(headers) {
            return s
                .auth
                .check(token)
                .map(Self)
                .map_err(|e| ApiError::from(e).into_response());
        }
        let Some(claims) = s.residents.get(headers) else {
            return Err(sign_in(s, StatusCode::OK, None));
        };
        if s.auth.revocations.is_revoked(&claims) {
            let mut res = sign_in(
                s,
                StatusCode::UNAUTHORIZED,
                Some("This meter's token was revoked; sign in with its new token."),
            );
            if let Ok(v) = header::HeaderValue::from_str(&s.residents.close(headers)) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            return Err(res);
        }
        Ok(Self(claims.meter_id))
    }
}

pub async fn page(
    Resident(meter): Resident,
    State(s): State<WebState>,
) -> Result<Response, ApiError> {
    let home = home(&s, &meter).await?;
    respond::page(&MePage {
        attribution: s.attribution(),
        home: Some(home),
        message: None,
    })
}

pub async fn login(
    _: SameSite,
    State(s): State<WebState>,
    extensions: Extensions,
    Form(form): Form<SignInForm>,
) -> Response {
    let client = iot_common::server::peer(&extensions).map(|p| p.ip());
    let verify = || {
        s.auth
            .tokens
            .verify(form.token.trim())
            .ok()
            .filter(|c| !s.auth.revocations.is_revoked(c))
    };
    s.residents.sign_in(
        client,
        verify,
        SignInPage {
            landing: "/me",
            wrong_token: "That is not a meter token in service here: check it, or ask for a new one.",
            form: &|status, message| sign_in(&s, status, Some(message)),
        },
    )
}

pub async fn logout(_: SameSite, State(s): State<WebState>, headers: HeaderMap) -> Response {
    s.residents.sign_out(&headers, "/me")
}

/// UTC instant at which London day `d` starts.
fn day_start(d: NaiveDate) -> DateTime<Utc> {
    London
        .from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map_or_else(
            || d.and_time(chrono::NaiveTime::MIN).and_utc(),
            |t| t.with_timezone(&Utc),
        )
}

/// Per local day: kWh and readings; per local hour: kWh summed over days and the days with
/// readings in that hour.
struct Tally {
    days: BTreeMap<NaiveDate, (f64, u32)>,
    hours: [(f64, u32); 24],
}

fn tally(readings: &[Reading]) -> Tally {
    let mut days: BTreeMap<NaiveDate, (f64, u32)> = BTreeMap::new();
    let mut day_hours: BTreeMap<(NaiveDate, u32), f64> = BTreeMap::new();
    for r in readings {
        let local = r.ts.with_timezone(&London);
        let d = days.entry(local.date_naive()).or_default();
        d.0 += r.kwh;
        d.1 += 1;
        *day_hours
            .entry((local.date_naive(), local.hour()))
            .or_default() += r.kwh;
    }
    let mut hours = [(0.0, 0u32); 24];
    for ((_, h), v) in day_hours {
        let slot = &mut hours[h as usize % 24];
        slot.0 += v;
        slot.1 += 1;
    }
    Tally { days, hours }
}

async fn home(s: &WebState, meter: &MeterId) -> Result<Home, ApiError> {
    let registered = s.store.meter(meter).await?;
    let region = registered.and_then(|m| m.region);
    let profiles = s.current_profiles().await?;
    let profile: Option<&RegionProfile> = region.as_ref().and_then(|r| profiles.get(r.as_str()));
    let region_name = region
        .as_ref()
        .and_then(|r| s.regions.get(r.as_str()))
        .map(|r| r.name.clone());
    let today = Utc::now().with_timezone(&London).date_naive();
    let first = today - Days::new(DAYS);
    let readings = s
        .store
        .meter_readings(meter, day_start(first), day_start(today), MAX_READBACK)
        .await?;
    let t = tally(&readings);
    let mean = mean_day(&t);
    let figures = profile.map(|p| &p.figures);
    Ok(Home {
        meter_id: meter.to_string(),
        borough: figures.map(|f| Borough {
            name: region_name.clone().unwrap_or_default(),
            p50: kwh(f.p50_daily_kwh),
            p90: kwh(f.p90_daily_kwh),
        }),
        region_name,
        mean: kwh(mean),
        percentile: figures
            .filter(|_| !t.days.is_empty())
            .and_then(|f| f.percentile_of(mean))
            .map(|p| format!("{p:.0}")),
        daily: daily_chart(&t, first, figures),
        hourly: hourly_chart(&t, figures),
        readings: readings.len(),
        first_day: day(day_start(first)),
        last_day: day(day_start(today) - chrono::Duration::seconds(1)),
    })
}

/// The household's average day over the days it has readings, in kWh (0 with none).
fn mean_day(t: &Tally) -> f64 {
    if t.days.is_empty() {
        return 0.0;
    }
    t.days.values().map(|d| d.0).sum::<f64>() / t.days.len() as f64
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 34.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

fn scale_top(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0_f64, f64::max).max(1e-9) * 1.05
}

/// The household's kWh on each of the days, over the borough's median-to-p90 band.
fn daily_chart(t: &Tally, first: NaiveDate, f: Option<&ProfileFigures>) -> DailyChart {
    let top = scale_top(
        t.days
            .values()
            .map(|d| d.0)
            .chain(f.map(|f| f.p90_daily_kwh)),
    );
    let usable = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + (1.0 - v / top) * usable;
    let slot = (WIDTH - LEFT) / DAYS as f64;
    let mut bars = Vec::new();
    let mut ticks = vec![Tick {
        x: "14".into(),
        y: "20".into(),
        label: format!("{top:.1}"),
    }];
    for k in 0..DAYS {
        let d = first + Days::new(k);
        let x = LEFT + k as f64 * slot;
        if let Some((v, n)) = t.days.get(&d) {
            bars.push(Bar {
                x: at(x + 1.0),
                y: at(y(*v)),
                w: at(slot - 2.0),
                h: at(v / top * usable),
                peak: false,
                label: format!("{}: {} kWh ({n} readings)", d.format("%a %-d %b"), kwh(*v)),
            });
        }
        if k % 7 == 0 {
            ticks.push(Tick {
                x: at(x + slot / 2.0),
                y: format!("{}", HEIGHT as u32 - 5),
                label: d.format("%-d %b").to_string(),
            });
        }
    }
    let band = f.map(|f| Band {
        x: at(LEFT),
        x2: at(WIDTH),
        y: at(y(f.p90_daily_kwh)),
        w: at(WIDTH - LEFT),
        h: at((f.p90_daily_kwh - f.p50_daily_kwh).max(0.0) / top * usable),
        median_y: at(y(f.p50_daily_kwh)),
        label: format!(
            "households in your borough: median {} kWh, p90 {} kWh",
            kwh(f.p50_daily_kwh),
            kwh(f.p90_daily_kwh)
        ),
    });
    DailyChart {
        width: WIDTH as u32,
        height: HEIGHT as u32,
        bars,
        ticks,
        band,
    }
}

/// The household's average kWh in each local hour, with the borough's curve over it.
fn hourly_chart(t: &Tally, f: Option<&ProfileFigures>) -> HourlyChart {
    let mine: Vec<f64> = t
        .hours
        .iter()
        .map(|(v, n)| if *n > 0 { v / f64::from(*n) } else { 0.0 })
        .collect();
    let top = scale_top(
        mine.iter()
            .copied()
            .chain(f.into_iter().flat_map(|f| f.hourly_kwh)),
    );
    let usable = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + (1.0 - v / top) * usable;
    let slot = (WIDTH - LEFT) / 24.0;
    let bars = mine
        .iter()
        .enumerate()
        .map(|(h, v)| Bar {
            x: at(LEFT + h as f64 * slot + 1.0),
            y: at(y(*v)),
            w: at(slot - 2.0),
            h: at(v / top * usable),
            peak: false,
            label: format!("{h:02}:00–{:02}:00: {v:.3} kWh", (h + 1) % 24),
        })
        .collect();
    let line = f.map(|f| {
        f.hourly_kwh
            .iter()
            .enumerate()
            .map(|(h, v)| format!("{},{}", at(LEFT + (h as f64 + 0.5) * slot), at(y(*v))))
            .collect::<Vec<_>>()
            .join(" ")
    });
    HourlyChart {
        width: WIDTH as u32,
        height: HEIGHT as u32,
        bars,
        line,
        ticks: hour_ticks(LEFT, slot, HEIGHT as u32, top),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ts: &str, kwh: f64) -> Reading {
        Reading {
            meter_id: MeterId::parse("m1").unwrap_or_else(|e| panic!("{e}")),
            ts: ts.parse().unwrap_or_else(|e| panic!("{e}")),
            kwh,
            interval_s: 1800,
        }
    }

    #[test]
    fn days_and_hours_are_londons() {
        // 23:30 UTC on 1 July is 00:30 on 2 July in London (summer time).
        let t = tally(&[
            reading("2026-07-01T22:30:00Z", 1.0),
            reading("2026-07-01T23:30:00Z", 2.0),
            reading("2026-07-02T23:00:00Z", 4.0),
        ]);
        let d = |s: &str| s.parse::<NaiveDate>().unwrap_or_default();
        assert_eq!(t.days.get(&d("2026-07-01")), Some(&(1.0, 1)));
        assert_eq!(t.days.get(&d("2026-07-02")), Some(&(2.0, 1)));
        assert_eq!(t.days.get(&d("2026-07-03")), Some(&(4.0, 1)));
        assert_eq!(t.hours[23], (1.0, 1));
        assert_eq!(
            t.hours[0],
            (6.0, 2),
            "two days with readings at 00:00–01:00"
        );
    }
}
