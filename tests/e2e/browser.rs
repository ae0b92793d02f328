//! The pages in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) renders the map and a region page; the test asserts on the rendered DOM and
//! saves screenshots to `target/test-artifacts/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;

use crate::support::{TestApp, with_profiles};

fn find_chromium() -> Option<String> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Some(path);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|candidate| {
            Command::new("sh")
                .args(["-c", &format!("command -v {candidate}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
}

const NO_CHROMIUM: &str =
    "no Chromium found: install Debian's `chromium` (apt-get install chromium) or set CHROMIUM";

fn chromium() -> String {
    find_chromium().unwrap_or_else(|| panic!("{NO_CHROMIUM}"))
}

/// Whether `test` can run: a failure under CI without Chromium, a loud skip elsewhere.
fn have_chromium(test: &str) -> bool {
    let found = find_chromium().is_some();
    if !found {
        iot_common::test_services::missing(test, NO_CHROMIUM, None);
    }
    found
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
    if !have_chromium("the map in Chromium") {
        return;
    }
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
    assert!(
        dom.contains("id=\"bills\"") && dom.contains("£") && dom.contains("id=\"cheapest\""),
        "the bill on each tariff, in pounds"
    );
    app.app.stop(Duration::from_secs(5)).await;
}

/// Chromium driven over the DevTools protocol, for what `--dump-dom` cannot do: type into a
/// form and send it, as a person would.
struct DevTools {
    chromium: tokio::process::Child,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl DevTools {
    async fn launch() -> Self {
        use tokio::io::AsyncBufReadExt;
        let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut chromium = tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--window-size=1200,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run chromium: {e}"));
        let stderr = chromium
            .stderr
            .take()
            .unwrap_or_else(|| panic!("chromium's stderr"));
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium ended without a DevTools address")
        })
        .await
        .unwrap_or_else(|_| panic!("chromium gave no DevTools address in 30 s"));
        // Keep reading its stderr so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("DevTools at {url}: {e}"));
        let mut tools = Self {
            chromium,
            socket,
            next: 0,
            session: None,
            _profile: profile,
        };
        let target = tools
            .call(
                "Target.createTarget",
                serde_json::json!({"url": "about:blank"}),
            )
            .await;
        let attached = tools
            .call(
                "Target.attachToTarget",
                serde_json::json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        tools.session = attached["sessionId"].as_str().map(str::to_owned);
        tools
    }

    /// Sends one command (to the page, once attached) and returns its result.
    async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next += 1;
        let id = self.next;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = serde_json::Value::String(s.clone());
        }
        self.socket
            .send(Message::text(msg.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer in 30 s"))
                .unwrap_or_else(|| panic!("{method}: DevTools closed"))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let Message::Text(text) = frame else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is true, for at most `limit`.
    async fn until(&mut self, expression: &str, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.eval(expression).await == serde_json::Value::Bool(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn screenshot(&mut self, name: &str) {
        use base64::Engine as _;
        let shot = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(artifacts().join(name), png).unwrap_or_else(|e| panic!("{e}"));
    }

    async fn close(mut self) {
        self.session = None;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.call("Browser.close", serde_json::json!({})),
        )
        .await;
        let _ = self.chromium.kill().await;
    }
}

#[tokio::test]
async fn a_resident_signs_in_with_their_token_and_sees_their_curve_over_the_boroughs() {
    if !have_chromium("a resident signs in, in Chromium") {
        return;
    }
    let h = crate::support::households().await;
    let mut browser = DevTools::launch().await;
    browser
        .call(
            "Page.navigate",
            serde_json::json!({"url": h.app.ext("/me")}),
        )
        .await;
    assert!(
        browser
            .until(
                "document.readyState === 'complete' && !!document.querySelector('input[name=token]')",
                Duration::from_secs(20)
            )
            .await,
        "the sign-in form"
    );
    let token = serde_json::to_string(&h.meters[1].1).unwrap_or_default();
    browser
        .eval(&format!(
            "document.querySelector('input[name=token]').value = {token}; \
             document.querySelector('form[action=\"/me/login\"]').submit(); true"
        ))
        .await;
    let shown = browser
        .until(
            "!!document.getElementById('hourly')",
            Duration::from_secs(20),
        )
        .await;
    let at = browser
        .eval("location.href + ' ' + document.body.innerText")
        .await;
    assert!(shown, "signed in, the page shows the household: {at}");
    let html = browser
        .eval("document.documentElement.outerHTML")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(html.contains("meter HOME0002"), "{html}");
    assert!(!html.contains("HOME0001") && !html.contains("HOME0003"));
    assert_eq!(
        html.matches("class=\"bar mine\"").count(),
        9 + 24,
        "nine whole days of the household's own use and its 24-hour curve"
    );
    assert_eq!(
        html.matches("class=\"bar mine estimated\"").count(),
        1,
        "and the day with its gap, marked"
    );
    // The gap's hour, in London time as the page says it.
    let gap = |slot: i64| {
        chrono::DateTime::from_timestamp(crate::support::households_start() + slot * 1800, 0)
            .unwrap_or_default()
            .with_timezone(&chrono_tz::Europe::London)
            .format("%H:%M")
            .to_string()
    };
    let range = crate::support::HOME0002_GAP;
    let hours = format!("{}–{}", gap(range.start), gap(range.end));
    let listed = browser
        .eval("document.getElementById('estimated')?.innerText ?? ''")
        .await;
    let listed = listed.as_str().unwrap_or_default();
    assert!(
        listed.contains(&hours) && listed.contains("interpolated"),
        "the list shows {hours} as interpolated: {listed}"
    );
    assert!(
        html.contains("class=\"line borough\""),
        "the borough's curve over it"
    );
    assert!(
        html.contains("class=\"band\""),
        "the borough's median-to-p90 band"
    );
    let cost = browser
        .eval("document.getElementById('cost-total')?.innerText ?? ''")
        .await;
    assert!(
        cost.as_str().is_some_and(|c| c.starts_with('£')),
        "the days' cost in pounds: {cost}"
    );
    // The tariff is chosen on the page, as a person would, and kept.
    browser
        .eval(
            "document.querySelector('select[name=tariff]').value = 'night'; \
             document.querySelector('form[action=\"/me/tariff\"]').submit(); true",
        )
        .await;
    let kept = browser
        .until(
            "document.readyState === 'complete' && \
             (document.getElementById('tariffs')?.innerText ?? '').includes('(Economy 7 style) (yours)')",
            Duration::from_secs(20),
        )
        .await;
    let at = browser.eval("document.body.innerText").await;
    assert!(kept, "the night tariff is the household's now: {at}");
    let cookie = browser.eval("document.cookie").await;
    assert_eq!(
        cookie, "",
        "the session cookie is HttpOnly: no script reads it"
    );
    browser.screenshot("me.png").await;
    browser.close().await;
    h.app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_now_map_recolours_itself_as_meters_post_without_a_reload() {
    if !have_chromium("the live map in Chromium") {
        return;
    }
    // Not in the last 90 s of a half hour: the page's half hour must stay the one posted to.
    let into_slot = Utc::now() - iot_common::live::slot_of(Utc::now());
    if into_slot > chrono::TimeDelta::minutes(28) {
        tokio::time::sleep(
            (chrono::TimeDelta::minutes(30) - into_slot + chrono::TimeDelta::seconds(2))
                .to_std()
                .unwrap_or_default(),
        )
        .await;
    }
    let app = with_profiles().await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        let id = format!("NOW{i:04}");
        tokens.push((id.clone(), crate::support::register(&app, &id).await));
    }
    let mut browser = DevTools::launch().await;
    browser
        .call(
            "Page.navigate",
            serde_json::json!({"url": app.ext("/?metric=now")}),
        )
        .await;
    assert!(
        browser
            .until(
                "document.readyState === 'complete' && !!document.querySelector('svg.map[data-live]')",
                Duration::from_secs(20)
            )
            .await,
        "the now map"
    );
    let camden = "document.querySelector('a.region[data-code=\"E09000007\"]')";
    let label = browser
        .eval(&format!("{camden}.getAttribute('data-label')"))
        .await;
    assert_eq!(label, "no readings yet", "before the meters post");
    // A mark that a reload would wipe.
    browser.eval("window.notReloaded = true; true").await;
    browser.screenshot("now-before.png").await;

    let slot = iot_common::live::last_complete_slot(Utc::now());
    for (id, token) in &tokens {
        let res = app
            .client
            .post(app.ext("/api/v1/readings"))
            .bearer_auth(token)
            .json(&serde_json::json!([{"meter_id": id, "ts": slot.to_rfc3339(), "kwh": 0.6}]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.status().as_u16(), 202);
    }
    let recoloured = browser
        .until(
            &format!(
                "{camden}.querySelector('path').getAttribute('fill').startsWith('#') \
                 && {camden}.getAttribute('data-label').includes('of typical')"
            ),
            Duration::from_secs(60),
        )
        .await;
    let now = browser
        .eval(&format!(
            "{camden}.getAttribute('data-label') + ' | ' + document.getElementById('live-slot').innerText \
             + ' | ' + document.getElementById('live-updated').innerText"
        ))
        .await;
    assert!(recoloured, "Camden recoloured from the live API: {now}");
    assert_eq!(
        browser.eval("window.notReloaded === true").await,
        true,
        "without a reload"
    );
    let now = now.as_str().unwrap_or_default().to_owned();
    // The words and colour the script chose are the server's for the API's figures.
    let live: serde_json::Value = app
        .client
        .get(app.ext("/api/v1/live"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let figures = live["regions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["code"] == "E09000007"))
        .cloned()
        .unwrap_or_default();
    let ratio = figures["vs_typical"].as_f64().unwrap_or_default();
    assert_eq!(figures["meters"], 4);
    assert!(
        now.starts_with(&format!(
            "0.60 kWh a household, {:.0} % of typical",
            ratio * 100.0
        )),
        "{now}"
    );
    let fill = browser
        .eval(&format!(
            "{camden}.querySelector('path').getAttribute('fill')"
        ))
        .await;
    assert_eq!(fill, iot_web::live::BANDS[iot_web::live::band_of(ratio)].1);
    let shown_slot = slot
        .with_timezone(&chrono_tz::Europe::London)
        .format("%H:%M")
        .to_string();
    assert!(
        now.contains(&shown_slot),
        "the page says the half hour: {now}"
    );
    browser.screenshot("now-after.png").await;
    browser.close().await;
    app.app.stop(Duration::from_secs(5)).await;
}
