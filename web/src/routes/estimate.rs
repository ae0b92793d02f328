//! `GET /estimate`: a household's likely use and bill from its region's profile, its size
//! and its kind of dwelling: the yearly and monthly bill on each tariff, from the borough's
//! median day to its p90 day, priced on the borough's typical hourly curve, and which
//! tariff is cheaper for such a household.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use iot_common::ProfileFigures;
use iot_common::domain::{Dwelling, household_factor};
use iot_common::problem::{ApiError, ErrorCode, Query};
use serde::Deserialize;
use strum::VariantArray;

use crate::costs::typical_bill;
use crate::present::kwh;
use crate::respond;
use crate::state::WebState;
use crate::tariffs::Tariff;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateQuery {
    /// People in the household, 1 to 5 (5 for five or more).
    size: Option<u8>,
    dwelling: Option<Dwelling>,
    /// Region code; empty or absent: no region chosen yet.
    region: Option<String>,
}

struct EstimateView {
    daily: String,
    daily_low: String,
    daily_high: String,
    yearly: String,
    yearly_low: String,
    yearly_high: String,
    bills: Vec<TariffEstimate>,
    cheapest: String,
    explanation: String,
}

/// A tariff's bill for the household, a year and a month, median day to p90 day.
struct TariffEstimate {
    name: String,
    rates: String,
    about: String,
    yearly: String,
    yearly_high: String,
    monthly: String,
    monthly_high: String,
    cheapest: bool,
}

#[derive(Template)]
#[template(path = "estimate.html")]
struct EstimatePage<'a> {
    attribution: &'a str,
    regions: Vec<(String, String)>,
    selected: String,
    sizes: Vec<u8>,
    size: u8,
    dwellings: Vec<(&'static str, &'static str)>,
    dwelling: String,
    estimate: Option<EstimateView>,
    message: Option<String>,
}

/// A household's estimated daily kWh: the region's median and p90 daily use scaled by how
/// the household compares with the typical one.
pub struct Estimate {
    pub daily_p50: f64,
    pub daily_p90: f64,
    pub factor: f64,
}

pub fn estimate(f: &ProfileFigures, size: u8, dwelling: Dwelling) -> Estimate {
    let factor = household_factor(size, dwelling);
    Estimate {
        daily_p50: f.p50_daily_kwh * factor,
        daily_p90: f.p90_daily_kwh * factor,
        factor,
    }
}

/// A household as the form describes it.
struct Household {
    size: u8,
    dwelling: Dwelling,
    region: String,
}

pub async fn estimator(
    State(s): State<WebState>,
    Query(q): Query<EstimateQuery>,
) -> Result<Response, ApiError> {
    let household = household_of(&s, q)?;
    let profiles = s.current_profiles().await?;
    let (estimate, message) = match profiles.get(household.region.as_str()) {
        _ if household.region.is_empty() => (None, None),
        None => (None, Some(NO_PROFILE.to_owned())),
        Some(p) => (Some(estimate_view(&s, &household, &p.figures)), None),
    };
    respond::page(&EstimatePage {
        attribution: s.attribution(),
        regions: s
            .geometry
            .shapes
            .iter()
            .map(|g| (g.code.to_string(), g.name.clone()))
            .collect(),
        sizes: (1..=5).collect(),
        size: household.size,
        dwellings: Dwelling::VARIANTS
            .iter()
            .map(|d| (d.as_ref(), dwelling_name(*d)))
            .collect(),
        dwelling: household.dwelling.to_string(),
        selected: household.region,
        estimate,
        message,
    })
}

const NO_PROFILE: &str = "No profile for this borough yet: try again after the next recompute.";

/// The query's household, defaults filled in: two people in a terraced house.
fn household_of(s: &WebState, q: EstimateQuery) -> Result<Household, ApiError> {
    let bad = |field: &str, msg: &str| ApiError::new(ErrorCode::InvalidQuery, msg).field(field);
    let size = q.size.unwrap_or(2);
    if !(1..=5).contains(&size) {
        return Err(bad("size", "size must be 1 to 5"));
    }
    let region = q.region.unwrap_or_default();
    if !region.is_empty() && s.geometry.shape(&region).is_none() {
        return Err(bad("region", "unknown region code"));
    }
    Ok(Household {
        size,
        dwelling: q.dwelling.unwrap_or(Dwelling::Terraced),
        region,
    })
}

fn estimate_view(s: &WebState, h: &Household, figures: &ProfileFigures) -> EstimateView {
    let e = estimate(figures, h.size, h.dwelling);
    let year = |d: f64| d * 365.0;
    let yearly = |t: &Tariff, d: f64| typical_bill(t, d, &figures.hourly_kwh, 365).total;
    let priced: Vec<(&Tariff, _, _)> = s
        .tariffs
        .all()
        .iter()
        .map(|t| (t, yearly(t, e.daily_p50), yearly(t, e.daily_p90)))
        .collect();
    let cheapest = priced
        .iter()
        .min_by_key(|(_, low, _)| *low)
        .map(|(t, _, _)| *t);
    let bills = priced
        .iter()
        .map(|(t, low, high)| TariffEstimate {
            name: t.name.clone(),
            rates: t.rates_text(),
            about: format!("rates {}; source: {}", t.period(), t.source),
            yearly: low.pounds(),
            yearly_high: high.pounds(),
            monthly: low.part(1, 12).pounds(),
            monthly_high: high.part(1, 12).pounds(),
            cheapest: cheapest.is_some_and(|c| c.id == t.id),
        })
        .collect();
    let cheapest = cheapest.map_or_else(String::new, |t| t.name.clone());
    let name = s.geometry.shape(&h.region).map_or("", |g| g.name.as_str());
    EstimateView {
        daily: kwh(e.daily_p50),
        daily_low: kwh(e.daily_p50),
        daily_high: kwh(e.daily_p90),
        yearly: format!("{:.0}", year(e.daily_p50)),
        yearly_low: format!("{:.0}", year(e.daily_p50)),
        yearly_high: format!("{:.0}", year(e.daily_p90)),
        bills,
        cheapest,
        explanation: format!(
            "{name}'s median household uses {} kWh a day and one household-day in ten exceeds {} kWh; \
             a {}-person {} uses about {:.2}× a typical two-person terraced home, so the range is \
             the median to the p90 scaled by {:.2}. Bills spread each day over {name}'s typical \
             hourly curve, price each half hour at the rate in force then, and add 365 days of \
             standing charge; a month is a twelfth of the year.",
            kwh(figures.p50_daily_kwh),
            kwh(figures.p90_daily_kwh),
            h.size,
            dwelling_name(h.dwelling).to_lowercase(),
            e.factor,
            e.factor
        ),
    }
}

fn dwelling_name(d: Dwelling) -> &'static str {
    match d {
        Dwelling::Flat => "Flat",
        Dwelling::Terraced => "Terraced house",
        Dwelling::SemiDetached => "Semi-detached house",
        Dwelling::Detached => "Detached house",
    }
}
