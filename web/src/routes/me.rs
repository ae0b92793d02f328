//! `/me`: a household's own page. A resident signs in with their meter's token (the one the
//! meter posts with), which opens a session whose cookie holds only a random id; a
//! `Authorization: Bearer` header works too, for scripts. The page shows the meter's last 28
//! days against its borough: daily use over the borough's median-to-p90 band, the average
//! day's hourly curve over the borough's, and where the household stands among the
//! borough's meters; what those days cost on the resident's tariff (chosen on the page and
//! kept in the session) and on every other, priced on the household's own half hours; a
//! note when the last week is unusual; and the household's data as CSV. Only the signed-in
//! meter's readings are ever read.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Days, NaiveDate, Timelike, Utc};
use chrono_tz::Europe::London;
use iot_common::domain::{MeterId, Reading};
use iot_common::http::bearer_token;
use iot_common::problem::{ApiError, ErrorCode, Query};
use iot_common::quality::{MeterDay, Quality, Rules, meter_days};
use iot_common::store::MAX_READBACK;
use iot_common::{ProfileFigures, RegionProfile};

use crate::access::SameSite;
use crate::costs::{UnusualWeek, billed_intervals, typical_bill, unusual_week};
use crate::export::{Download, Export, day_start};
use crate::present::{day, kwh};
use crate::respond;
use crate::sessions::{ResidentSession, SignInForm, SignInPage};
use crate::state::WebState;
use crate::svg::{Bar, Tick, at, hour_ticks};
use crate::tariffs::{Bill, Tariff, by_clock};

/// Days the page covers: whole local days before today, as the default profile window.
const DAYS: u64 = 28;
/// Days read: the page's, and the four weeks before its last week that tell its usual.
const READ_DAYS: u64 = 35;

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

/// A day's bar, marked when some of the day is estimated or the day is left out.
struct DayBar {
    bar: Bar,
    edited: bool,
}

struct DailyChart {
    width: u32,
    height: u32,
    bars: Vec<DayBar>,
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
    edited: Vec<EditedDay>,
    first_day: String,
    last_day: String,
    costs: Costs,
    unusual: Option<Unusual>,
    /// The download form's default window, `YYYY-MM-DD`.
    download_from: String,
    download_to: String,
}

/// One tariff's price of the household's days.
struct TariffCost {
    id: String,
    name: String,
    rates: String,
    total: String,
    /// Against the resident's tariff: "£1.23 more", "£0.45 less", "".
    against: String,
    chosen: bool,
    cheapest: bool,
}

/// What the household's days cost.
struct Costs {
    days: u32,
    chosen_name: String,
    chosen_period: String,
    chosen_source: String,
    total: String,
    energy: String,
    standing: String,
    lines: Vec<String>,
    tariffs: Vec<TariffCost>,
    cheapest_name: String,
    /// What the cheapest would have saved, when it is not the resident's.
    saving: Option<String>,
    /// The borough's typical household on the resident's tariff, over the same days.
    typical: Option<String>,
}

/// The last week, when it is well above the household's usual.
struct Unusual {
    mean: String,
    usual: String,
    percent: String,
    days: Vec<(String, String)>,
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
pub struct Resident {
    meter: MeterId,
    /// The tariff chosen in the session, if any.
    tariff: Option<String>,
}

impl FromRequestParts<WebState> for Resident {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &WebState) -> Result<Self, Response> {
        let headers = &parts.headers;
        if let Ok(token) = bearer_token(headers) {
            return s
                .auth
                .check(token)
                .map(|meter| Self {
                    meter,
                    tariff: None,
                })
                .map_err(|e| ApiError::from(e).into_response());
        }
        let Some(session) = s.residents.get(headers) else {
            return Err(sign_in(s, StatusCode::OK, None));
        };
        if s.auth.revocations.is_revoked(&session.claims) {
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
        Ok(Self {
            meter: session.claims.meter_id,
            tariff: session.tariff,
        })
    }
}

/// `?tariff=` prices the page on that tariff without remembering it (for scripts).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    tariff: Option<String>,
}

pub async fn page(
    resident: Resident,
    State(s): State<WebState>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let chosen = match q.tariff.as_deref() {
        Some(id) => Some(known_tariff(&s, id)?),
        None => resident.tariff.as_deref().and_then(|id| s.tariffs.get(id)),
    }
    .unwrap_or_else(|| s.tariffs.default_tariff());
    let home = home(&s, &resident.meter, chosen).await?;
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
            .map(|claims| ResidentSession {
                claims,
                tariff: None,
            })
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

fn known_tariff<'a>(s: &'a WebState, id: &str) -> Result<&'a Tariff, ApiError> {
    s.tariffs.get(id).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidQuery, format!("no tariff `{id}` here")).field("tariff")
    })
}

#[derive(serde::Deserialize)]
pub struct TariffForm {
    tariff: String,
}

/// `POST /me/tariff`: the resident's tariff, kept in their session; back to the page.
pub async fn choose_tariff(
    _: SameSite,
    _: Resident,
    State(s): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<TariffForm>,
) -> Result<Response, ApiError> {
    let id = known_tariff(&s, form.tariff.trim())?.id.clone();
    let kept = s
        .residents
        .update(&headers, |session| session.tariff = Some(id.clone()));
    // A bearer caller has no session to keep it in: the page's address carries it.
    let landing = if kept {
        "/me".to_owned()
    } else {
        format!("/me?tariff={id}")
    };
    Ok(axum::response::Redirect::to(&landing).into_response())
}

/// The download window as the page's form sends it: local days, both included.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    from: Option<String>,
    to: Option<String>,
}

fn download_days(q: &DownloadQuery) -> Result<(NaiveDate, NaiveDate), ApiError> {
    // Days of years 1970 to 9999 only, so every day after one is a date too.
    let parse = |v: Option<&str>, field: &'static str| {
        v.filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.trim()
                    .parse::<NaiveDate>()
                    .ok()
                    .filter(|d| (1970..=9999).contains(&d.year()))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidQuery,
                            "must be a date, YYYY-MM-DD, of 1970 to 9999",
                        )
                        .field(field)
                    })
            })
            .transpose()
    };
    let today = Utc::now().with_timezone(&London).date_naive();
    let to = parse(q.to.as_deref(), "to")?.unwrap_or(today - Days::new(1));
    let from = parse(q.from.as_deref(), "from")?.unwrap_or(to - Days::new(DAYS - 1));
    if from > to {
        return Err(
            ApiError::new(ErrorCode::InvalidQuery, "from must not be after to").field("from"),
        );
    }
    Ok((from, to))
}

async fn download(
    resident: Resident,
    s: WebState,
    q: DownloadQuery,
    kind: Export,
) -> Result<Response, ApiError> {
    let (from, to) = download_days(&q)?;
    let (from, to) = (
        day_start(London, from),
        day_start(London, to + Days::new(1)),
    );
    Ok(Download::london(s.store.clone(), resident.meter, from, to, kind)?.response())
}

/// `GET /me/readings.csv?from=&to=`: the household's half hours over those local days.
pub async fn readings_csv(
    resident: Resident,
    State(s): State<WebState>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    download(resident, s, q, Export::Readings).await
}

/// `GET /me/daily.csv?from=&to=`: the household's daily totals over those local days.
pub async fn daily_csv(
    resident: Resident,
    State(s): State<WebState>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    download(resident, s, q, Export::Daily).await
}

/// A day of the household's, as the page shows it.
struct DayUse {
    /// The day's use as the profiles count it (readings and estimates), or the readings'
    /// sum when the day is left out.
    kwh: f64,
    readings: u32,
    estimated: bool,
    excluded: bool,
}

/// Per local day, its use; per local hour: kWh summed over days and the days with readings
/// in that hour.
struct Tally {
    days: BTreeMap<NaiveDate, DayUse>,
    hours: [(f64, u32); 24],
}

fn tally(readings: &[Reading], days: &[MeterDay]) -> Tally {
    let days = days
        .iter()
        .filter(|d| d.readings > 0 || d.verdict.kwh.is_some())
        .map(|d| {
            let day = DayUse {
                kwh: d.verdict.kwh.unwrap_or(d.raw_kwh),
                readings: d.readings,
                estimated: d.verdict.estimated(),
                excluded: d.verdict.excluded(),
            };
            (d.day, day)
        })
        .collect();
    let mut day_hours: BTreeMap<(NaiveDate, u32), f64> = BTreeMap::new();
    for r in readings {
        let local = r.ts.with_timezone(&London);
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

/// A day with estimated readings or left out, for the page's list.
struct EditedDay {
    day: String,
    /// Local times of the estimated intervals, runs joined ("10:00–11:00").
    intervals: String,
    how: &'static str,
    outcome: &'static str,
}

fn edited_days(days: &[MeterDay]) -> Vec<EditedDay> {
    days.iter()
        .filter(|d| d.verdict.estimated() || d.verdict.excluded())
        .map(|d| {
            let estimates: Vec<(DateTime<Utc>, f64, Quality)> = d.estimated().collect();
            let how = match (
                estimates.iter().any(|e| e.2 == Quality::Interpolated),
                estimates.iter().any(|e| e.2 == Quality::ReferenceDay),
            ) {
                (true, true) => "interpolated, and from the same weekday a week or two before",
                (true, false) => "interpolated from the readings either side",
                (false, true) => "from the same weekday a week or two before",
                (false, false) => "",
            };
            let outcome = if d.verdict.excluded() {
                "left out of the comparisons (too much missing)"
            } else {
                "estimated, and counted"
            };
            EditedDay {
                day: d.day.format("%a %-d %b").to_string(),
                intervals: if d.readings == 0 {
                    "no readings received".to_owned()
                } else {
                    runs(estimates.iter().map(|e| e.0))
                },
                how,
                outcome,
            }
        })
        .collect()
}

/// Half-hour starts (in order) as local time ranges: "10:00–11:00, 14:30–15:00".
fn runs(starts: impl Iterator<Item = DateTime<Utc>>) -> String {
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for t in starts {
        let end = t + chrono::Duration::minutes(30);
        match spans.last_mut() {
            Some(last) if last.1 == t => last.1 = end,
            _ => spans.push((t, end)),
        }
    }
    let local = |t: DateTime<Utc>| t.with_timezone(&London).format("%H:%M").to_string();
    spans
        .iter()
        .map(|(a, b)| format!("{}–{}", local(*a), local(*b)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn home(s: &WebState, meter: &MeterId, chosen: &Tariff) -> Result<Home, ApiError> {
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
    let read_from = today - Days::new(READ_DAYS);
    let all = s
        .store
        .meter_readings(
            meter,
            day_start(London, read_from),
            day_start(London, today),
            MAX_READBACK,
        )
        .await?;
    // The profile's window and rules: the days count as the borough's figures count them.
    let all_days = meter_days(
        &all,
        read_from,
        today - Days::new(1),
        London,
        &Rules::default(),
    );
    // Both come oldest first: the page's 28 days are their tails.
    let page_from = day_start(London, first);
    let readings = &all[all.partition_point(|r| r.ts < page_from)..];
    let days = &all_days[all_days.partition_point(|d| d.day < first)..];
    let t = tally(readings, days);
    let mean = mean_day(&t);
    let figures = profile.map(|p| &p.figures);
    let kept: BTreeMap<NaiveDate, f64> = all_days
        .iter()
        .filter_map(|d| d.verdict.kwh.map(|k| (d.day, k)))
        .collect();
    let unusual = unusual_week(
        &kept,
        today - Days::new(1),
        figures.map(|f| f.p90_daily_kwh),
    )
    .map(|w| unusual_view(&w));
    Ok(Home {
        meter_id: meter.to_string(),
        borough: figures.map(|f| Borough {
            name: region_name.clone().unwrap_or_default(),
            p50: kwh(f.p50_daily_kwh),
            p90: kwh(f.p90_daily_kwh),
        }),
        mean: kwh(mean),
        percentile: figures
            .filter(|_| !t.days.is_empty())
            .and_then(|f| f.percentile_of(mean))
            .map(|p| format!("{p:.0}")),
        daily: daily_chart(&t, first, figures),
        hourly: hourly_chart(&t, figures),
        readings: readings.len(),
        edited: edited_days(days),
        first_day: day(page_from),
        last_day: day(day_start(London, today) - chrono::Duration::seconds(1)),
        costs: costs(s, chosen, readings, days, figures, region_name.as_deref()),
        region_name,
        unusual,
        download_from: first.to_string(),
        download_to: (today - Days::new(1)).to_string(),
    })
}

/// The household's days priced on `chosen` and on every other tariff, and the borough's
/// typical household on `chosen` over as many days. The days priced run from the meter's
/// first day in the window (a standing charge for each).
fn costs(
    s: &WebState,
    chosen: &Tariff,
    readings: &[Reading],
    days: &[MeterDay],
    figures: Option<&ProfileFigures>,
    borough: Option<&str>,
) -> Costs {
    let energy: Vec<(u16, f64)> = by_clock(billed_intervals(readings, days), London).collect();
    let n = u32::try_from(days.len()).unwrap_or(u32::MAX);
    let bills: Vec<(&Tariff, Bill)> = s
        .tariffs
        .all()
        .iter()
        .map(|t| (t, t.bill_by_clock(energy.iter().copied(), n)))
        .collect();
    let mine = bills.iter().find(|(t, _)| t.id == chosen.id).map_or_else(
        || chosen.bill_by_clock(energy.iter().copied(), n),
        |(_, b)| b.clone(),
    );
    let (cheapest, cheapest_total) = bills
        .iter()
        .min_by_key(|(_, b)| b.total)
        .map_or((chosen, mine.total), |(t, b)| (*t, b.total));
    let tariffs = bills
        .iter()
        .map(|(t, b)| {
            let diff = b.total - mine.total;
            TariffCost {
                id: t.id.clone(),
                name: t.name.clone(),
                rates: t.rates_text(),
                total: b.total.pounds(),
                against: match diff.0 {
                    0 => String::new(),
                    d if d > 0 => format!("{} more", diff.pounds()),
                    _ => format!("{} less", (mine.total - b.total).pounds()),
                },
                chosen: t.id == chosen.id,
                cheapest: t.id == cheapest.id,
            }
        })
        .collect();
    let several = mine.energy.len() > 1;
    let lines = mine
        .energy
        .iter()
        .map(|l| {
            let cost = if several {
                format!(": {}", l.cost.pounds())
            } else {
                String::new()
            };
            format!(
                "{} kWh{} at {}/kWh{cost}",
                kwh(l.kwh()),
                if l.off_peak { " off peak" } else { "" },
                l.rate.text(),
            )
        })
        .collect();
    Costs {
        days: n,
        chosen_name: chosen.name.clone(),
        chosen_period: chosen.period(),
        chosen_source: chosen.source.clone(),
        total: mine.total.pounds(),
        energy: mine.energy_cost().pounds(),
        standing: format!(
            "{} days at {}: {}",
            n,
            chosen.standing_charge.text(),
            mine.standing.pounds()
        ),
        lines,
        tariffs,
        cheapest_name: cheapest.name.clone(),
        saving: (cheapest.id != chosen.id).then(|| (mine.total - cheapest_total).pounds()),
        typical: figures.filter(|_| n > 0).map(|f| {
            let b = typical_bill(chosen, f.p50_daily_kwh, &f.hourly_kwh, n);
            format!(
                "A typical household in {} (its median day, on the borough's hourly curve) would have paid {} on this tariff over the same {} days.",
                borough.unwrap_or("your borough"),
                b.total.pounds(),
                n
            )
        }),
    }
}

fn unusual_view(w: &UnusualWeek) -> Unusual {
    Unusual {
        mean: kwh(w.mean),
        usual: kwh(w.usual),
        percent: format!("{:.0}", (w.mean / w.usual - 1.0) * 100.0),
        days: w
            .days
            .iter()
            .map(|(d, v)| (d.format("%a %-d %b").to_string(), kwh(*v)))
            .collect(),
    }
}

/// The household's average day in kWh, as the borough's figures count a household: over
/// the days not left out (over every day with readings when all are; 0 with none).
fn mean_day(t: &Tally) -> f64 {
    let kept: Vec<f64> = t
        .days
        .values()
        .filter(|d| !d.excluded)
        .map(|d| d.kwh)
        .collect();
    let days: Vec<f64> = if kept.is_empty() {
        t.days.values().map(|d| d.kwh).collect()
    } else {
        kept
    };
    if days.is_empty() {
        return 0.0;
    }
    days.iter().sum::<f64>() / days.len() as f64
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
            .map(|d| d.kwh)
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
        if let Some(u) = t.days.get(&d) {
            let note = if u.excluded {
                ", left out: too much missing"
            } else if u.estimated {
                ", some estimated"
            } else {
                ""
            };
            bars.push(DayBar {
                bar: Bar {
                    x: at(x + 1.0),
                    y: at(y(u.kwh)),
                    w: at(slot - 2.0),
                    h: at(u.kwh / top * usable),
                    peak: false,
                    label: format!(
                        "{}: {} kWh ({} readings{note})",
                        d.format("%a %-d %b"),
                        kwh(u.kwh),
                        u.readings
                    ),
                },
                edited: u.estimated || u.excluded,
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
    fn estimated_intervals_read_as_local_time_ranges() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap_or_default();
        let starts = [
            "2026-07-01T09:00:00Z",
            "2026-07-01T09:30:00Z",
            "2026-07-01T13:30:00Z",
        ];
        assert_eq!(
            runs(starts.iter().map(|s| t(s))),
            "10:00–11:00, 14:30–15:00",
            "British summer time"
        );
    }

    #[test]
    fn days_and_hours_are_londons() {
        // 23:30 UTC on 1 July is 00:30 on 2 July in London (summer time).
        let readings = [
            reading("2026-07-01T22:30:00Z", 1.0),
            reading("2026-07-01T23:30:00Z", 2.0),
            reading("2026-07-02T23:00:00Z", 4.0),
        ];
        let d = |s: &str| s.parse::<NaiveDate>().unwrap_or_default();
        let days = meter_days(
            &readings,
            d("2026-06-30"),
            d("2026-07-03"),
            London,
            &Rules::default(),
        );
        let t = tally(&readings, &days);
        let day = |s: &str| t.days.get(&d(s)).map(|u| (u.kwh, u.readings, u.excluded));
        assert_eq!(day("2026-06-30"), None, "before its first reading");
        assert_eq!(day("2026-07-01"), Some((1.0, 1, true)));
        assert_eq!(day("2026-07-02"), Some((2.0, 1, true)));
        assert_eq!(day("2026-07-03"), Some((4.0, 1, true)));
        assert_eq!(t.hours[23], (1.0, 1));
        assert_eq!(
            t.hours[0],
            (6.0, 2),
            "two days with readings at 00:00–01:00"
        );
    }
}
