//! The wire format of a reading on the `meter-readings` topic, version 1.
//!
//! - key: the meter id (UTF-8), so one meter's readings share a partition and stay ordered;
//! - value: the reading as JSON, exactly the object the HTTP API takes
//!   (`{"meter_id","ts","kwh","interval_s"}`), so a message can be read with any Kafka tool;
//! - header `iot-schema: reading.v1`. A message without the header is read as v1 (so a
//!   reading typed into a console producer still works); any other value is refused.
//!
//! JSON rather than a binary format: readings are small, the producer and consumer are ours,
//! and human-readable messages make the dead-letter topic something an operator can read.
//! It costs bytes on the wire, which lz4 compression wins mostly back.

use iot_common::Reading;
use iot_common::reading_json::{JsonError, parse_reading};
use rdkafka::message::{BorrowedMessage, Headers, Message};

pub const SCHEMA_HEADER: &str = "iot-schema";
pub const SCHEMA_V1: &str = "reading.v1";
/// Dead letters carry why they were refused and where they came from.
pub const DLQ_REASON_HEADER: &str = "iot-dlq-reason";
pub const DLQ_SOURCE_HEADER: &str = "iot-dlq-source";

/// The message value of a reading.
pub fn encode(reading: &Reading) -> Vec<u8> {
    // A `Reading` is plain data with string keys: serialising it cannot fail.
    serde_json::to_vec(reading).unwrap_or_default()
}

/// Why a message cannot become a reading; it goes to the dead-letter topic with this text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Poison(pub String);

/// Whether a message is a well-formed reading message, and the reading it carries: a known
/// schema, a value that is a reading by the rules that do not depend on time
/// ([`parse_reading`]), keyed by its meter id. No clock: the meter judged the time
/// rules when it accepted the reading, and its 202 stands, however late the message is read.
pub fn decode(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    schema: Option<&[u8]>,
) -> Result<Reading, Poison> {
    if let Some(schema) = schema
        && schema != SCHEMA_V1.as_bytes()
    {
        return Err(Poison(format!(
            "unsupported {SCHEMA_HEADER} `{}`; this consumer reads `{SCHEMA_V1}`",
            String::from_utf8_lossy(schema)
        )));
    }
    let payload = payload.ok_or_else(|| Poison("message has no value".into()))?;
    let reading = parse_reading(payload).map_err(|e| match e {
        JsonError::Syntax(_) => Poison(format!("value is not valid JSON: {e}")),
        other => Poison(format!("invalid reading: {other}")),
    })?;
    match key {
        Some(k) if k == reading.meter_id.as_bytes() => Ok(reading),
        Some(k) => Err(Poison(format!(
            "key `{}` is not the reading's meter_id `{}`",
            String::from_utf8_lossy(k),
            reading.meter_id
        ))),
        None => Err(Poison(
            "message has no key; the key must be the meter_id".into(),
        )),
    }
}

/// [`decode`] for a consumed message.
pub fn decode_message(msg: &BorrowedMessage<'_>) -> Result<Reading, Poison> {
    let schema = msg.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == SCHEMA_HEADER)
            .map(|h| h.value.unwrap_or_default())
    });
    decode(msg.key(), msg.payload(), schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn reading() -> Reading {
        Reading {
            meter_id: "MAC000123".parse().unwrap(),
            ts: Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap(),
            kwh: 0.123,
            interval_s: 1800,
        }
    }

    #[test]
    fn encodes_the_documented_json() {
        let v: serde_json::Value = serde_json::from_slice(&encode(&reading())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"meter_id": "MAC000123", "ts": "2026-11-20T10:00:00Z", "kwh": 0.123, "interval_s": 1800})
        );
    }

    #[test]
    fn round_trips_with_and_without_the_schema_header() {
        let r = reading();
        let bytes = encode(&r);
        let key = Some(r.meter_id.as_bytes());
        assert_eq!(
            decode(key, Some(&bytes), Some(b"reading.v1")),
            Ok(r.clone())
        );
        assert_eq!(decode(key, Some(&bytes), None), Ok(r));
    }

    #[test]
    fn refuses_malformed_messages_and_says_why() {
        let key = Some(&b"MAC000123"[..]);
        // (key, value, schema header, what the reason must mention)
        type Case<'a> = (Option<&'a [u8]>, &'a [u8], Option<&'a [u8]>, &'a str);
        let cases: [Case<'_>; 7] = [
            (key, b"{not json", None, "not valid JSON"),
            (
                key,
                br#"{"meter_id":"MAC000123","ts":"2026-11-20T10:00:00Z","kwh":-1}"#,
                None,
                "kwh",
            ),
            (
                key,
                br#"{"meter_id":"MAC000123","ts":"2026-11-20T10:10:00Z","kwh":1}"#,
                None,
                "ts",
            ),
            (
                key,
                br#"{"meter_id":"MAC000123","ts":"2026-11-20T10:00:00Z","kwh":1,"x":1}"#,
                None,
                "unknown field",
            ),
            (
                key,
                br#"{"meter_id":"MAC000123","ts":"2026-11-20T10:00:00Z","kwh":1}"#,
                Some(b"reading.v2"),
                "unsupported",
            ),
            (
                Some(b"OTHER"),
                br#"{"meter_id":"MAC000123","ts":"2026-11-20T10:00:00Z","kwh":1}"#,
                None,
                "not the reading's meter_id",
            ),
            (
                None,
                br#"{"meter_id":"MAC000123","ts":"2026-11-20T10:00:00Z","kwh":1}"#,
                None,
                "no key",
            ),
        ];
        for (key, payload, schema, why) in cases {
            let err = decode(key, Some(payload), schema).unwrap_err();
            assert!(err.0.contains(why), "{err} should mention {why}");
        }
        assert!(decode(key, None, None).unwrap_err().0.contains("no value"));
    }

    #[test]
    fn a_reading_dated_ahead_of_or_long_before_the_reader_is_still_a_reading() {
        // The meter accepted these by its own clock; the sink's clock must not overrule it.
        for ts in ["2099-01-01T00:00:00Z", "2001-01-01T00:00:00Z"] {
            let r = Reading {
                ts: ts.parse().unwrap(),
                ..reading()
            };
            let key = Some(r.meter_id.as_bytes());
            assert_eq!(decode(key, Some(&encode(&r)), None), Ok(r.clone()), "{ts}");
        }
    }
}
