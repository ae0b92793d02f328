//! The operators' meter routes on the internal listener: list, register (which issues the
//! meter's token) and revoke. Each needs the analyst token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use iot_common::domain::Meter;
use iot_common::domain::MeterId;
use iot_common::http::Analyst;
use iot_common::problem::{ApiError, ErrorCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::provisioning::{NewMeter, ProvisionError, provision};
use crate::state::WebState;

impl From<ProvisionError> for ApiError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::Invalid { field, reason } => {
                ApiError::new(ErrorCode::InvalidMeter, reason).field(field)
            }
            ProvisionError::Store(e) => e.into(),
        }
    }
}

/// Every registered meter.
#[derive(Serialize, ToSchema)]
struct MeterList {
    meters: Vec<Meter>,
}

/// A meter just registered, with its token (shown once; the meter posts with it).
#[derive(Serialize, ToSchema)]
struct Registered {
    meter: Meter,
    token: String,
}

/// A meter's revocation: tokens issued before `revoked_at` are refused from now on.
#[derive(Serialize, ToSchema)]
struct Revoked {
    meter_id: MeterId,
    #[schema(value_type = String, format = DateTime)]
    revoked_at: String,
}

#[utoipa::path(get, path = "/internal/v1/meters", tag = "provisioning",
    security(("analyst_token" = [])),
    responses(
        (status = 200, description = "The registered meters.", body = MeterList),
        (status = 401, description = "No analyst token."),
    ))]
pub async fn list_meters(_: Analyst, State(s): State<WebState>) -> Result<Response, ApiError> {
    let meters = s.store.meters().await?;
    Ok(Json(MeterList { meters }).into_response())
}

/// Registers a meter (or registers it again, with new details) and issues its token.
#[utoipa::path(post, path = "/internal/v1/meters", tag = "provisioning",
    security(("analyst_token" = [])),
    request_body(content = NewMeter, content_type = "application/json"),
    responses(
        (status = 201, description = "The meter and its token.", body = Registered),
        (status = 400, description = "The body is not JSON."),
        (status = 401, description = "No analyst token."),
        (status = 413, description = "The body is over the listener's limit."),
        (status = 422, description = "A field breaks a rule (an unknown region, a location in no region or in another one, no place at all); `field` says which."),
    ))]
pub async fn register_meter(
    _: Analyst,
    State(s): State<WebState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = new_meter(&body)?;
    let (meter, token) = provision(s.store.as_ref(), &s.regions, &s.auth.tokens, req).await?;
    let created = Json(Registered { meter, token });
    Ok((StatusCode::CREATED, created).into_response())
}

/// The registration in the body: broken JSON is a 400, JSON that is not a registration
/// (a bad id, an unknown field) a 422.
fn new_meter(body: &[u8]) -> Result<NewMeter, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::InvalidMeter
        } else {
            ErrorCode::MalformedJson
        };
        ApiError::new(code, e.to_string()).field("body")
    })
}

/// Revokes a meter's tokens: every token issued up to now fails with 401, here at once and on
/// every meter replica within its refresh interval. The registration and the readings stay;
/// registering the meter again issues a token that works.
/// Revokes every token the meter holds; provisioning it again issues a new one.
#[utoipa::path(delete, path = "/internal/v1/meters/{id}", tag = "provisioning",
    security(("analyst_token" = [])),
    params(("id" = MeterId, Path, description = "The meter's id.")),
    responses(
        (status = 200, description = "Revoked.", body = Revoked),
        (status = 401, description = "No analyst token."),
        (status = 422, description = "Not a meter id."),
    ))]
pub async fn revoke_meter(
    _: Analyst,
    State(s): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meter = MeterId::parse(id)
        .map_err(|e| ApiError::new(ErrorCode::InvalidMeter, e.to_string()).field("meter_id"))?;
    let at = Utc::now();
    s.store.revoke_meter(&meter, at).await?;
    s.auth.revocations.insert(&meter, at.timestamp_millis());
    tracing::info!(meter_id = %meter, "meter tokens revoked");
    let revoked_at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    Ok(Json(Revoked {
        meter_id: meter,
        revoked_at,
    })
    .into_response())
}
