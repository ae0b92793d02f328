//! The fleet's flags, which `simulator fleet` and the all-in-one `iot-demo` share.

use clap::Args;

/// The fleet's size, history and pace: the same flags for `simulator fleet` and `iot-demo`.
#[derive(Debug, Clone, Args)]
pub struct FleetFlags {
    /// Simulated households (0: no fleet).
    #[arg(long, env = "IOT_METERS", default_value_t = 300)]
    pub meters: usize,
    /// Days of history posted at start-up, as fast as the meter takes them.
    #[arg(long, env = "IOT_BACKFILL_DAYS", default_value_t = 21)]
    pub backfill_days: u32,
    /// The last days before now replayed at `--speed` after the backfill, to watch data
    /// arrive; 0 goes straight to real time.
    #[arg(long, env = "IOT_REPLAY_DAYS", default_value_t = 0)]
    pub replay_days: u32,
    /// How many times faster than real time the replay runs.
    #[arg(long, env = "IOT_FLEET_SPEED", default_value_t = 60.0)]
    pub speed: f64,
    /// The same seed gives the same households and readings.
    #[arg(long, env = "IOT_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Fleet requests in flight at once.
    #[arg(long, env = "IOT_FLEET_CONCURRENCY", default_value_t = 8)]
    pub fleet_concurrency: usize,
    /// How the meters fail, drawn from the seed: `on` (a few per cent of meter-days have a
    /// short gap, an outage, a repeated send or a spike), `off` (a clean fleet), or chances
    /// per meter-day such as `gaps=0.03,outages=0.003,late=0.5,duplicates=0.02,spikes=0.005`.
    #[arg(long, env = "IOT_FLEET_FAULTS", default_value = "on")]
    pub faults: crate::faults::FaultRates,
}

impl FleetFlags {
    /// A fleet of these flags posting to `meter_url`, the rest at defaults.
    pub fn config(&self, meter_url: &str) -> crate::FleetConfig {
        crate::FleetConfig {
            meters: self.meters,
            backfill_days: self.backfill_days,
            replay_days: self.replay_days,
            speed: self.speed,
            seed: self.seed,
            concurrency: self.fleet_concurrency.max(1),
            faults: self.faults,
            meter_url: meter_url.to_owned(),
            ..crate::FleetConfig::default()
        }
    }
}
