//! The web service: everything answered from the store over HTTP. External routes serve
//! residents (their own meter's readings, the regions, the status page; the map arrives with
//! the front end), internal routes serve operators (meter provisioning).

pub mod provisioning;
pub mod routes;

pub use provisioning::{NewMeter, ProvisionError, provision};
pub use routes::{WebState, external_router, internal_router};
