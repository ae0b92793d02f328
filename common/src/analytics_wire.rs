//! The wire types at the web ↔ analytics boundary, one definition both sides use: how a SQL
//! answer is asked for ([`AnswerFormat`]) and what its JSON form is ([`JsonAnswer`]).

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A SQL answer as JSON: rows as arrays in column order (timestamps as RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonAnswer {
    pub columns: Vec<AnswerColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: u64,
    /// More rows were there than the limit let through.
    pub truncated: bool,
    pub row_limit: u64,
    pub elapsed_ms: u64,
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
