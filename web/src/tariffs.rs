//! Tariffs as data, and bills priced on them in exact money. A tariff is a unit rate (one
//! rate, or a rate outside off-peak windows of local clock time and a rate inside each) and
//! a daily standing charge; the shipped ones are in `tariffs/default.toml`, an operator's own
//! in the file `IOT_TARIFFS` names, checked when the service starts.
//!
//! Exactness: prices are kept in ten-thousandths of a penny and energy in micro-kWh (a
//! reading's kWh to six decimal places), both integers, so the sum of a year of half hours
//! is exact. A bill's lines (the energy at each rate, the standing charge) are each rounded
//! to the nearest penny (half away from zero) once, and the bill is the sum of its lines, as
//! printed bills are.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// The shipped tariffs.
pub const DEFAULT_TARIFFS: &str = include_str!("../tariffs/default.toml");

const MINUTES: u16 = 24 * 60;
/// Ten-thousandths of a penny in a penny.
const PRICE_SCALE: i64 = 10_000;
/// Micro-kWh in a kWh.
const ENERGY_SCALE: f64 = 1e6;
/// The highest price a file may give, in pence: far above any tariff, low enough that no
/// sum of a household's bill overflows.
const MAX_PRICE_PENCE: f64 = 10_000.0;

/// An amount of money in whole pence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pence(pub i64);

impl Pence {
    /// Pounds as a page prints them: "£1,234.56".
    pub fn pounds(self) -> String {
        let sign = if self.0 < 0 { "−" } else { "" };
        let p = self.0.unsigned_abs();
        format!("{sign}£{}.{:02}", crate::present::count(p / 100), p % 100)
    }

    /// A share of this amount, rounded to the penny: `self × n / d`.
    pub fn part(self, n: i64, d: i64) -> Pence {
        Pence(round_div(i128::from(self.0) * i128::from(n), i128::from(d)))
    }
}

impl std::ops::Add for Pence {
    type Output = Pence;
    fn add(self, o: Pence) -> Pence {
        Pence(self.0 + o.0)
    }
}

impl std::ops::Sub for Pence {
    type Output = Pence;
    fn sub(self, o: Pence) -> Pence {
        Pence(self.0 - o.0)
    }
}

impl std::iter::Sum for Pence {
    fn sum<I: Iterator<Item = Pence>>(iter: I) -> Pence {
        iter.fold(Pence(0), |a, b| a + b)
    }
}

/// A price per kWh or per day, in ten-thousandths of a penny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(i64);

impl Price {
    /// The price of `pence`, which must be finite, not negative, below 10,000p and given
    /// to at most four decimal places.
    pub fn pence(pence: f64) -> Result<Price, String> {
        if !pence.is_finite() || pence < 0.0 {
            return Err(format!("{pence} is not a price (pence, not negative)"));
        }
        if pence >= MAX_PRICE_PENCE {
            return Err(format!("{pence}p is more than {MAX_PRICE_PENCE}p"));
        }
        let scaled = pence * PRICE_SCALE as f64;
        let whole = scaled.round();
        // A decimal given to four places is within a rounding error of a whole number here.
        if (scaled - whole).abs() > 1e-6 {
            return Err(format!("{pence}p has more than four decimal places"));
        }
        Ok(Price(whole as i64))
    }

    /// "25.73p", with as many decimals as it has (at least two).
    pub fn text(self) -> String {
        let mut decimals = format!("{:04}", self.0 % PRICE_SCALE);
        while decimals.len() > 2 && decimals.ends_with('0') {
            decimals.pop();
        }
        format!("{}.{decimals}p", self.0 / PRICE_SCALE)
    }
}

/// Micro-kWh of `kwh`.
pub fn micro_kwh(kwh: f64) -> i64 {
    (kwh * ENERGY_SCALE).round() as i64
}

/// `n / d` rounded to the nearest whole number, halves away from zero (`d > 0`).
fn round_div(n: i128, d: i128) -> i64 {
    let q = (n.abs() + d / 2) / d;
    let q = if n < 0 { -q } else { q };
    i64::try_from(q).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// An off-peak window of local clock time, `[from, to)` in minutes after midnight; across
/// midnight when `to < from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: u16,
    pub to: u16,
    pub rate: Price,
}

impl Window {
    fn contains(&self, minute: u16) -> bool {
        if self.from < self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }

    /// "23:30–06:30".
    pub fn hours(&self) -> String {
        let t = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        format!("{}–{}", t(self.from), t(self.to))
    }
}

/// One tariff, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    pub id: String,
    pub name: String,
    pub applies_from: NaiveDate,
    pub applies_to: Option<NaiveDate>,
    pub source: String,
    pub standing_charge: Price,
    /// The rate outside every off-peak window (all day when there is none).
    pub unit_rate: Price,
    pub off_peak: Vec<Window>,
}

/// A bill's energy at one rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnergyLine {
    pub rate: Price,
    /// Off peak (inside a window) or not.
    pub off_peak: bool,
    pub micro_kwh: i64,
    pub cost: Pence,
}

impl EnergyLine {
    pub fn kwh(&self) -> f64 {
        self.micro_kwh as f64 / ENERGY_SCALE
    }
}

/// What a stretch of days costs on a tariff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    /// The energy at each rate that was used, the day rate first.
    pub energy: Vec<EnergyLine>,
    pub days: u32,
    pub standing: Pence,
    pub total: Pence,
}

impl Bill {
    pub fn energy_cost(&self) -> Pence {
        self.energy.iter().map(|l| l.cost).sum()
    }
}

impl Tariff {
    /// The rate at `minute` of the local day, and whether it is an off-peak one.
    pub fn rate_at(&self, minute: u16) -> (Price, bool) {
        self.off_peak
            .iter()
            .find(|w| w.contains(minute))
            .map_or((self.unit_rate, false), |w| (w.rate, true))
    }

    /// Prices energy used at local clock minutes (`(minute of the day, kWh)`, each at the
    /// rate in force at that minute) over `days` days of standing charge.
    pub fn bill_by_clock(&self, energy: impl IntoIterator<Item = (u16, f64)>, days: u32) -> Bill {
        let mut by_rate: BTreeMap<(bool, Price), i64> = BTreeMap::new();
        for (minute, kwh) in energy {
            let (rate, off) = self.rate_at(minute % MINUTES);
            *by_rate.entry((off, rate)).or_default() += micro_kwh(kwh);
        }
        let energy: Vec<EnergyLine> = by_rate
            .into_iter()
            .map(|((off_peak, rate), micro_kwh)| EnergyLine {
                rate,
                off_peak,
                micro_kwh,
                cost: Pence(round_div(
                    i128::from(micro_kwh) * i128::from(rate.0),
                    i128::from(PRICE_SCALE) * ENERGY_SCALE as i128,
                )),
            })
            .collect();
        let standing = Pence(round_div(
            i128::from(days) * i128::from(self.standing_charge.0),
            i128::from(PRICE_SCALE),
        ));
        let total = energy.iter().map(|l| l.cost).sum::<Pence>() + standing;
        Bill {
            energy,
            days,
            standing,
            total,
        }
    }

    /// Prices intervals (`(start, kWh)`), each at the rate in force at its start in `tz`'s
    /// clock, over `days` days of standing charge.
    pub fn bill(
        &self,
        intervals: impl IntoIterator<Item = (DateTime<Utc>, f64)>,
        tz: Tz,
        days: u32,
    ) -> Bill {
        self.bill_by_clock(by_clock(intervals, tz), days)
    }

    /// "from 1 Jul 2025 to 30 Sep 2025" or "from 1 Jul 2025".
    pub fn period(&self) -> String {
        let d = |d: NaiveDate| d.format("%-d %b %Y").to_string();
        match self.applies_to {
            Some(to) => format!("from {} to {}", d(self.applies_from), d(to)),
            None => format!("from {}", d(self.applies_from)),
        }
    }

    /// The rates in words: "25.73p/kWh" or "34p/kWh, 14p/kWh 23:30–06:30".
    pub fn rates_text(&self) -> String {
        let mut parts = vec![format!("{}/kWh", self.unit_rate.text())];
        parts.extend(
            self.off_peak
                .iter()
                .map(|w| format!("{}/kWh {}", w.rate.text(), w.hours())),
        );
        format!(
            "{}; standing charge {}/day",
            parts.join(", "),
            self.standing_charge.text()
        )
    }
}

/// Intervals (`(start, kWh)`) as energy at `tz`'s clock minutes, what
/// [`Tariff::bill_by_clock`] prices: convert once to price the same days on every tariff.
pub fn by_clock(
    intervals: impl IntoIterator<Item = (DateTime<Utc>, f64)>,
    tz: Tz,
) -> impl Iterator<Item = (u16, f64)> {
    intervals.into_iter().map(move |(t, kwh)| {
        let local = t.with_timezone(&tz);
        ((local.hour() * 60 + local.minute()) as u16, kwh)
    })
}

/// The tariffs on offer, in the file's order (the first is a page's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariffs(Vec<Tariff>);

#[derive(Debug, thiserror::Error)]
pub enum TariffError {
    #[error("cannot read the tariff file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the tariff file {path} is not valid {format}: {message}")]
    Syntax {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("the tariff file {path}: tariff {index} ({id}): {message}")]
    Entry {
        path: String,
        /// 1-based, in the file's order.
        index: usize,
        id: String,
        message: String,
    },
    #[error("the tariff file {path} has no tariff")]
    Empty { path: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tariff: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: Option<String>,
    name: Option<String>,
    applies_from: Option<String>,
    applies_to: Option<String>,
    source: Option<String>,
    standing_charge_p_per_day: Option<f64>,
    unit_rate_p_per_kwh: Option<f64>,
    #[serde(default)]
    off_peak: Vec<WindowEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowEntry {
    from: Option<String>,
    to: Option<String>,
    unit_rate_p_per_kwh: Option<f64>,
}

impl Tariffs {
    /// The tariffs of `path` (TOML, or JSON when it ends in `.json`), or the shipped ones.
    pub fn load(path: Option<&Path>) -> Result<Tariffs, TariffError> {
        let Some(path) = path else {
            return Self::parse(DEFAULT_TARIFFS, "the shipped tariffs", false);
        };
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TariffError::Read {
            path: name.clone(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, &name, json)
    }

    /// Parses and checks a tariff file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str, json: bool) -> Result<Tariffs, TariffError> {
        let syntax = |format: &'static str, message: String| TariffError::Syntax {
            path: path.to_owned(),
            format,
            message,
        };
        let file: File = if json {
            serde_json::from_str(text).map_err(|e| syntax("JSON", e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| syntax("TOML", e.to_string().trim().to_owned()))?
        };
        if file.tariff.is_empty() {
            return Err(TariffError::Empty {
                path: path.to_owned(),
            });
        }
        let mut tariffs: Vec<Tariff> = Vec::with_capacity(file.tariff.len());
        for (i, entry) in file.tariff.into_iter().enumerate() {
            let id = entry.id.clone().unwrap_or_default();
            let err = |message: String| TariffError::Entry {
                path: path.to_owned(),
                index: i + 1,
                id: if id.is_empty() {
                    "no id".to_owned()
                } else {
                    format!("`{id}`")
                },
                message,
            };
            let tariff = check(entry).map_err(err)?;
            if tariffs.iter().any(|t| t.id == tariff.id) {
                return Err(err("another tariff has this id".to_owned()));
            }
            tariffs.push(tariff);
        }
        Ok(Tariffs(tariffs))
    }

    pub fn all(&self) -> &[Tariff] {
        &self.0
    }

    /// The tariff a page starts on: the file's first.
    pub fn default_tariff(&self) -> &Tariff {
        // `parse` refuses a file without tariffs, so there is always a first.
        &self.0[0]
    }

    pub fn get(&self, id: &str) -> Option<&Tariff> {
        self.0.iter().find(|t| t.id == id)
    }
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("`{field}` is missing"))
}

fn price(v: Option<f64>, field: &str) -> Result<Price, String> {
    Price::pence(required(v, field)?).map_err(|e| format!("`{field}`: {e}"))
}

fn date(v: &str, field: &str) -> Result<NaiveDate, String> {
    v.parse()
        .map_err(|_| format!("`{field}` `{v}` is not a date (YYYY-MM-DD)"))
}

fn clock(v: Option<String>, field: &str) -> Result<u16, String> {
    let v = required(v, field)?;
    NaiveTime::parse_from_str(&v, "%H:%M")
        .map(|t| (t.hour() * 60 + t.minute()) as u16)
        .map_err(|_| format!("`{field}` `{v}` is not a time of day (HH:MM, 00:00 to 23:59)"))
}

fn check(e: Entry) -> Result<Tariff, String> {
    let id = required(e.id, "id")?;
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("`id` must be 1 to 64 letters, digits, `-` or `_`".to_owned());
    }
    let name = required(e.name, "name")?.trim().to_owned();
    if name.is_empty() {
        return Err("`name` is empty".to_owned());
    }
    let source = required(e.source, "source")?.trim().to_owned();
    if source.is_empty() {
        return Err("`source` is empty: say where the rates come from".to_owned());
    }
    let applies_from = date(&required(e.applies_from, "applies_from")?, "applies_from")?;
    let applies_to = e.applies_to.map(|v| date(&v, "applies_to")).transpose()?;
    if applies_to.is_some_and(|to| to < applies_from) {
        return Err("`applies_to` is before `applies_from`".to_owned());
    }
    let standing_charge = price(e.standing_charge_p_per_day, "standing_charge_p_per_day")?;
    let unit_rate = price(e.unit_rate_p_per_kwh, "unit_rate_p_per_kwh")?;
    let mut off_peak: Vec<Window> = Vec::new();
    for (k, w) in e.off_peak.into_iter().enumerate() {
        let at = |m: String| format!("off_peak {}: {m}", k + 1);
        let window = Window {
            from: clock(w.from, "from").map_err(at)?,
            to: clock(w.to, "to").map_err(at)?,
            rate: price(w.unit_rate_p_per_kwh, "unit_rate_p_per_kwh").map_err(at)?,
        };
        if window.from == window.to {
            return Err(at("`from` and `to` are the same time".to_owned()));
        }
        if let Some(j) = off_peak
            .iter()
            .position(|o| (0..MINUTES).any(|m| o.contains(m) && window.contains(m)))
        {
            return Err(at(format!("overlaps off_peak {}", j + 1)));
        }
        off_peak.push(window);
    }
    Ok(Tariff {
        id,
        name,
        applies_from,
        applies_to,
        source,
        standing_charge,
        unit_rate,
        off_peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use chrono_tz::Europe::London;

    const FILE: &str = r#"
[[tariff]]
id = "flat"
name = "Flat"
applies_from = "2026-01-01"
source = "test"
standing_charge_p_per_day = 53.8
unit_rate_p_per_kwh = 24.5

[[tariff]]
id = "night"
name = "Night"
applies_from = "2026-01-01"
source = "test"
standing_charge_p_per_day = 45.1234
unit_rate_p_per_kwh = 30.25

[[tariff.off_peak]]
from = "23:30"
to = "06:30"
unit_rate_p_per_kwh = 12.5
"#;

    fn tariffs() -> Tariffs {
        Tariffs::parse(FILE, "test.toml", false).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tariff(id: &str) -> Tariff {
        tariffs()
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no tariff {id}"))
    }

    /// Every half hour of London's local day `d`, `kwh(local hour, minute)` each.
    fn day_of(d: NaiveDate, kwh: impl Fn(u32, u32) -> f64) -> Vec<(DateTime<Utc>, f64)> {
        let start = crate::export::day_start(London, d);
        let next = crate::export::day_start(London, d + Duration::days(1));
        let mut out = Vec::new();
        let mut t = start;
        while t < next {
            let local = t.with_timezone(&London);
            out.push((t, kwh(local.hour(), local.minute())));
            t += Duration::minutes(30);
        }
        out
    }

    /// 1 kWh in each half hour from 23:30 to 06:30 (the test night tariff's window), 0.2 kWh
    /// in the others.
    fn at_night(h: u32, m: u32) -> f64 {
        if !(390..1410).contains(&(h * 60 + m)) {
            1.0
        } else {
            0.2
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn the_shipped_tariffs_load() {
        let t = Tariffs::load(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.default_tariff().id, "price-cap");
        assert_eq!(t.default_tariff().unit_rate, Price(257_300));
        let night = t.get("night").unwrap_or_else(|| panic!("night"));
        assert_eq!(night.off_peak.len(), 1);
        assert_eq!(
            night.rates_text(),
            "34.00p/kWh, 14.00p/kWh 23:30–06:30; standing charge 51.37p/day"
        );
    }

    #[test]
    fn a_flat_bill_is_the_hand_computation_to_the_penny() {
        // 28 days of 48 half hours at 0.123 kWh: 165.312 kWh × 24.5p = 4050.144p → £40.50;
        // 28 × 53.8p = 1506.4p → £15.06.
        let flat = tariff("flat");
        let intervals: Vec<_> = (0..28)
            .flat_map(|k| day_of(d("2026-06-01") + Duration::days(k), |_, _| 0.123))
            .collect();
        let bill = flat.bill(intervals, London, 28);
        assert_eq!(bill.energy.len(), 1);
        assert_eq!(bill.energy[0].micro_kwh, 165_312_000);
        assert_eq!(bill.energy[0].cost, Pence(4050));
        assert_eq!(bill.standing, Pence(1506));
        assert_eq!(bill.total, Pence(5556));
        assert_eq!(bill.total.pounds(), "£55.56");
    }

    #[test]
    fn the_clocks_going_back_bills_a_25_hour_day_and_going_forward_a_23_hour_one() {
        let flat = tariff("flat");
        // 25 October 2026: 50 half hours; 29 March 2026: 46.
        let long = day_of(d("2026-10-25"), |_, _| 0.5);
        let short = day_of(d("2026-03-29"), |_, _| 0.5);
        assert_eq!((long.len(), short.len()), (50, 46));
        // 25 kWh × 24.5p = 612.5p → 613p (half away from zero); 53.8p → 54p.
        let bill = flat.bill(long, London, 1);
        assert_eq!(bill.energy[0].cost, Pence(613));
        assert_eq!(bill.standing, Pence(54));
        assert_eq!(bill.total, Pence(667));
        // 23 kWh × 24.5p = 563.5p → 564p.
        assert_eq!(flat.bill(short, London, 1).total, Pence(564 + 54));
    }

    #[test]
    fn a_two_rate_bill_prices_each_half_hour_by_the_local_clock_across_midnight() {
        let night = tariff("night");
        // 1 kWh in each off-peak half hour (23:30–06:30: 14 of them), 0.2 kWh in the others
        // (34): 14 kWh × 12.5p = 175p; 6.8 kWh × 30.25p = 205.7p → 206p; 45.1234p → 45p.
        let day = day_of(d("2026-07-15"), at_night);
        let bill = night.bill(day, London, 1);
        let off = bill.energy.iter().find(|l| l.off_peak).cloned();
        let peak = bill.energy.iter().find(|l| !l.off_peak).cloned();
        assert_eq!(
            off.map(|l| (l.micro_kwh, l.cost)),
            Some((14_000_000, Pence(175)))
        );
        assert_eq!(
            peak.map(|l| (l.micro_kwh, l.cost)),
            Some((6_800_000, Pence(206)))
        );
        assert_eq!(bill.standing, Pence(45));
        assert_eq!(bill.total, Pence(426));

        // On the day the clocks go back, 01:00–02:00 happens twice, both times off peak:
        // 16 off-peak half hours, 34 others.
        let long = day_of(d("2026-10-25"), at_night);
        let bill = night.bill(long, London, 1);
        assert_eq!(
            bill.energy.iter().find(|l| l.off_peak).map(|l| l.micro_kwh),
            Some(16_000_000)
        );
        // 16 × 12.5p = 200p; 6.8 × 30.25p = 205.7p → 206p; 45p.
        assert_eq!(bill.total, Pence(200 + 206 + 45));
    }

    #[test]
    fn a_night_heavy_home_is_cheaper_on_the_night_tariff_and_a_daytime_one_on_the_flat() {
        let (flat, night) = (tariff("flat"), tariff("night"));
        let at_night = |h: u32, _| if !(7..23).contains(&h) { 1.0 } else { 0.1 };
        let by_day = |h: u32, _| if (9..18).contains(&h) { 1.0 } else { 0.1 };
        let cost = |t: &Tariff, f: &dyn Fn(u32, u32) -> f64| {
            t.bill(day_of(d("2026-05-05"), f), London, 7).total
        };
        assert!(cost(&night, &at_night) < cost(&flat, &at_night));
        assert!(cost(&flat, &by_day) < cost(&night, &by_day));
    }

    #[test]
    fn a_bad_entry_is_named() {
        let bad = |text: &str| match Tariffs::parse(text, "mine.toml", false) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {text}"),
        };
        let base = |extra: &str| {
            format!(
                "[[tariff]]\nid = \"a\"\nname = \"A\"\napplies_from = \"2026-01-01\"\nsource = \"s\"\n\
                 standing_charge_p_per_day = 50\nunit_rate_p_per_kwh = 25\n{extra}"
            )
        };
        let two = format!(
            "{}\n[[tariff]]\nid = \"b\"\nname = \"B\"\napplies_from = \"2026-01-01\"\nsource = \"s\"\nstanding_charge_p_per_day = 50\nunit_rate_p_per_kwh = -1\n",
            base("")
        );
        assert_eq!(
            bad(&two),
            "the tariff file mine.toml: tariff 2 (`b`): `unit_rate_p_per_kwh`: -1 is not a price (pence, not negative)"
        );
        let e = bad(&base(
            "[[tariff.off_peak]]\nfrom = \"24:00\"\nto = \"06:00\"\nunit_rate_p_per_kwh = 10\n",
        ));
        assert!(
            e.contains("tariff 1 (`a`): off_peak 1: `from` `24:00` is not a time of day"),
            "{e}"
        );
        let e = bad(&base(
            "[[tariff.off_peak]]\nfrom = \"23:00\"\nto = \"06:00\"\nunit_rate_p_per_kwh = 10\n\
             [[tariff.off_peak]]\nfrom = \"05:00\"\nto = \"07:00\"\nunit_rate_p_per_kwh = 10\n",
        ));
        assert!(e.contains("off_peak 2: overlaps off_peak 1"), "{e}");
        let e =
            bad(&base("").replace("unit_rate_p_per_kwh = 25", "unit_rate_p_per_kwh = 25.00001"));
        assert!(e.contains("more than four decimal places"), "{e}");
        let e = bad(&format!("{}\n{}", base(""), base("")));
        assert!(
            e.contains("tariff 2 (`a`): another tariff has this id"),
            "{e}"
        );
        let e = bad(&base("").replace("source = \"s\"\n", ""));
        assert!(e.contains("`source` is missing"), "{e}");
        let e = bad(&base("colour = \"red\"\n"));
        assert!(e.contains("not valid TOML") && e.contains("colour"), "{e}");
        assert!(bad("").contains("has no tariff"));
        let json = r#"{"tariff": [{"id": "x", "name": "X", "applies_from": "2026-13-01", "source": "s", "standing_charge_p_per_day": 1, "unit_rate_p_per_kwh": 1}]}"#;
        let e = match Tariffs::parse(json, "mine.json", true) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert!(
            e.contains("tariff 1 (`x`): `applies_from` `2026-13-01` is not a date"),
            "{e}"
        );
    }

    #[test]
    fn money_prints_as_pounds() {
        assert_eq!(Pence(123_456).pounds(), "£1,234.56");
        assert_eq!(Pence(-5).pounds(), "−£0.05");
        assert_eq!(Pence(100).part(1, 12), Pence(8));
        assert_eq!(Price(257_300).text(), "25.73p");
        assert_eq!(Price(451_234).text(), "45.1234p");
    }
}
