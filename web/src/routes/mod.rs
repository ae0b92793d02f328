//! The web service's routes, external and internal: this module only wires paths to the
//! handlers of one module per page family (which never import each other) and puts the
//! security headers on every response.

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::WebState;

mod assets;
mod console;
mod estimate;
mod live;
mod map;
mod me;
mod meters;
mod openapi;
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
    let (api, _) = external_api().split_for_parts();
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
            .merge(api)
            .with_state(state),
    )
}

/// The external API (the pages are the browser's, not described): each route with its
/// description, so the public document is made from the routes served.
fn external_api() -> OpenApiRouter<WebState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::public_document))
        .routes(routes!(regions_api::regions_geojson))
        .routes(routes!(regions_api::region_profile))
        .routes(routes!(regions_api::region_history))
        .routes(routes!(live::live_now))
        .routes(routes!(live::live_region))
        .routes(routes!(readings::meter_readings))
        .routes(routes!(readings::meter_daily))
}

/// Routes only reachable inside the deployment.
pub fn internal_router(state: WebState) -> Router {
    let (api, _) = internal_api().split_for_parts();
    secured(
        Router::new()
            .route("/internal/console", get(console::page))
            .route("/internal/console/login", post(console::login))
            .route("/internal/console/logout", post(console::logout))
            .route("/internal/console/recompute", post(console::recompute))
            .route("/internal/console/compare", get(console::compare::compare))
            .route("/internal/console/quality", get(console::quality::page))
            .route(
                "/internal/console/query",
                get(console::sql::query_page).post(console::sql::query),
            )
            .route("/internal/static/app.css", get(assets::css))
            .route("/internal/static/progress.js", get(assets::progress_js))
            .merge(api)
            .with_state(state),
    )
}

/// The internal API: provisioning, revocation, the console's JSON.
fn internal_api() -> OpenApiRouter<WebState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::internal_document))
        .routes(routes!(meters::list_meters, meters::register_meter))
        .routes(routes!(meters::revoke_meter))
        .routes(routes!(console::quality::silent_meters))
        .routes(routes!(console::quality::noted_meters))
        .routes(routes!(console::progress))
}

/// The descriptions of web's external and internal API routes.
pub fn openapi() -> (utoipa::openapi::OpenApi, utoipa::openapi::OpenApi) {
    (external_api().into_openapi(), internal_api().into_openapi())
}
