//! The web service: everything answered from the store over HTTP. External routes serve
//! residents — the regional energy map, region pages, the estimator, the JSON API and their
//! own meter's readings; internal routes serve operators and analysts — meter provisioning
//! and the analyst console.

pub mod api;
pub mod cache;
#[cfg(feature = "distributed")]
pub mod cli;
pub mod console;
pub mod geometry;
pub mod pages;
pub mod provisioning;
pub mod remote;
pub mod routes;
pub mod sessions;

pub use provisioning::{NewMeter, ProvisionError, provision};
pub use routes::{Recompute, WebState, external_router, internal_router};
