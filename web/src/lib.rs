//! The web service: everything answered from the store over HTTP. External routes serve
//! residents — the regional energy map, region pages, the estimator, the JSON API and their
//! own meter's readings; internal routes serve operators and analysts — meter provisioning
//! and the analyst console.
//!
//! Where things live: [`state`] (what handlers share, and the `AnalyticsPort` port), [`routes`]
//! (wiring, and one module per page family), [`respond`] and [`present`] (rendering and
//! formatting helpers), [`metric`] (what the map shows), [`cache`], [`access`] (who may ask), [`sessions`],
//! [`provisioning`], [`tariffs`] (tariffs as data, bills in exact money); [`cli`] runs it as its own process.

pub mod access;
pub mod api_docs;
pub mod cache;
#[cfg(feature = "distributed")]
pub mod cli;
pub mod costs;
pub mod export;
pub mod geometry;
pub mod live;
pub mod metric;
pub mod present;
pub mod provisioning;
pub mod remote;
pub mod respond;
pub mod routes;
pub mod sessions;
pub mod silence;
pub mod state;
pub mod svg;
pub mod tariffs;
pub mod trend;

pub use provisioning::{NewMeter, ProvisionError, provision};
pub use routes::{external_router, internal_router};
pub use state::{
    AnalyticsError, AnalyticsPort, FleetProgress, QueryAnswer, RecomputeRequest, WebState,
};
