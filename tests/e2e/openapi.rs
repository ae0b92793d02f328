//! The OpenAPI documents: generated from the handlers, equal to the committed copies in
//! `docs/api/` (so a change to the API shows in review), served by the running all-in-one,
//! and fuzzed against it by Schemathesis (`st`, from PyPI, installed by `.ci/run`) with every
//! check on. `IOT_BLESS_OPENAPI=1 cargo test --test e2e openapi` rewrites the copies.

use std::path::PathBuf;
use std::process::Command;

use crate::process::{launch_with, token};
use crate::support::{ANALYST, TestApp};

fn committed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("docs/api/{name}"))
}

const PUBLIC: &str = "openapi.public.json";
const INTERNAL: &str = "openapi.internal.json";

fn read(name: &str) -> String {
    std::fs::read_to_string(committed(name)).unwrap_or_else(|e| panic!("docs/api/{name}: {e}"))
}

#[test]
fn the_documents_are_the_committed_copies() {
    let docs = iot_demo::app::api_docs();
    let bless = std::env::var("IOT_BLESS_OPENAPI").is_ok_and(|v| v == "1");
    for (name, generated) in [(PUBLIC, &docs.public), (INTERNAL, &docs.internal)] {
        if bless {
            std::fs::write(committed(name), generated).unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        assert!(
            read(name) == *generated,
            "docs/api/{name} is not the document the handlers describe: check the change, \
             then run `IOT_BLESS_OPENAPI=1 cargo test --test e2e openapi` and commit the copy"
        );
    }
}

#[tokio::test]
async fn each_listener_serves_its_document() {
    let app = TestApp::start().await;
    for (url, name) in [
        (app.ext("/api/v1/openapi.json"), PUBLIC),
        (app.int("/internal/v1/openapi.json"), INTERNAL),
    ] {
        let res = app.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(res.headers()["content-type"], "application/json");
        let served: serde_json::Value = res.json().await.unwrap();
        let copy: serde_json::Value = serde_json::from_str(&read(name)).unwrap();
        assert_eq!(served, copy, "{url}");
        assert_eq!(served["openapi"], "3.1.0");
    }
    // Internal routes are not on the external listener, nor described in its document.
    let res = app
        .client
        .get(app.ext("/internal/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

fn find_schemathesis() -> Option<String> {
    let candidate = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "st".into());
    Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(candidate)
}

/// Schemathesis, every check on, against the running binary: each document with the
/// credential its routes take, for a bounded time. Any failure (a status the document does
/// not declare, a 5xx, a body that breaks its schema, a refused valid request, an accepted
/// invalid one) fails the test with Schemathesis' report.
#[test]
fn schemathesis_finds_nothing_against_either_document() {
    let test = "openapi::schemathesis_finds_nothing_against_either_document";
    let Some(st) = find_schemathesis() else {
        iot_common::test_services::missing(
            test,
            "Schemathesis (`st`) not found: pip install schemathesis==4.32.5",
            None,
        );
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let meter_token = token(data.path(), "MTR-000123");
    let (_app, external, internal) = launch_with(data.path(), &["--analyst-token", ANALYST]);
    let config = |name: &str| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/e2e/schemathesis/{name}.toml"))
    };
    let max_time = std::env::var("IOT_FUZZ_SECONDS").unwrap_or_else(|_| "90".into());
    for (doc, base, credential, settings) in [
        ("/api/v1/openapi.json", &external, &meter_token, "public"),
        (
            "/internal/v1/openapi.json",
            &internal,
            &ANALYST.to_owned(),
            "internal",
        ),
    ] {
        let out = Command::new(&st)
            .args(["--config-file"])
            .arg(config(settings))
            .args(["run", &format!("{base}{doc}"), "--url", base])
            .args(["--checks", "all", "--max-time", &max_time])
            .args(["-H", &format!("Authorization: Bearer {credential}")])
            .args(["--seed", "1"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("{st}: {e}"));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("schemathesis {doc}:\n{report}");
        assert!(
            out.status.success(),
            "Schemathesis found failures in {doc}:\n{report}"
        );
    }
}
