//! A SQL answer as the analyst asked for it: a JSON table (columns, rows, whether it was cut)
//! for the console and the API, or CSV or Parquet for the analyst's own tools.

use std::path::Path;

use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::output::OutputError;
use crate::sql::SqlAnswer;

pub use iot_common::wire::{AnswerColumn, AnswerFormat, JsonAnswer};

/// The format a file name asks for.
pub fn format_of_path(path: &Path) -> Result<AnswerFormat, OutputError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok(AnswerFormat::Csv),
        Some("parquet") => Ok(AnswerFormat::Parquet),
        Some("json") => Ok(AnswerFormat::Json),
        _ => Err(OutputError::Format(path.display().to_string())),
    }
}
fn column_names(answer: &SqlAnswer) -> Vec<&str> {
    answer
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect()
}

/// The answer as a [`JsonAnswer`]: rows as arrays in column order, timestamps as RFC 3339.
pub fn answer_json(answer: &SqlAnswer) -> Result<JsonAnswer, OutputError> {
    use datafusion::arrow::json::{WriterBuilder, writer::JsonArray};
    let mut buf = Vec::new();
    {
        let mut w = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut buf);
        for b in &answer.batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    let names = column_names(answer);
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = if buf.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&buf).map_err(|e| OutputError::Json(e.to_string()))?
    };
    let rows = objects
        .into_iter()
        .map(|mut o| {
            names
                .iter()
                .map(|n| o.remove(*n).unwrap_or(serde_json::Value::Null))
                .collect()
        })
        .collect();
    let columns = answer
        .schema
        .fields()
        .iter()
        .map(|f| AnswerColumn {
            name: f.name().clone(),
            kind: f.data_type().to_string(),
        })
        .collect();
    Ok(JsonAnswer {
        columns,
        rows,
        row_count: answer.rows as u64,
        truncated: answer.truncated,
        row_limit: answer.row_limit as u64,
        elapsed_ms: answer.elapsed.as_millis() as u64,
    })
}

/// The answer's rows encoded as `format`.
pub fn answer_bytes(answer: &SqlAnswer, format: AnswerFormat) -> Result<Vec<u8>, OutputError> {
    let mut buf = Vec::new();
    match format {
        AnswerFormat::Json => {
            buf = serde_json::to_vec(&answer_json(answer)?)
                .map_err(|e| OutputError::Json(e.to_string()))?;
        }
        AnswerFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut buf);
            for b in &answer.batches {
                w.write(b)?;
            }
            if answer.batches.is_empty() {
                // The header alone, so an empty answer still says its columns.
                let names = column_names(answer);
                drop(w);
                buf = format!("{}\n", names.join(",")).into_bytes();
            }
        }
        AnswerFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut w = ArrowWriter::try_new(&mut buf, answer.schema.clone(), Some(props))?;
            for b in &answer.batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    Ok(buf)
}
