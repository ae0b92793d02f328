//! The one-shot subcommands: print a meter's token, register and list meters.

use std::io::Write;

use iot_common::auth::MeterTokens;
use iot_common::domain::MeterId;
use iot_common::regions::{RegionError, Regions};
use iot_common::store::sqlite::SqliteStore;
use iot_common::store::{Store, StoreError};
use iot_web::{NewMeter, ProvisionError};

use crate::config::{CommonArgs, MetersCommand};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Regions(#[from] RegionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
    #[error("cannot encode a meter")]
    Encode(#[from] serde_json::Error),
}

pub fn token(tokens: &MeterTokens, meter_id: &MeterId) -> Result<(), CommandError> {
    writeln!(std::io::stdout(), "{}", tokens.issue(meter_id))?;
    Ok(())
}

pub async fn meters(
    cmd: MetersCommand,
    common: &CommonArgs,
    tokens: &MeterTokens,
) -> Result<(), CommandError> {
    let store = SqliteStore::open(&SqliteStore::path_in(&common.data_dir))?;
    let mut out = std::io::stdout().lock();
    match cmd {
        MetersCommand::Add {
            meter_id,
            region,
            lat,
            lon,
            household_size,
            dwelling,
        } => {
            let regions = Regions::load(common.regions.as_deref())?;
            let req = NewMeter {
                meter_id,
                region,
                lat,
                lon,
                household_size,
                dwelling,
            };
            let (meter, token) = iot_web::provision(&store, &regions, tokens, req).await?;
            eprintln!(
                "registered {} in region {}",
                meter.meter_id,
                meter.region.as_deref().unwrap_or("-")
            );
            writeln!(out, "{token}")?;
        }
        MetersCommand::Revoke { meter_id } => {
            let at = chrono::Utc::now();
            store.revoke_meter(&meter_id, at).await?;
            writeln!(
                out,
                "revoked every token of {meter_id} issued up to {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )?;
        }
        MetersCommand::List => {
            for m in store.meters().await? {
                writeln!(out, "{}", serde_json::to_string(&m)?)?;
            }
        }
    }
    Ok(())
}
