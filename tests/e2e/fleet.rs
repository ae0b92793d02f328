//! The fleet, meter, bus and sink together: every simulated meter's readings reach the store
//! and every region has meters.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{TestApp, eventually};
use iot_common::regions::Regions;
use iot_simulator::FleetConfig;
use iot_simulator::faults::FaultRates;

#[tokio::test]
async fn every_simulated_meter_reports_and_every_region_has_meters() {
    let meters = 66;
    let app = TestApp::builder()
        .fleet(FleetConfig {
            meters,
            backfill_days: 2,
            seed: 7,
            // Every half hour of every meter, so the count below is exact.
            faults: FaultRates::OFF,
            ..FleetConfig::default()
        })
        .start()
        .await;
    let store = app.app.store.clone();
    let all_in = eventually(Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            store.summary().await.is_ok_and(|s| {
                s.meters_with_readings == meters as u64 && s.readings >= (meters * 96) as u64
            })
        }
    })
    .await;
    let summary = store.summary().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        all_in,
        "not every meter reported within a minute: {summary:?}"
    );
    let regions = Regions::london().unwrap_or_else(|e| panic!("{e}"));
    let with_meters: HashSet<&str> = summary
        .meters_by_region
        .iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(r, _)| r.as_deref())
        .collect();
    for r in regions.iter() {
        assert!(
            with_meters.contains(r.code.as_str()),
            "{} has no meters",
            r.code
        );
    }
    app.app.stop(Duration::from_secs(10)).await;
}
