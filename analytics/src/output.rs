//! Writing results for analysts' own tools: profiles as CSV (the columns the reference
//! scripts in `bench/reference` write, so the files compare line by line) or Parquet, and stored
//! readings as Parquet.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, UInt8Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::aggregate::ProfileFigures;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode Parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("cannot build Arrow data: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("unknown output format for {0}: use a .csv or .parquet file name")]
    Format(String),
    #[error("cannot encode JSON: {0}")]
    Json(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Refuses an output name whose format is unknown, before any work is done.
pub fn check_output(path: &Path) -> Result<(), OutputError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv" | "parquet") => Ok(()),
        _ => Err(OutputError::Format(path.display().to_string())),
    }
}

/// Writes profiles to `path`, as CSV or Parquet by its extension.
pub fn write_profiles(path: &Path, profiles: &[ProfileFigures]) -> Result<(), OutputError> {
    check_output(path)?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => write_csv(path, profiles),
        _ => write_parquet(path, &[profiles_batch(profiles)?]),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |x| x.to_string())
}

fn write_csv(path: &Path, profiles: &[ProfileFigures]) -> Result<(), OutputError> {
    let mut f = BufWriter::new(File::create(path).map_err(io(path))?);
    let hours: Vec<String> = (0..24).map(|h| format!("h{h:02}")).collect();
    writeln!(
        f,
        "region_id,meters,readings,complete,estimated,excluded,avg_daily_kwh,p50_daily_kwh,\
         p90_daily_kwh,weekday_avg_daily_kwh,weekend_avg_daily_kwh,peak_hour,{}",
        hours.join(",")
    )
    .map_err(io(path))?;
    for p in profiles {
        // Hourly figures to six decimals, as the reference scripts print them.
        let hourly: Vec<String> = p.hourly_kwh.iter().map(|x| format!("{x:.6}")).collect();
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            p.region,
            p.meters,
            p.readings,
            p.meter_days.complete,
            p.meter_days.estimated,
            p.meter_days.excluded,
            p.avg_daily_kwh,
            p.p50_daily_kwh,
            p.p90_daily_kwh,
            opt(p.weekday_avg_daily_kwh),
            opt(p.weekend_avg_daily_kwh),
            p.peak_hour,
            hourly.join(",")
        )
        .map_err(io(path))?;
    }
    f.flush().map_err(io(path))
}

pub(crate) fn profiles_batch(profiles: &[ProfileFigures]) -> Result<RecordBatch, OutputError> {
    let mut fields = vec![
        Field::new("region_id", DataType::Utf8, false),
        Field::new("meters", DataType::UInt64, false),
        Field::new("readings", DataType::UInt64, false),
        Field::new("complete", DataType::UInt64, false),
        Field::new("estimated", DataType::UInt64, false),
        Field::new("excluded", DataType::UInt64, false),
        Field::new("avg_daily_kwh", DataType::Float64, false),
        Field::new("p50_daily_kwh", DataType::Float64, false),
        Field::new("p90_daily_kwh", DataType::Float64, false),
        Field::new("weekday_avg_daily_kwh", DataType::Float64, true),
        Field::new("weekend_avg_daily_kwh", DataType::Float64, true),
        Field::new("peak_hour", DataType::UInt8, false),
    ];
    let f64s = |f: fn(&ProfileFigures) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(profiles.iter().map(f)))
    };
    let u64s = |f: fn(&ProfileFigures) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(profiles.iter().map(f)))
    };
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            profiles.iter().map(|p| p.region.as_str()),
        )),
        u64s(|p| p.meters),
        u64s(|p| p.readings),
        u64s(|p| p.meter_days.complete),
        u64s(|p| p.meter_days.estimated),
        u64s(|p| p.meter_days.excluded),
        f64s(|p| p.avg_daily_kwh),
        f64s(|p| p.p50_daily_kwh),
        f64s(|p| p.p90_daily_kwh),
        Arc::new(Float64Array::from(
            profiles
                .iter()
                .map(|p| p.weekday_avg_daily_kwh)
                .collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            profiles
                .iter()
                .map(|p| p.weekend_avg_daily_kwh)
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt8Array::from_iter_values(
            profiles.iter().map(|p| p.peak_hour),
        )),
    ];
    for h in 0..24 {
        fields.push(Field::new(format!("h{h:02}"), DataType::Float64, false));
        cols.push(Arc::new(Float64Array::from_iter_values(
            profiles.iter().map(|p| p.hourly_kwh[h]),
        )));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// A Parquet writer (zstd) for batches of `schema`.
pub fn parquet_writer(path: &Path, schema: Arc<Schema>) -> Result<ArrowWriter<File>, OutputError> {
    let file = File::create(path).map_err(io(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    Ok(ArrowWriter::try_new(file, schema, Some(props))?)
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<(), OutputError> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let mut w = parquet_writer(path, first.schema())?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}
