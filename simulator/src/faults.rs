//! How the fleet's meters fail, the way real ones do: a modem drops for a few half hours, a
//! meter goes silent for days and posts its backlog late or never, a retry sends a day's
//! readings twice, a firmware fault reports one interval ten to fifty times the household's
//! usual. Every fault is drawn from the household's seed and the UTC day, so the same seed
//! gives the same faults whether a day is backfilled or posted live, and nothing needs to be
//! remembered between posts.

use std::str::FromStr;

use iot_common::domain::max_kwh;
use rand::rngs::Xoshiro256PlusPlus as SeededRng;
use rand::{RngExt, SeedableRng};

use crate::household::{Household, splitmix};

const DAY_S: i64 = 86_400;
const SLOT_S: i64 = 1800;
const SLOTS_PER_DAY: i64 = DAY_S / SLOT_S;
/// Longest outage, in days.
const MAX_OUTAGE_DAYS: i64 = 5;

/// Chances per meter-day (`late`: per outage).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    /// A gap of 1 to 6 half hours, never sent.
    pub gaps: f64,
    /// An outage starts: the meter is silent for 1 to 5 days.
    pub outages: f64,
    /// Of outages, the share whose backlog is posted when the meter comes back (the rest is
    /// lost).
    pub late: f64,
    /// The day's readings are sent twice.
    pub duplicates: f64,
    /// One interval of the day is ten to fifty times the household's usual.
    pub spikes: f64,
}

impl FaultRates {
    /// A clean fleet: every reading once, on time, as the household used it.
    pub const OFF: Self = Self {
        gaps: 0.0,
        outages: 0.0,
        late: 0.0,
        duplicates: 0.0,
        spikes: 0.0,
    };

    pub fn is_off(&self) -> bool {
        self.gaps == 0.0 && self.outages == 0.0 && self.duplicates == 0.0 && self.spikes == 0.0
    }
}

impl Default for FaultRates {
    /// A few per cent of meter-days: about 3 % with a short gap, 1 % in an outage (a new one
    /// on 0.3 %, lasting 3 days on average, half of them posted late), 2 % sent twice, 0.5 %
    /// with a spike.
    fn default() -> Self {
        Self {
            gaps: 0.03,
            outages: 0.003,
            late: 0.5,
            duplicates: 0.02,
            spikes: 0.005,
        }
    }
}

impl std::fmt::Display for FaultRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::OFF {
            return f.write_str("off");
        }
        write!(
            f,
            "gaps={},outages={},late={},duplicates={},spikes={}",
            self.gaps, self.outages, self.late, self.duplicates, self.spikes
        )
    }
}

/// `on` (the defaults), `off`, or `name=chance` pairs separated by commas, the names of
/// [`FaultRates`]'s fields, each chance from 0 to 1; a name left out keeps its default.
impl FromStr for FaultRates {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "on" => return Ok(Self::default()),
            "off" => return Ok(Self::OFF),
            _ => {}
        }
        let mut rates = Self::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}`: expected name=chance, `on` or `off`"))?;
            let chance: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|c: &f64| (0.0..=1.0).contains(c))
                .ok_or_else(|| format!("`{pair}`: the chance must be a number from 0 to 1"))?;
            let field = match name.trim() {
                "gaps" => &mut rates.gaps,
                "outages" => &mut rates.outages,
                "late" => &mut rates.late,
                "duplicates" => &mut rates.duplicates,
                "spikes" => &mut rates.spikes,
                other => {
                    return Err(format!(
                        "`{other}` is not a fault: gaps, outages, late, duplicates or spikes"
                    ));
                }
            };
            *field = chance;
        }
        Ok(rates)
    }
}

/// What becomes of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Sent,
    /// Never sent.
    Lost,
    /// Held in the meter until its outage ends at `until` (epoch seconds), then sent.
    Held {
        until: i64,
    },
}

/// An outage: silent over `[from, until)`, its backlog sent at `until` when `late`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outage {
    from: i64,
    until: i64,
    late: bool,
}

/// What faults exist, from rates and each household's seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    rates: FaultRates,
}

/// Which draw of a day a random stream is for.
#[derive(Clone, Copy)]
enum Draw {
    Gap = 1,
    Outage,
    Duplicate,
    Spike,
}

impl Faults {
    pub fn new(rates: FaultRates) -> Self {
        Self { rates }
    }

    pub fn rates(&self) -> FaultRates {
        self.rates
    }

    fn rng(h: &Household, day: i64, draw: Draw) -> SeededRng {
        SeededRng::seed_from_u64(splitmix(
            h.seed ^ splitmix(day as u64 ^ (draw as u64) << 56),
        ))
    }

    /// The short gap that starts on `day`: `[from, until)`.
    fn gap(&self, h: &Household, day: i64) -> Option<(i64, i64)> {
        if self.rates.gaps <= 0.0 {
            return None;
        }
        let mut rng = Self::rng(h, day, Draw::Gap);
        (rng.random::<f64>() < self.rates.gaps).then(|| {
            let from = day * DAY_S + rng.random_range(0..SLOTS_PER_DAY) * SLOT_S;
            (from, from + rng.random_range(1..=6) * SLOT_S)
        })
    }

    /// The outage that starts on `day`.
    fn outage(&self, h: &Household, day: i64) -> Option<Outage> {
        if self.rates.outages <= 0.0 {
            return None;
        }
        let mut rng = Self::rng(h, day, Draw::Outage);
        (rng.random::<f64>() < self.rates.outages).then(|| {
            let from = day * DAY_S + rng.random_range(0..SLOTS_PER_DAY) * SLOT_S;
            Outage {
                from,
                until: from + rng.random_range(1..=MAX_OUTAGE_DAYS) * DAY_S,
                late: rng.random::<f64>() < self.rates.late,
            }
        })
    }

    /// The fate of the reading of the half hour starting at `ts`.
    pub fn fate(&self, h: &Household, ts: i64) -> Fate {
        let day = ts.div_euclid(DAY_S);
        for start in (day - MAX_OUTAGE_DAYS)..=day {
            if let Some(o) = self.outage(h, start)
                && (o.from..o.until).contains(&ts)
            {
                return if o.late {
                    Fate::Held { until: o.until }
                } else {
                    Fate::Lost
                };
            }
        }
        // A gap may run past midnight.
        if [day - 1, day]
            .into_iter()
            .filter_map(|d| self.gap(h, d))
            .any(|(from, until)| (from..until).contains(&ts))
        {
            return Fate::Lost;
        }
        Fate::Sent
    }

    /// The held readings whose outage ends in `[from, to)`: they are sent then. Only those
    /// at or after `history` (the fleet's first half hour) exist.
    pub fn released(&self, h: &Household, from: i64, to: i64, history: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let (first, last) = (
            from.div_euclid(DAY_S) - MAX_OUTAGE_DAYS,
            to.div_euclid(DAY_S),
        );
        for day in first..=last {
            if let Some(o) = self.outage(h, day)
                && o.late
                && (from..to).contains(&o.until)
            {
                out.extend(
                    (o.from.max(history)..o.until)
                        .step_by(SLOT_S as usize)
                        .filter(|ts| self.fate(h, *ts) == (Fate::Held { until: o.until })),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether the readings of `ts`'s day are sent twice.
    pub fn duplicated(&self, h: &Household, ts: i64) -> bool {
        self.rates.duplicates > 0.0
            && Self::rng(h, ts.div_euclid(DAY_S), Draw::Duplicate).random::<f64>()
                < self.rates.duplicates
    }

    /// The kWh a spiked reading at `ts` reports instead of the household's use, if it is one.
    pub fn spike(&self, h: &Household, ts: i64) -> Option<f64> {
        if self.rates.spikes <= 0.0 {
            return None;
        }
        let day = ts.div_euclid(DAY_S);
        let mut rng = Self::rng(h, day, Draw::Spike);
        if rng.random::<f64>() >= self.rates.spikes {
            return None;
        }
        let at = day * DAY_S + rng.random_range(0..SLOTS_PER_DAY) * SLOT_S;
        let times = rng.random_range(10.0..=50.0);
        let usual = h.annual_kwh / 365.25 / SLOTS_PER_DAY as f64;
        (at == ts).then(|| ((times * usual).min(max_kwh(SLOT_S as u32)) * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::draw_household;

    fn households(n: usize) -> Vec<Household> {
        let mut rng = SeededRng::seed_from_u64(3);
        (0..n)
            .map(|i| {
                draw_household(
                    &mut rng,
                    format!("F{i}").parse().unwrap_or_else(|e| panic!("{e}")),
                    &"E09000001".parse().unwrap_or_else(|e| panic!("{e}")),
                    51.5,
                    -0.1,
                )
            })
            .collect()
    }

    const START: i64 = 20_000 * DAY_S;
    const DAYS: i64 = 60;

    #[test]
    fn off_sends_every_reading_once_as_used() {
        let f = Faults::new(FaultRates::OFF);
        for h in households(20) {
            for ts in (START..START + 10 * DAY_S).step_by(SLOT_S as usize) {
                assert_eq!(f.fate(&h, ts), Fate::Sent);
                assert_eq!(f.spike(&h, ts), None);
                assert!(!f.duplicated(&h, ts));
            }
        }
    }

    #[test]
    fn the_defaults_break_a_few_per_cent_of_meter_days() {
        let f = Faults::new(FaultRates::default());
        let hh = households(200);
        let (mut days, mut broken, mut spiked, mut held, mut lost) = (0, 0, 0, 0, 0);
        for h in &hh {
            for day in 0..DAYS {
                let from = START + day * DAY_S;
                let fates: Vec<Fate> = (from..from + DAY_S)
                    .step_by(SLOT_S as usize)
                    .map(|ts| f.fate(h, ts))
                    .collect();
                days += 1;
                broken += usize::from(fates.iter().any(|x| *x != Fate::Sent));
                held += fates
                    .iter()
                    .filter(|x| matches!(x, Fate::Held { .. }))
                    .count();
                lost += fates.iter().filter(|x| **x == Fate::Lost).count();
                spiked += (from..from + DAY_S)
                    .step_by(SLOT_S as usize)
                    .filter(|ts| f.spike(h, *ts).is_some())
                    .count();
            }
        }
        let share = broken as f64 / days as f64;
        assert!(
            (0.02..0.08).contains(&share),
            "{share} of meter-days broken"
        );
        assert!(held > 0 && lost > 0, "held {held}, lost {lost}");
        let spikes = spiked as f64 / days as f64;
        assert!(
            (0.001..0.012).contains(&spikes),
            "{spikes} spikes per meter-day"
        );
    }

    #[test]
    fn a_held_backlog_is_released_once_when_its_outage_ends() {
        let f = Faults::new(FaultRates {
            outages: 0.05,
            late: 1.0,
            ..FaultRates::OFF
        });
        let hh = households(30);
        for h in &hh {
            let mut released = Vec::new();
            let mut t = START;
            while t < START + DAYS * DAY_S {
                released.extend(f.released(h, t, t + DAY_S, START));
                t += DAY_S;
            }
            let held: Vec<i64> = (START..START + DAYS * DAY_S)
                .step_by(SLOT_S as usize)
                .filter(|ts| matches!(f.fate(h, *ts), Fate::Held { until } if until < START + DAYS * DAY_S))
                .collect();
            assert_eq!(released, held, "{}", h.meter_id);
        }
    }

    #[test]
    fn spikes_are_ten_to_fifty_times_the_usual_within_the_physical_limit() {
        let f = Faults::new(FaultRates {
            spikes: 1.0,
            ..FaultRates::OFF
        });
        for h in households(50) {
            let usual = h.annual_kwh / 365.25 / 48.0;
            let found: Vec<f64> = (START..START + DAY_S)
                .step_by(SLOT_S as usize)
                .filter_map(|ts| f.spike(&h, ts))
                .collect();
            let [kwh] = found.as_slice() else {
                panic!("one spike a day: {found:?}")
            };
            assert!(*kwh <= max_kwh(1800));
            assert!(*kwh >= (9.99 * usual).min(max_kwh(1800)) && *kwh <= 50.01 * usual);
        }
    }

    #[test]
    fn rates_parse_and_refuse_with_the_reason() {
        assert_eq!("on".parse::<FaultRates>(), Ok(FaultRates::default()));
        assert_eq!("off".parse::<FaultRates>(), Ok(FaultRates::OFF));
        let r: FaultRates = "gaps=0.1, spikes=0"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.gaps, r.spikes, r.outages), (0.1, 0.0, 0.003));
        assert_eq!(r.to_string().parse::<FaultRates>(), Ok(r));
        for bad in ["gaps", "gaps=2", "floods=0.1", "gaps=x"] {
            let e = bad.parse::<FaultRates>().err().unwrap_or_default();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }
}
