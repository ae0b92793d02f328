//! The pages in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) renders the map and a region page; the test asserts on the rendered DOM and
//! saves screenshots to `target/test-artifacts/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::{TestApp, with_profiles};

fn chromium() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {candidate}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return candidate.to_owned();
        }
    }
    panic!(
        "no Chromium found: install Debian's `chromium` (apt-get install chromium) or set CHROMIUM"
    );
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// Runs headless Chromium on `url`; returns the DOM after scripts ran, and saves a screenshot.
async fn render(app: &TestApp, url: &str, shot: &str) -> String {
    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1200,1000",
    ];
    let user_dir = format!("--user-data-dir={}", profile.path().display());
    let run = |extra: Vec<String>| {
        let mut cmd = Command::new(chromium());
        cmd.args(base).arg(&user_dir).args(extra).arg(url);
        async move {
            tokio::task::spawn_blocking(move || cmd.output())
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("cannot run chromium: {e}"))
        }
    };
    let dom = run(vec!["--dump-dom".into()]).await;
    assert!(
        dom.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let path = artifacts().join(shot);
    let _ = run(vec![format!("--screenshot={}", path.display())]).await;
    assert!(path.exists(), "no screenshot at {}", path.display());
    let _ = app;
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

#[tokio::test]
async fn the_map_and_a_region_page_render_in_chromium() {
    let app = with_profiles().await;
    let dom = render(&app, &app.ext("/"), "map.png").await;
    assert_eq!(
        dom.matches("<path d=\"M").count(),
        33,
        "33 region shapes in the DOM"
    );
    assert!(dom.contains("class=\"legend\""), "a legend");
    assert!(dom.contains("Mean daily use"));
    assert!(dom.contains("Havering: no data yet"));
    let dom = render(&app, &app.ext("/regions/E09000001"), "region.png").await;
    assert!(dom.contains("City of London"));
    assert!(dom.contains("5.50 kWh"), "the region's median");
    assert_eq!(
        dom.matches("class=\"bar").count(),
        25,
        "the load curve's 24 bars and the comparison"
    );
    // Two past runs of the borough: the page draws their trend.
    let current = app
        .app
        .store
        .profiles()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut past: Vec<iot_common::RegionProfile> = current.clone();
    for p in &mut past {
        p.run_id = "run-earlier".into();
        p.window_to -= chrono::Duration::days(7);
        p.window_from -= chrono::Duration::days(7);
        p.computed_at -= chrono::Duration::days(7);
        p.figures.p50_daily_kwh *= 0.9;
        p.figures.avg_daily_kwh *= 0.92;
    }
    for run in [past, current] {
        app.app
            .store
            .put_run_profiles(&run)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dom = render(&app, &app.ext("/regions/E09000001"), "region-trend.png").await;
    assert!(dom.contains("id=\"trend\""), "the trend chart renders");
    assert_eq!(
        dom.matches("class=\"line ").count(),
        3,
        "median, mean and p90"
    );
    let dom = render(
        &app,
        &app.ext("/estimate?region=E09000001&size=2&dwelling=flat"),
        "estimate.png",
    )
    .await;
    assert!(dom.contains("kWh a day") && dom.contains("a year"));
    app.app.stop(Duration::from_secs(5)).await;
}
