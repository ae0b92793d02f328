//! The `meter` binary refuses to start without what it needs, and says what is missing.

use std::process::Command;

use iot_testkit::secrets::METER_SECRET as SECRET;

fn meter(env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    cmd.env_remove("IOT_KAFKA_BROKERS")
        .env_remove("IOT_METER_SECRET")
        .env("RUST_BACKTRACE", "0")
        .env("IOT_EXTERNAL_ADDR", "127.0.0.1:0")
        .env("IOT_INTERNAL_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run meter");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_start_without_kafka_or_a_secret() {
    let (ok, err) = meter(&[("IOT_METER_SECRET", "s")]);
    assert!(!ok);
    assert!(err.contains("IOT_KAFKA_BROKERS"), "{err}");
    assert!(err.contains("embedded bus"), "{err}");

    let (ok, err) = meter(&[("IOT_KAFKA_BROKERS", "127.0.0.1:1")]);
    assert!(!ok);
    assert!(err.contains("IOT_METER_SECRET"), "{err}");

    let (ok, err) = meter(&[
        ("IOT_KAFKA_BROKERS", "127.0.0.1:1"),
        ("IOT_METER_SECRET", "s"),
        ("IOT_KAFKA_PARTITIONS", "0"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("IOT_KAFKA_PARTITIONS must be at least 1"),
        "{err}"
    );
}

#[test]
fn prints_a_token_that_the_meter_accepts() {
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .args(["--meter-secret", SECRET, "token", "MAC000001"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let tokens = iot_common::auth::MeterTokens::new(SECRET).unwrap();
    assert_eq!(
        tokens.verify(token.trim()).map(|c| c.meter_id.to_string()),
        Ok("MAC000001".to_owned())
    );
}

#[test]
fn a_short_secret_is_refused_at_start_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_meter"))
        .args(["--meter-secret", "s3cret", "token", "MAC000001"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32 bytes"), "{err}");
}
