//! The compose stack proven without Docker: [`launch`] reads `docker-compose.yml` and runs
//! its services as local processes with the file's own commands, environment, healthchecks
//! and start order; [`flow`] then checks the data flow end to end through the edge. Used by
//! this crate's test and by the `compose-as-processes` command a person can run.
//! [`configuration`] writes `docs/configuration.md` from the binaries' own `--help`.

pub mod addresses;
pub mod compose;
pub mod configuration;
pub mod dns;
pub mod flow;
pub mod launch;

pub use launch::{Stack, StackConfig};

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("docker-compose.yml: {0}")]
    Compose(String),
    #[error("service `{service}`: {why}")]
    Service { service: String, why: String },
    #[error("{0}")]
    Setup(String),
    #[error("data flow: {0}")]
    Flow(String),
}

impl StackError {
    pub fn service(service: &str, why: impl Into<String>) -> Self {
        Self::Service {
            service: service.to_owned(),
            why: why.into(),
        }
    }
}
