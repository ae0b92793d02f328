//! The web service's routes, external and internal: this module only wires paths to the
//! handlers of one module per page family (which never import each other) and puts the
//! security headers on every response.

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::routing::{delete, get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::WebState;

mod assets;
mod console;
mod estimate;
mod map;
mod me;
mod meters;
mod readings;
mod region;
mod regions_api;
mod status;

pub use estimate::{Estimate, estimate};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Security headers on every response, and a cache policy: static files for a day, pages
/// and API answers revalidated every time.
fn secured(router: Router) -> Router {
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    router
        .layer(header("content-security-policy", CSP))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("referrer-policy", "no-referrer"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("cache-control", "no-cache"))
}

/// Routes residents reach through the edge.
pub fn external_router(state: WebState) -> Router {
    secured(
        Router::new()
            .route("/", get(map::map))
            .route("/regions/{code}", get(region::region))
            .route("/estimate", get(estimate::estimator))
            .route("/status", get(status::status))
            .route("/me", get(me::page))
            .route("/me/login", post(me::login))
            .route("/me/logout", post(me::logout))
            .route("/me/tariff", post(me::choose_tariff))
            .route("/me/readings.csv", get(me::readings_csv))
            .route("/me/daily.csv", get(me::daily_csv))
            .route("/static/app.css", get(assets::css))
            .route("/static/map.js", get(assets::map_js))
            .route("/static/progress.js", get(assets::progress_js))
            .route("/api/v1/openapi.json", get(assets::openapi))
            .route("/api/v1/regions", get(regions_api::regions_geojson))
            .route("/api/v1/regions/{code}", get(regions_api::region_profile))
            .route(
                "/api/v1/regions/{code}/history",
                get(regions_api::region_history),
            )
            .route(
                "/api/v1/meters/{id}/readings",
                get(readings::meter_readings),
            )
            .route("/api/v1/meters/{id}/daily", get(readings::meter_daily))
            .with_state(state),
    )
}

/// Routes only reachable inside the deployment.
pub fn internal_router(state: WebState) -> Router {
    secured(
        Router::new()
            .route(
                "/internal/v1/meters",
                get(meters::list_meters).post(meters::register_meter),
            )
            .route("/internal/v1/meters/{id}", delete(meters::revoke_meter))
            .route("/internal/console", get(console::page))
            .route("/internal/console/login", post(console::login))
            .route("/internal/console/logout", post(console::logout))
            .route("/internal/console/recompute", post(console::recompute))
            .route("/internal/console/compare", get(console::compare::compare))
            .route("/internal/console/quality", get(console::quality::page))
            .route(
                "/internal/v1/quality/silent-meters",
                get(console::quality::silent_meters),
            )
            .route(
                "/internal/v1/quality/meters",
                get(console::quality::noted_meters),
            )
            .route(
                "/internal/console/query",
                get(console::sql::query_page).post(console::sql::query),
            )
            .route("/internal/static/app.css", get(assets::css))
            .route("/internal/static/progress.js", get(assets::progress_js))
            .route("/internal/console/progress", get(console::progress))
            .with_state(state),
    )
}
