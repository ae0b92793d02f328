//! A region's figures over past runs as a small SVG line chart: the median, mean and p90 of
//! daily use at the end of each run's window, on one scale from zero.

use chrono::{DateTime, Utc};
use iot_common::RegionProfile;

use crate::present::{day, kwh};

/// One line of the chart: its class (which figure) and its points.
pub struct Line {
    pub class: &'static str,
    pub points: String,
}

/// A dot with what it shows, for the hover title.
pub struct Dot {
    pub x: String,
    pub y: String,
    pub label: String,
}

pub struct Trend {
    pub width: u32,
    pub height: u32,
    pub lines: Vec<Line>,
    pub dots: Vec<Dot>,
    /// The first and last window ends, and the top of the scale.
    pub first: String,
    pub last: String,
    pub top: String,
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;

/// The chart of `history` (any order), or `None` with fewer than two runs to draw.
pub fn trend(history: &[RegionProfile]) -> Option<Trend> {
    let mut points: Vec<&RegionProfile> = history.iter().collect();
    points.sort_by_key(|p| (p.window_to, p.computed_at));
    if points.len() < 2 {
        return None;
    }
    let t = |p: &RegionProfile| p.window_to.timestamp() as f64;
    let (t0, t1) = (t(points[0]), t(points[points.len() - 1]));
    let span = (t1 - t0).max(1.0);
    let top = points
        .iter()
        .map(|p| p.figures.p90_daily_kwh.max(p.figures.avg_daily_kwh))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let x = |p: &RegionProfile| LEFT + (t(p) - t0) / span * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (HEIGHT - TOP - BOTTOM);
    let line = |class, f: fn(&RegionProfile) -> f64| Line {
        class,
        points: points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p), y(f(p))))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let dots = points
        .iter()
        .map(|p| Dot {
            x: format!("{:.1}", x(p)),
            y: format!("{:.1}", y(p.figures.p50_daily_kwh)),
            label: format!(
                "{}: median {} kWh, mean {} kWh, p90 {} kWh",
                end_day(p.window_to),
                kwh(p.figures.p50_daily_kwh),
                kwh(p.figures.avg_daily_kwh),
                kwh(p.figures.p90_daily_kwh)
            ),
        })
        .collect();
    Some(Trend {
        width: WIDTH as u32,
        height: HEIGHT as u32,
        lines: vec![
            line("p90", |p| p.figures.p90_daily_kwh),
            line("avg", |p| p.figures.avg_daily_kwh),
            line("p50", |p| p.figures.p50_daily_kwh),
        ],
        dots,
        first: end_day(points[0].window_to),
        last: end_day(points[points.len() - 1].window_to),
        top: kwh(top),
    })
}

/// The last day a window covers.
fn end_day(window_to: DateTime<Utc>) -> String {
    day(window_to - chrono::Duration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot_common::ProfileFigures;

    fn at(days: i64, p50: f64) -> RegionProfile {
        let end = DateTime::from_timestamp(1_790_000_000 + days * 86_400, 0).unwrap_or_default();
        RegionProfile {
            run_id: format!("run-{days}"),
            window_from: end - chrono::Duration::days(28),
            window_to: end,
            computed_at: end,
            published: true,
            figures: ProfileFigures {
                region: "E09000001".parse().unwrap_or_else(|e| panic!("{e}")),
                meters: 3,
                readings: 100,
                avg_daily_kwh: p50 * 1.1,
                p50_daily_kwh: p50,
                p90_daily_kwh: p50 * 2.0,
                weekday_avg_daily_kwh: None,
                weekend_avg_daily_kwh: None,
                hourly_kwh: [0.0; 24],
                peak_hour: 0,
                meter_daily_percentiles: Vec::new(),
                meter_days: Default::default(),
            },
        }
    }

    #[test]
    fn two_runs_or_more_draw_three_lines_in_time_order() {
        assert!(trend(&[at(0, 5.0)]).is_none(), "one point is no trend");
        let chart = trend(&[at(7, 6.0), at(0, 5.0), at(14, 4.0)])
            .unwrap_or_else(|| panic!("three runs make a trend"));
        assert_eq!(chart.lines.len(), 3);
        let p50 = &chart.lines[2];
        assert_eq!(p50.class, "p50");
        let xs: Vec<f64> = p50
            .points
            .split(' ')
            .map(|pt| {
                pt.split(',')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(f64::NAN)
            })
            .collect();
        assert_eq!(xs, vec![LEFT, (LEFT + WIDTH - RIGHT) / 2.0, WIDTH - RIGHT]);
        assert_eq!(chart.top, "12.00", "p90 of the highest run");
        assert!(chart.dots[0].label.contains("median 5.00 kWh"));
    }
}
