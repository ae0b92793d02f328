//! The all-in-one `iot-demo` end to end, and the compose stack's files. One test binary, so
//! the workspace links DataFusion, Kafka and the Cassandra driver into it once rather than once
//! per file: `cargo test --test e2e [filter]`.

mod analytics;
mod architecture;
mod browser;
mod deploy;
mod fleet;
mod hostile;
mod ingest;
mod live;
mod me;
mod money;
mod openapi;
mod process;
mod quality;
mod support;
mod web;
