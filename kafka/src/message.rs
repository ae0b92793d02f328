//! The wire format of readings on the `meter-readings` topic, version 1.
//!
//! - key: the meter id (UTF-8), so one meter's readings share a partition and stay ordered;
//! - value: JSON, exactly what the HTTP API takes, so a message can be read with any Kafka
//!   tool: with header `iot-schema: reading.v1`, one reading object
//!   (`{"meter_id","ts","kwh","interval_s"}`); with `iot-schema: readings.v1`, an array of 1
//!   to [`BATCH_MAX`] readings of the key's meter, in order. A message without the header is
//!   read as `reading.v1` (so a reading typed into a console producer still works); any other
//!   value is refused. The meter sends a request's run of one meter's readings as one
//!   `readings.v1` message: one record instead of hundreds, which is most of what producing
//!   costs per reading. A consumer older than `readings.v1` dead-letters those messages, so
//!   upgrade the sinks before the meters.
//!
//! JSON rather than a binary format: readings are small, the producer and consumer are ours,
//! and human-readable messages make the dead-letter topic something an operator can read.
//! It costs bytes on the wire, which lz4 compression wins mostly back.

use iot_common::Reading;
use iot_common::reading_json::{BodyShape, JsonError, parse_reading, parse_readings};
use rdkafka::message::{BorrowedMessage, Headers, Message};

pub const SCHEMA_HEADER: &str = "iot-schema";
pub const SCHEMA_V1: &str = "reading.v1";
/// The schema of a message holding several readings of one meter.
pub const SCHEMA_BATCH_V1: &str = "readings.v1";
/// Most readings one `readings.v1` message holds: at most about 150 kB of JSON with the
/// longest meter ids, well inside Kafka's default 1 MB message limit.
pub const BATCH_MAX: usize = 1000;
/// Dead letters carry why they were refused and where they came from.
pub const DLQ_REASON_HEADER: &str = "iot-dlq-reason";
pub const DLQ_SOURCE_HEADER: &str = "iot-dlq-source";

/// The message value of a reading.
pub fn encode(reading: &Reading) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    encode_into(&mut out, reading);
    out
}

/// Appends the message value of `reading` to `out`: the bytes `serde_json` writes for it,
/// written directly. Ingest encodes every reading it takes, and serde's path (a string
/// escaper over the id and the time, chrono's `Display`) was a tenth of the meter's time per
/// reading; a request's readings share one buffer. An id is `[A-Za-z0-9_-]` (nothing to
/// escape) and an accepted `ts` is whole seconds; anything else takes serde's path.
pub fn encode_into(out: &mut Vec<u8>, reading: &Reading) {
    use chrono::{Datelike, Timelike};
    let ts = reading.ts;
    if ts.timestamp_subsec_nanos() != 0 || !(0..=9999).contains(&ts.year()) {
        // Plain data with string keys: serialising it cannot fail.
        let _ = serde_json::to_writer(&mut *out, reading);
        return;
    }
    let two = |out: &mut Vec<u8>, n: u32| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
    };
    out.extend_from_slice(br#"{"meter_id":""#);
    out.extend_from_slice(reading.meter_id.as_bytes());
    out.extend_from_slice(br#"","ts":""#);
    let year = ts.year() as u32;
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, ts.month());
    out.push(b'-');
    two(out, ts.day());
    out.push(b'T');
    two(out, ts.hour());
    out.push(b':');
    two(out, ts.minute());
    out.push(b':');
    two(out, ts.second());
    out.extend_from_slice(br#"Z","kwh":"#);
    let _ = serde_json::to_writer(&mut *out, &reading.kwh);
    out.extend_from_slice(br#","interval_s":"#);
    out.extend_from_slice(itoa(reading.interval_s, &mut [0; 10]));
    out.push(b'}');
}

/// Appends the `readings.v1` value of `readings` to `out`: a JSON array of their
/// [`encode_into`] objects.
pub fn encode_batch_into(out: &mut Vec<u8>, readings: &[Reading]) {
    out.push(b'[');
    for (i, r) in readings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_into(out, r);
    }
    out.push(b']');
}

/// `n` in decimal, in the tail of `buf`.
fn itoa(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Why a message cannot become a reading; it goes to the dead-letter topic with this text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Poison(pub String);

/// Whether a message is a well-formed reading message, and the readings it carries: a known
/// schema, a value that is a reading (or for `readings.v1` an array of them) by the rules
/// that do not depend on time ([`parse_reading`]), every one of the key's meter. No clock:
/// the meter judged the time rules when it accepted the readings, and its 202 stands,
/// however late the message is read.
pub fn decode(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    schema: Option<&[u8]>,
) -> Result<Vec<Reading>, Poison> {
    let batch = match schema {
        None => false,
        Some(s) if s == SCHEMA_V1.as_bytes() => false,
        Some(s) if s == SCHEMA_BATCH_V1.as_bytes() => true,
        Some(s) => {
            return Err(Poison(format!(
                "unsupported {SCHEMA_HEADER} `{}`; this consumer reads `{SCHEMA_V1}` and `{SCHEMA_BATCH_V1}`",
                String::from_utf8_lossy(s)
            )));
        }
    };
    let payload = payload.ok_or_else(|| Poison("message has no value".into()))?;
    let unreadable = |e: JsonError| match e {
        JsonError::Syntax(_) => Poison(format!("value is not valid JSON: {e}")),
        other => Poison(format!("invalid reading: {other}")),
    };
    let readings = if batch {
        let body = parse_readings(payload, BATCH_MAX).map_err(unreadable)?;
        if body.shape != BodyShape::Array {
            return Err(Poison(format!(
                "a `{SCHEMA_BATCH_V1}` value is an array of readings"
            )));
        }
        body.readings
    } else {
        vec![parse_reading(payload).map_err(unreadable)?]
    };
    let key =
        key.ok_or_else(|| Poison("message has no key; the key must be the meter_id".into()))?;
    match readings.iter().find(|r| key != r.meter_id.as_bytes()) {
        None => Ok(readings),
        Some(r) => Err(Poison(format!(
            "key `{}` is not the reading's meter_id `{}`",
            String::from_utf8_lossy(key),
            r.meter_id
        ))),
    }
}

/// [`decode`] for a consumed message.
pub fn decode_message(msg: &BorrowedMessage<'_>) -> Result<Vec<Reading>, Poison> {
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

    proptest::proptest! {
        /// The direct encoding is byte for byte what serde writes, so every reader (and the
        /// dead-letter topic's reader) sees one format.
        #[test]
        fn the_direct_encoding_is_serdes(
            id in "[A-Za-z0-9_-]{1,64}",
            secs in -62_000_000_000i64..260_000_000_000,
            nanos in proptest::prop_oneof![proptest::strategy::Just(0u32), 0u32..1_000_000_000],
            kwh in proptest::prop_oneof![0.0f64..25.0, proptest::num::f64::ANY],
            interval_s in proptest::prop_oneof![proptest::strategy::Just(1800u32), proptest::num::u32::ANY],
        ) {
            let Some(ts) = chrono::DateTime::from_timestamp(secs, nanos) else { return Ok(()) };
            let r = Reading { meter_id: id.parse().unwrap(), ts, kwh, interval_s };
            let mut out = b"prefix".to_vec();
            encode_into(&mut out, &r);
            let serde = serde_json::to_vec(&r).unwrap();
            proptest::prop_assert_eq!(&out[6..], serde.as_slice());
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
            Ok(vec![r.clone()])
        );
        assert_eq!(decode(key, Some(&bytes), None), Ok(vec![r]));
    }

    #[test]
    fn a_batch_message_carries_one_meters_readings_in_order() {
        let first = reading();
        let second = Reading {
            ts: first.ts + chrono::Duration::minutes(30),
            ..reading()
        };
        let mut bytes = Vec::new();
        encode_batch_into(&mut bytes, &[first.clone(), second.clone()]);
        let id = first.meter_id.clone();
        let key = Some(id.as_bytes());
        assert_eq!(
            decode(key, Some(&bytes), Some(b"readings.v1")),
            Ok(vec![first.clone(), second])
        );
        let one = encode(&first);
        let other = br#"[{"meter_id":"MAC000123","ts":"2026-11-20T10:00:00Z","kwh":1},{"meter_id":"OTHER","ts":"2026-11-20T10:00:00Z","kwh":1}]"#;
        for (payload, why) in [
            (&b"[]"[..], "at least one"),
            (&one[..], "an array"),
            (&other[..], "not the reading's meter_id"),
        ] {
            let err = decode(key, Some(payload), Some(b"readings.v1")).unwrap_err();
            assert!(err.0.contains(why), "{err} should mention {why}");
        }
        let mut many = Vec::new();
        encode_batch_into(&mut many, &vec![first; BATCH_MAX + 1]);
        let err = decode(key, Some(&many), Some(b"readings.v1")).unwrap_err();
        assert!(err.0.contains("at most"), "{err}");
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
            assert_eq!(
                decode(key, Some(&encode(&r)), None),
                Ok(vec![r.clone()]),
                "{ts}"
            );
        }
    }
}
