//! The console's SQL page: an analyst's query over the readings and profiles, answered as
//! a table, or as a CSV or Parquet download.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use iot_common::problem::{ApiError, ErrorCode};
use iot_common::wire::{AnswerFormat, JsonAnswer};
use serde::Deserialize;

use super::AnalystPage;
use crate::access::{SameSite, SignedInAnalyst};
use crate::respond;
use crate::state::{QueryAnswer, WebState};

/// What the SQL page starts with: a query over the last week that runs as it stands.
const EXAMPLE_SQL: &str = "SELECT region, count(DISTINCT meter_id) AS meters, count(*) AS readings, \
round(sum(kwh), 1) AS kwh\nFROM readings\nWHERE ts >= now() - INTERVAL '7 days'\n\
GROUP BY region\nORDER BY kwh DESC";

struct Column {
    name: String,
    kind: String,
}

struct Cell {
    text: String,
    number: bool,
}

struct AnswerTable {
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
    row_count: u64,
    truncated: bool,
    row_limit: u64,
    elapsed_ms: u64,
}

#[derive(Template)]
#[template(path = "console_query.html")]
struct QueryPage {
    sql: String,
    error: Option<String>,
    table: Option<AnswerTable>,
}

/// The JSON answer as the page's table.
fn answer_table(body: &[u8]) -> Option<AnswerTable> {
    let answer: JsonAnswer = serde_json::from_slice(body).ok()?;
    let cell = |c: serde_json::Value| Cell {
        number: c.is_number(),
        text: match c {
            serde_json::Value::Null => "NULL".into(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
    };
    Some(AnswerTable {
        columns: answer
            .columns
            .into_iter()
            .map(|c| Column {
                name: c.name,
                kind: c.kind,
            })
            .collect(),
        rows: answer
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(cell).collect())
            .collect(),
        row_count: answer.row_count,
        truncated: answer.truncated,
        row_limit: answer.row_limit,
        elapsed_ms: answer.elapsed_ms,
    })
}

pub async fn query_page(_: AnalystPage) -> Result<Response, ApiError> {
    respond::page(&QueryPage {
        sql: EXAMPLE_SQL.into(),
        error: None,
        table: None,
    })
}

#[derive(Deserialize)]
pub struct QueryForm {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

#[tracing::instrument(skip_all)]
pub async fn query(
    _: SameSite,
    _: SignedInAnalyst,
    State(s): State<WebState>,
    Form(form): Form<QueryForm>,
) -> Result<Response, ApiError> {
    let format = format_of(form.format.as_deref())?;
    let job = s
        .analytics
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no analytics job is connected to this service"))?;
    let page = |error: Option<String>, table: Option<AnswerTable>, status: StatusCode| {
        let sql = form.sql.clone();
        respond::page_with(status, &QueryPage { sql, error, table })
    };
    match job.query(&form.sql, format).await {
        Err(e) if e.is_analysts() => page(Some(e.words()), None, e.code.status()),
        Err(e) => Err(e.into()),
        Ok(answer) if format == AnswerFormat::Json => match answer_table(&answer.body) {
            Some(table) => page(None, Some(table), StatusCode::OK),
            None => Err(ApiError::unavailable(
                "the analytics job answered something unreadable",
            )),
        },
        Ok(answer) => Ok(download(answer, format)),
    }
}

/// The form's `format` (JSON when it names none).
fn format_of(name: Option<&str>) -> Result<AnswerFormat, ApiError> {
    let Some(name) = name else {
        return Ok(AnswerFormat::Json);
    };
    name.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("unknown format `{name}`: json, csv or parquet"),
        )
        .field("format")
    })
}

/// A CSV or Parquet answer as a download, saying when it was cut at the row limit.
fn download(answer: QueryAnswer, format: AnswerFormat) -> Response {
    let disposition = format!("attachment; filename=\"query.{}\"", format.extension());
    let mut res = (
        [
            (header::CONTENT_TYPE, answer.content_type),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        answer.body,
    )
        .into_response();
    if answer.truncated {
        res.headers_mut().insert(
            "x-iot-truncated",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    res
}
