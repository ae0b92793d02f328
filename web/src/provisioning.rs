//! Registering a meter: placing it in a region (by code, or by its location through
//! point-in-polygon) and issuing its token. Used by the CLI and by the internal API.

use chrono::Utc;
use iot_common::Meter;
use iot_common::auth::MeterTokens;
use iot_common::domain::{Dwelling, MeterId, RegionCode};
use iot_common::regions::Regions;
use iot_common::store::{Store, StoreError};
use serde::Deserialize;

/// A meter to register: where it is (a region code, a location, or both if they agree) and
/// the household behind it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMeter {
    pub meter_id: MeterId,
    /// A region code the deployment knows.
    pub region: Option<RegionCode>,
    /// Latitude in degrees; with `lon`.
    #[schema(minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    /// Longitude in degrees; with `lat`.
    #[schema(minimum = -180, maximum = 180)]
    pub lon: Option<f64>,
    /// People in the household.
    #[schema(minimum = 1, maximum = 15)]
    pub household_size: Option<u8>,
    pub dwelling: Option<Dwelling>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ProvisionError {
    ProvisionError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Validates and registers (or re-registers) a meter; returns it with its token.
pub async fn provision(
    store: &dyn Store,
    regions: &Regions,
    tokens: &MeterTokens,
    req: NewMeter,
) -> Result<(Meter, String), ProvisionError> {
    let located = match (req.lat, req.lon) {
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) {
                return Err(invalid("lat", "must be a latitude in degrees, -90 to 90"));
            }
            if !(-180.0..=180.0).contains(&lon) {
                return Err(invalid(
                    "lon",
                    "must be a longitude in degrees, -180 to 180",
                ));
            }
            Some(
                regions
                    .locate(lat, lon)
                    .ok_or_else(|| invalid("lat", "the location is in no known region"))?
                    .code
                    .clone(),
            )
        }
        (None, None) => None,
        (Some(_), None) => return Err(invalid("lon", "is required with lat")),
        (None, Some(_)) => return Err(invalid("lat", "is required with lon")),
    };
    let region = match (req.region, located) {
        (Some(code), located) => {
            if regions.get(&code).is_none() {
                return Err(invalid("region", format!("unknown region code `{code}`")));
            }
            if let Some(at) = located.filter(|at| *at != code) {
                return Err(invalid(
                    "region",
                    format!("the location lies in {at}, not in {code}"),
                ));
            }
            Some(code)
        }
        (None, located) => located,
    };
    if region.is_none() {
        return Err(invalid(
            "region",
            "give a region code or a lat/lon location",
        ));
    }
    if let Some(n) = req.household_size
        && !(1..=15).contains(&n)
    {
        return Err(invalid("household_size", "must be 1 to 15 people"));
    }
    let meter = Meter {
        meter_id: req.meter_id,
        region,
        lat: req.lat,
        lon: req.lon,
        household_size: req.household_size,
        dwelling: req.dwelling,
        registered_at: Utc::now(),
    };
    store.upsert_meters(std::slice::from_ref(&meter)).await?;
    let token = tokens.issue(&meter.meter_id);
    Ok((meter, token))
}
