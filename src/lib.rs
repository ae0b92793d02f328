//! The all-in-one `iot-demo` process: meter, web, simulator fleet and sink in one process on
//! the embedded adapters (SQLite store, SQLite log as the bus). This crate only assembles
//! and configures; every service's logic lives in its own crate.

pub mod app;
pub mod commands;
pub mod config;
pub mod secrets;

pub use app::{AppError, RunningApp, start};
pub use config::{Cli, Command, MetersCommand};
