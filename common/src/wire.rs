//! The wire types between services, one definition both sides use: how a SQL answer is
//! asked for ([`AnswerFormat`]) and its JSON form ([`JsonAnswer`]), web ↔ analytics; the
//! fleet's backfill report ([`BackfillReport`]), fleet → web; and the progress items the pages'
//! progress bars poll ([`Progress`]), web → browser; and the queries the console's
//! data-quality page asks of the analysts' `meter_days` table ([`worst_meters_sql`],
//! [`prolonged_estimation_sql`]), web → analytics.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::RunStatus;

/// The meters with the most days left out, then estimated, of the local days `[from, to)`:
/// meter, region, days, estimated, excluded.
pub fn worst_meters_sql(from: NaiveDate, to: NaiveDate) -> String {
    format!(
        "SELECT meter_id, region, count(*) AS days, \
                count(*) FILTER (WHERE NOT excluded AND estimated > 0) AS estimated, \
                count(*) FILTER (WHERE excluded) AS excluded \
         FROM meter_days WHERE day >= DATE '{from}' AND day < DATE '{to}' \
         GROUP BY meter_id, region \
         HAVING count(*) FILTER (WHERE excluded OR estimated > 0) > 0 \
         ORDER BY excluded DESC, estimated DESC, meter_id \
         LIMIT 10"
    )
}

/// Days a meter may run estimated (or missing) before it is reported.
pub const PROLONGED_ESTIMATION_DAYS: u32 = 7;

/// Each run of more than [`PROLONGED_ESTIMATION_DAYS`] consecutive days a meter was
/// estimated or left out, of the local days `[from, to)`: meter, region, days, first and
/// last day. A meter's days are consecutive in `meter_days`, so along a run a day's number
/// less its rank among the meter's edited days is constant.
pub fn prolonged_estimation_sql(from: NaiveDate, to: NaiveDate) -> String {
    format!(
        "SELECT meter_id, region, count(*) AS days, \
                CAST(min(day) AS VARCHAR) AS first_day, CAST(max(day) AS VARCHAR) AS last_day \
         FROM (SELECT meter_id, region, day, \
                      CAST(day AS BIGINT) \
                      - row_number() OVER (PARTITION BY meter_id ORDER BY day) AS run \
               FROM meter_days \
               WHERE day >= DATE '{from}' AND day < DATE '{to}' \
                 AND (excluded OR estimated > 0)) \
         GROUP BY meter_id, region, run \
         HAVING count(*) > {PROLONGED_ESTIMATION_DAYS} \
         ORDER BY days DESC, meter_id"
    )
}

/// How a SQL answer is sent: a JSON table, or a file for the analyst's own tools.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum AnswerFormat {
    #[default]
    Json,
    Csv,
    Parquet,
}

impl AnswerFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            AnswerFormat::Json => "application/json",
            AnswerFormat::Csv => "text/csv; charset=utf-8",
            AnswerFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Its name and a download's file extension: `json`, `csv` or `parquet`.
    pub fn extension(self) -> &'static str {
        self.into()
    }
}

/// A column of a JSON answer: its name and Arrow type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnswerColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A SQL answer as JSON: rows as arrays in column order (timestamps as RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonAnswer {
    pub columns: Vec<AnswerColumn>,
    /// Each row's values in column order: numbers, strings, booleans or null.
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: u64,
    /// More rows were there than the limit let through.
    pub truncated: bool,
    pub row_limit: u64,
    pub elapsed_ms: u64,
}

/// How far the fleet's backfill has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillPhase {
    /// Posting to the meter.
    #[default]
    Posting,
    /// Acknowledged; waiting for the sink to store it.
    Storing,
    Stored,
}

/// The fleet's `GET /backfill`: its history's progress into the store.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BackfillReport {
    pub phase: BackfillPhase,
    pub meters: u64,
    /// Meters whose whole backfill is in the store.
    pub meters_stored: u64,
    pub readings_posted: u64,
    /// Readings the whole backfill holds.
    #[serde(default)]
    pub readings_expected: u64,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
}

/// One progress bar of a page (`static/progress.js` polls them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgressItem {
    /// The bar's element id.
    pub id: String,
    pub value: u64,
    /// `None`: no estimate of the end yet.
    pub max: Option<u64>,
    pub text: String,
    pub done: bool,
    /// For a run's bar: which run, and its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
}

/// What a progress poll answers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub items: Vec<ProgressItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named_alike_in_json_forms_and_files() {
        for (name, format) in [
            ("json", AnswerFormat::Json),
            ("csv", AnswerFormat::Csv),
            ("parquet", AnswerFormat::Parquet),
        ] {
            assert_eq!(name.parse::<AnswerFormat>().ok(), Some(format));
            assert_eq!(format.extension(), name);
            let wire = serde_json::to_string(&format).unwrap_or_default();
            assert_eq!(wire, format!("\"{name}\""));
        }
        assert!("xml".parse::<AnswerFormat>().is_err());
    }
}
