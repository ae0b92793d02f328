//! A meter's data to take away, as CSV: its readings, with the half hours VEE estimated
//! flagged as such, and its daily totals with each day's verdict. The body is streamed,
//! read from the store a week of local days at a time (with the two weeks before each week
//! that estimation looks back on), so memory stays that of one week whatever the window.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use iot_common::domain::{KNOWN_INTERVALS_S, MeterId, Reading};
use iot_common::problem::{ApiError, ErrorCode};
use iot_common::quality::{MeterDay, Quality, Rules, meter_days};
use iot_common::store::{Store, StoreError};

/// The longest window a download covers: the readings' retention (730 days) and the day in
/// progress.
pub const MAX_WINDOW_DAYS: i64 = 731;
/// Local days read from the store at once.
const CHUNK_DAYS: u64 = 7;
/// Days before a chunk that estimation may take a reference day from (two weeks back).
const LOOKBACK_DAYS: u64 = 14;

/// What a download holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Every half hour: the stored readings, and VEE's estimates where none is stored.
    Readings,
    /// One row per local day.
    Daily,
}

impl Export {
    fn header(self) -> &'static str {
        match self {
            Export::Readings => "start,local_start,interval_s,kwh,quality\n",
            Export::Daily => "date,readings,expected,measured_kwh,kwh,status,flags\n",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Export::Readings => "readings",
            Export::Daily => "daily",
        }
    }
}

/// A download: one meter's `kind` over `from <= t < to`, in `tz`'s local days.
#[derive(Clone)]
pub struct Download {
    store: Arc<dyn Store>,
    meter: MeterId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: Tz,
    kind: Export,
}

/// UTC instant at which local day `d` starts in `tz`.
pub fn day_start(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_time(NaiveTime::MIN);
    tz.from_local_datetime(&midnight)
        .earliest()
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

/// Where the stream stands: the next local day to write, and whether the header went out.
struct Cursor {
    next: NaiveDate,
    header: bool,
}

impl Download {
    /// A download of `meter`'s `kind` over `from <= t < to` in London's local days; 400 for
    /// a window longer than [`MAX_WINDOW_DAYS`].
    pub fn london(
        store: Arc<dyn Store>,
        meter: MeterId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: Export,
    ) -> Result<Download, ApiError> {
        // An hour's slack: whole local days across a change of the clocks may be an hour longer.
        if to - from > chrono::Duration::days(MAX_WINDOW_DAYS) + chrono::Duration::hours(1) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "a download covers at most {MAX_WINDOW_DAYS} days (the readings' retention)"
                ),
            )
            .field("from"));
        }
        Ok(Download {
            store,
            meter,
            from,
            to,
            tz: chrono_tz::Europe::London,
            kind,
        })
    }

    fn first_day(&self) -> NaiveDate {
        self.from.with_timezone(&self.tz).date_naive()
    }

    fn last_day(&self) -> NaiveDate {
        (self.to - chrono::Duration::nanoseconds(1))
            .with_timezone(&self.tz)
            .date_naive()
    }

    /// `meter-readings-2026-01-01-to-2026-12-31.csv`.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}-to-{}.csv",
            self.meter,
            self.kind.name(),
            self.first_day(),
            self.last_day()
        )
    }

    /// The CSV answer, streamed; a store error mid-way ends the body early (the client
    /// sees a cut transfer, never a short file passed off as whole).
    pub fn response(self) -> Response {
        let disposition = format!("attachment; filename=\"{}\"", self.file_name());
        let cursor = Cursor {
            next: self.first_day(),
            header: false,
        };
        let stream = futures::stream::try_unfold((self, cursor), |(d, mut c)| async move {
            if !c.header {
                c.header = true;
                return Ok(Some((
                    Bytes::from_static(d.kind.header().as_bytes()),
                    (d, c),
                )));
            }
            if c.next > d.last_day() {
                return Ok(None);
            }
            let end = (c.next + Days::new(CHUNK_DAYS)).min(d.last_day() + Days::new(1));
            let bytes = d.chunk(c.next, end).await.inspect_err(|e| {
                tracing::warn!(meter = %d.meter, error = %e, "download cut short");
            })?;
            c.next = end;
            Ok::<_, StoreError>(Some((Bytes::from(bytes), (d, c))))
        });
        let mut res = Body::from_stream(stream).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        res
    }

    /// The rows of local days `[first, end)`.
    async fn chunk(&self, first: NaiveDate, end: NaiveDate) -> Result<Vec<u8>, StoreError> {
        let look_from = first - Days::new(LOOKBACK_DAYS);
        // One day past the chunk, so a gap across its last midnight is seen whole.
        let look_to = end + Days::new(1);
        let span_days = (look_to - look_from).num_days().max(1) as usize;
        let most_per_day = 86_400 / KNOWN_INTERVALS_S[0] as usize;
        let readings = self
            .store
            .meter_readings(
                &self.meter,
                day_start(self.tz, look_from),
                day_start(self.tz, look_to),
                span_days * most_per_day,
            )
            .await?;
        let days = meter_days(&readings, look_from, end, self.tz, &Rules::default());
        let mut out = String::new();
        for day in days.iter().filter(|m| m.day >= first && m.day < end) {
            match self.kind {
                Export::Readings => self.reading_rows(&mut out, day, &readings),
                Export::Daily => daily_row(&mut out, day),
            }
        }
        Ok(out.into_bytes())
    }

    fn reading_rows(&self, out: &mut String, day: &MeterDay, readings: &[Reading]) {
        let day_end = day_start(self.tz, day.day + Days::new(1));
        let questionable = day.questionable();
        let mut rows: Vec<(DateTime<Utc>, u32, f64, &str)> = readings
            .iter()
            .filter(|r| r.ts >= day.start && r.ts < day_end)
            .map(|r| {
                let quality = if Some(r.ts) == questionable {
                    "questionable"
                } else {
                    "measured"
                };
                (r.ts, r.interval_s, r.kwh, quality)
            })
            .collect();
        rows.extend(
            day.estimated()
                .filter(|e| Some(e.0) != questionable)
                .map(|(t, kwh, q)| {
                    let quality = match q {
                        Quality::Interpolated => "estimated_interpolated",
                        Quality::ReferenceDay => "estimated_reference_day",
                        Quality::Questionable => "questionable",
                    };
                    (t, iot_common::quality::SLOT_S as u32, kwh, quality)
                }),
        );
        rows.sort_by_key(|r| r.0);
        for (t, interval, kwh, quality) in rows {
            if t < self.from || t >= self.to {
                continue;
            }
            let local = t.with_timezone(&self.tz);
            out.push_str(&format!(
                "{},{},{interval},{kwh},{quality}\n",
                t.to_rfc3339_opts(SecondsFormat::Secs, true),
                local.to_rfc3339_opts(SecondsFormat::Secs, false),
            ));
        }
    }
}

/// A day's sum to six decimals (a micro-kWh, as bills count), without the binary noise of
/// a float sum ("1.8170000000000002" is "1.817").
fn micro(kwh: f64) -> String {
    let s = format!("{kwh:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn daily_row(out: &mut String, day: &MeterDay) {
    let v = &day.verdict;
    let status = if v.excluded() {
        "excluded"
    } else if v.estimated() {
        "estimated"
    } else {
        "complete"
    };
    let kwh = v.kwh.map(micro).unwrap_or_default();
    let flags: Vec<&str> = v.flags.names().collect();
    out.push_str(&format!(
        "{},{},{},{},{kwh},{status},{}\n",
        day.day,
        day.readings,
        day.expected,
        micro(day.raw_kwh),
        flags.join("|")
    ));
}
