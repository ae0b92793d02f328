//! The platform's Prometheus metrics, one registry per process, served as text on
//! `/metrics` of the internal listener.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    /// Readings the meter acknowledged (2xx).
    pub readings_accepted: Counter,
    /// Requests the meter refused, by HTTP status.
    pub ingest_rejected: Family<Labels, Counter>,
    /// Ingest requests shed with 503 because the meter was at capacity.
    pub ingest_shed: Counter,
    /// Time from a request's arrival to the bus confirming it, in seconds.
    pub publish_seconds: Histogram,
    /// Readings the sink wrote to the store.
    pub sink_written: Counter,
    /// Failed sink store writes (retried with backoff).
    pub sink_errors: Counter,
    /// Messages the sink could not read and sent to the dead-letter topic.
    pub dead_letters: Counter,
    /// Readings the fleet posted and had acknowledged.
    pub fleet_posted: Counter,
    /// Fleet posts retried after 503 or a connection error.
    pub fleet_retries: Counter,
    /// Meters the fleet simulates.
    pub fleet_meters: Gauge,
    /// Registered meters with no reading for the silence threshold (the web service's
    /// `--silent-after-hours`, 6 by default).
    pub meters_silent: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("iot");
        let m = Self {
            readings_accepted: Counter::default(),
            ingest_rejected: Family::default(),
            ingest_shed: Counter::default(),
            publish_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            sink_written: Counter::default(),
            sink_errors: Counter::default(),
            dead_letters: Counter::default(),
            fleet_posted: Counter::default(),
            fleet_retries: Counter::default(),
            fleet_meters: Gauge::default(),
            meters_silent: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "meter_readings_accepted",
            "Readings acknowledged to meters",
            m.readings_accepted.clone(),
        );
        registry.register(
            "meter_requests_rejected",
            "Ingest requests refused, by status",
            m.ingest_rejected.clone(),
        );
        registry.register(
            "meter_requests_shed",
            "Ingest requests shed with 503 because the meter was at capacity",
            m.ingest_shed.clone(),
        );
        registry.register(
            "meter_publish_seconds",
            "Time for the bus to confirm an ingest request",
            m.publish_seconds.clone(),
        );
        registry.register(
            "sink_readings_written",
            "Readings written to the store by the sink",
            m.sink_written.clone(),
        );
        registry.register(
            "sink_store_errors",
            "Failed store writes by the sink",
            m.sink_errors.clone(),
        );
        registry.register(
            "sink_dead_letters",
            "Messages the sink could not read, sent to the dead-letter topic",
            m.dead_letters.clone(),
        );
        registry.register(
            "fleet_readings_posted",
            "Readings posted by the simulated fleet and acknowledged",
            m.fleet_posted.clone(),
        );
        registry.register(
            "fleet_retries",
            "Fleet posts retried after 503 or a connection error",
            m.fleet_retries.clone(),
        );
        registry.register(
            "fleet_meters",
            "Meters the fleet simulates",
            m.fleet_meters.clone(),
        );
        registry.register(
            "meters_silent",
            "Registered meters with no reading for the silence threshold (6 hours by default)",
            m.meters_silent.clone(),
        );
        Self { registry, ..m }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn reject(&self, status: u16) {
        self.ingest_rejected
            .get_or_create(&vec![("status".to_owned(), status.to_string())])
            .inc();
    }
}
