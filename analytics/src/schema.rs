//! The readings' shape as Arrow batches: the columns every input (store scan or Parquet
//! file) gives the job, and store rows turned into a batch.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::DataFusionError;
use iot_common::store::RegionReading;

/// The columns a readings batch must have.
pub const REGION_COL: &str = "region_id";
pub const METER_COL: &str = "meter_id";
pub const TS_COL: &str = "ts";
pub const KWH_COL: &str = "kwh";

/// The schema readings have as Arrow batches.
pub fn readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(METER_COL, DataType::Utf8, false),
        Field::new(REGION_COL, DataType::Utf8, false),
        Field::new(
            TS_COL,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(KWH_COL, DataType::Float64, false),
    ]))
}

/// Store rows as one Arrow batch of [`readings_schema`].
pub fn rows_to_batch(
    schema: &SchemaRef,
    rows: &[RegionReading],
) -> Result<RecordBatch, DataFusionError> {
    let meters = StringArray::from_iter_values(rows.iter().map(|r| r.meter_id.as_str()));
    let regions = StringArray::from_iter_values(rows.iter().map(|r| r.region.as_str()));
    let ts =
        TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.ts.timestamp_millis()))
            .with_timezone("UTC");
    let kwh = Float64Array::from_iter_values(rows.iter().map(|r| r.kwh));
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(meters),
            Arc::new(regions),
            Arc::new(ts),
            Arc::new(kwh),
        ],
    )?)
}

/// The columns of the SQL `readings` table.
pub fn sql_readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("ts", utc_ms(), false),
        Field::new("kwh", DataType::Float64, false),
        Field::new("interval_s", DataType::UInt32, true),
    ]))
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

pub fn sql_rows_to_batch(
    schema: &SchemaRef,
    rows: &[RegionReading],
) -> Result<RecordBatch, DataFusionError> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.meter_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.region.as_str()),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.ts.timestamp_millis()),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.kwh))),
        Arc::new(UInt32Array::from(
            rows.iter().map(|r| r.interval_s).collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}
