//! How the job's own plan parts cross processes: the logical codec (the client sends the
//! scheduler a logical plan naming our tables and the profile node) and the physical codec (the
//! scheduler sends executors stages holding our scans and `ProfileExec`). Anything else goes to
//! Ballista's own codecs. Ours are framed so the two never mix: a zero byte (never the start of
//! a protobuf message), `iot`, the length of a JSON header, the header, then raw bytes (a small
//! table's Arrow IPC stream).
//!
//! A decoded scan reads from the store of the process that decodes it: scheduler and executors
//! each open the store from their own configuration, so nothing secret travels in a plan.

use std::fmt;
use std::io::Cursor;
use std::str::FromStr;
use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use iot_common::store::Store;
use serde::{Deserialize, Serialize};

use crate::plan::{ProfileExec, ProfileNode, Scanned};
use crate::source::{RowShape, StoreReadings, StoreScanExec};
use crate::sql_meter_days::MeterDaysTable;
use crate::sql_tables::ReadingsTable;

const MAGIC: &[u8] = b"\0iot";

/// What one of our frames holds.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    ProfileNode {
        tz: String,
    },
    StoreReadings {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        partitions: usize,
    },
    SqlReadings {
        partitions: usize,
    },
    MeterDays {
        tz: String,
        default_days: u32,
    },
    /// A small table read whole by the client (`meters`, `profiles`, `runs`); its batches
    /// follow the header as an Arrow IPC stream, one stream per partition.
    Memory {
        partitions: usize,
    },
    /// Its slices are its input, a memory source Ballista's own codec carries.
    StoreScan {
        shape: RowShape,
        projection: Option<Vec<usize>>,
    },
    ProfileExec {
        tz: String,
    },
}

fn frame(wire: &Wire, payload: &[u8], buf: &mut Vec<u8>) -> Result<(), DataFusionError> {
    let header = serde_json::to_vec(wire).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let len = u32::try_from(header.len())
        .map_err(|_| DataFusionError::Internal("a plan header over 4 GiB".into()))?;
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    Ok(())
}

/// Our frame's header and payload, or `None` for a frame of Ballista's.
fn unframe(buf: &[u8]) -> Result<Option<(Wire, &[u8])>, DataFusionError> {
    let Some(rest) = buf.strip_prefix(MAGIC) else {
        return Ok(None);
    };
    let bad = || DataFusionError::Internal("a truncated iot plan frame".into());
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad());
    }
    let (header, payload) = rest.split_at(len);
    let wire =
        serde_json::from_slice(header).map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(Some((wire, payload)))
}

fn tz(name: &str) -> Result<Tz, DataFusionError> {
    Tz::from_str(name).map_err(|e| DataFusionError::Plan(format!("time zone `{name}`: {e}")))
}

fn ipc_streams(
    partitions: &[Vec<RecordBatch>],
    schema: &SchemaRef,
) -> Result<Vec<u8>, DataFusionError> {
    let mut out = Vec::new();
    for batches in partitions {
        let mut bytes = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut bytes, schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

fn from_ipc_streams(
    mut payload: &[u8],
    partitions: usize,
) -> Result<Vec<Vec<RecordBatch>>, DataFusionError> {
    let bad = || DataFusionError::Internal("a truncated table in a plan".into());
    let mut out = Vec::with_capacity(partitions);
    for _ in 0..partitions {
        let (len, rest) = payload.split_first_chunk::<8>().ok_or_else(bad)?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| bad())?;
        if rest.len() < len {
            return Err(bad());
        }
        let (stream, rest) = rest.split_at(len);
        payload = rest;
        let reader = StreamReader::try_new(Cursor::new(stream), None)?;
        out.push(reader.collect::<Result<Vec<_>, _>>()?);
    }
    Ok(out)
}

/// Both codecs, over the store of the process that holds them.
pub struct AnalyticsCodec {
    store: Arc<dyn Store>,
    logical: BallistaLogicalExtensionCodec,
    physical: BallistaPhysicalExtensionCodec,
}

impl fmt::Debug for AnalyticsCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnalyticsCodec")
    }
}

impl AnalyticsCodec {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            logical: BallistaLogicalExtensionCodec::default(),
            physical: BallistaPhysicalExtensionCodec::default(),
        }
    }
}

impl LogicalExtensionCodec for AnalyticsCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension, DataFusionError> {
        match unframe(buf)? {
            Some((Wire::ProfileNode { tz: name }, _)) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "RegionProfile has one input".into(),
                    ));
                };
                let node = ProfileNode::new(input.clone(), tz(&name)?, Scanned::default())?;
                Ok(Extension {
                    node: Arc::new(node),
                })
            }
            Some((other, _)) => Err(DataFusionError::Internal(format!(
                "{other:?} is not a logical node"
            ))),
            None => self.logical.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<(), DataFusionError> {
        match node.node.as_any().downcast_ref::<ProfileNode>() {
            Some(p) => frame(
                &Wire::ProfileNode {
                    tz: p.tz.name().to_owned(),
                },
                &[],
                buf,
            ),
            None => self.logical.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        let store = self.store.clone();
        Ok(match unframe(buf)? {
            Some((
                Wire::StoreReadings {
                    from,
                    to,
                    partitions,
                },
                _,
            )) => Arc::new(StoreReadings {
                store,
                from,
                to,
                partitions,
            }),
            Some((Wire::SqlReadings { partitions }, _)) => {
                Arc::new(ReadingsTable::new(store, partitions))
            }
            Some((
                Wire::MeterDays {
                    tz: name,
                    default_days,
                },
                _,
            )) => Arc::new(MeterDaysTable::new(store, tz(&name)?, default_days)),
            Some((Wire::Memory { partitions }, payload)) => Arc::new(MemTable::try_new(
                schema,
                from_ipc_streams(payload, partitions)?,
            )?),
            Some((other, _)) => {
                return Err(DataFusionError::Internal(format!(
                    "{other:?} is not a table"
                )));
            }
            None => {
                return self
                    .logical
                    .try_decode_table_provider(buf, table_ref, schema, ctx);
            }
        })
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<(), DataFusionError> {
        if let Some(t) = node.downcast_ref::<StoreReadings>() {
            let wire = Wire::StoreReadings {
                from: t.from,
                to: t.to,
                partitions: t.partitions,
            };
            return frame(&wire, &[], buf);
        }
        if let Some(t) = node.downcast_ref::<ReadingsTable>() {
            let wire = Wire::SqlReadings {
                partitions: t.partitions(),
            };
            return frame(&wire, &[], buf);
        }
        if let Some(t) = node.downcast_ref::<MeterDaysTable>() {
            let wire = Wire::MeterDays {
                tz: t.tz().name().to_owned(),
                default_days: t.default_days(),
            };
            return frame(&wire, &[], buf);
        }
        if let Some(t) = node.downcast_ref::<MemTable>() {
            let mut partitions = Vec::with_capacity(t.batches.len());
            for p in &t.batches {
                let batches = p.try_read().map_err(|_| {
                    DataFusionError::Internal(format!("table {table_ref} is being written"))
                })?;
                partitions.push(batches.clone());
            }
            let payload = ipc_streams(&partitions, &t.schema())?;
            let wire = Wire::Memory {
                partitions: partitions.len(),
            };
            return frame(&wire, &payload, buf);
        }
        self.logical.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>, DataFusionError> {
        self.logical.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<(), DataFusionError> {
        self.logical.try_encode_file_format(buf, node)
    }
}

impl PhysicalExtensionCodec for AnalyticsCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        match unframe(buf)? {
            Some((Wire::StoreScan { shape, projection }, _)) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "StoreScanExec has one input".into(),
                    ));
                };
                Ok(Arc::new(StoreScanExec::try_new(
                    input.clone(),
                    self.store.clone(),
                    shape,
                    projection,
                )?))
            }
            Some((Wire::ProfileExec { tz: name }, _)) => {
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "ProfileExec has one input".into(),
                    ));
                };
                Ok(Arc::new(ProfileExec::try_new(
                    input.clone(),
                    tz(&name)?,
                    Scanned::default(),
                )?))
            }
            Some((other, _)) => Err(DataFusionError::Internal(format!(
                "{other:?} is not an execution plan"
            ))),
            None => self.physical.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<(), DataFusionError> {
        if let Some(scan) = node.downcast_ref::<StoreScanExec>() {
            let wire = Wire::StoreScan {
                shape: scan.shape(),
                projection: scan.projection().cloned(),
            };
            return frame(&wire, &[], buf);
        }
        if let Some(p) = node.downcast_ref::<ProfileExec>() {
            let wire = Wire::ProfileExec {
                tz: p.tz().name().to_owned(),
            };
            return frame(&wire, &[], buf);
        }
        self.physical.try_encode(node, buf, proto_converter)
    }
}
