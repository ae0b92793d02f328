//! What every service of the smart-meter platform shares, and nothing more: the domain types
//! (readings, meters, regions, profiles, runs), the two ports every byte of I/O goes through
//! (`store::Store` and `bus::Bus`) with their embedded adapters, local days and the
//! data-quality rules (VEE) every figure passes, meter authentication, and the HTTP plumbing
//! every service uses (listeners with timeouts, health, metrics, problem+json errors). A
//! service's own logic lives in its own crate.

pub mod api_doc;
pub mod auth;
pub mod bus;
pub mod domain;
pub mod flags;
pub mod http;
pub mod live;
pub mod local_time;
pub mod metrics;
pub mod problem;
pub mod proc_status;
pub mod quality;
pub mod reading_json;
pub mod regions;
pub mod retry;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod test_services;
pub mod wire;

mod sqlite;

pub use domain::{Meter, ProfileFigures, Reading, RegionProfile, Run, RunStatus};
