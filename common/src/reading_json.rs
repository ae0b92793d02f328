//! Readings straight from JSON bytes: one reading object, or an array of them with a cap
//! enforced while the array is read. No `serde_json::Value` tree is built, so a body costs
//! about its own size whatever it holds (a 4 MiB `[0,0,…]` stops at its first element), and a
//! refusal still names the field and the reading's index.
//!
//! Each value is first read as a [`Loose`] scalar and judged by our rules afterwards, so a
//! wrong type is a field error and only broken JSON is a syntax error.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::domain::{DEFAULT_INTERVAL_S, FieldError, MeterId, Reading};

/// Why a body is not a set of readings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (or cut short).
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    #[error("body must be a reading object or an array of readings")]
    Shape,
    #[error("a batch must hold at least one reading")]
    Empty,
    #[error("a batch holds at most {max} readings")]
    TooMany { max: usize },
    /// A reading breaks a rule; `index` is its place in a batch.
    #[error("{error}")]
    Reading {
        index: Option<usize>,
        error: FieldError,
    },
}

/// One reading object, checked by the rules that need no clock ([`Reading::check_format`]).
pub fn parse_reading(bytes: &[u8]) -> Result<Reading, JsonError> {
    if let Some(reading) = compact::one(bytes) {
        return Ok(reading);
    }
    let failure = RefCell::new(None);
    let seed = ReadingSeed {
        index: None,
        failure: &failure,
    };
    run(bytes, seed, &failure)
}

/// How a request body carried its readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyShape {
    /// One reading object: errors name no index.
    #[default]
    One,
    /// An array of readings: errors name the reading's index.
    Array,
}

/// A request body's readings and how it carried them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedBody {
    pub readings: Vec<Reading>,
    pub shape: BodyShape,
}

/// A request body: one reading object or an array of 1 to `max` of them.
pub fn parse_readings(bytes: &[u8], max: usize) -> Result<ParsedBody, JsonError> {
    if let Some(body) = compact::body(bytes, max) {
        return Ok(body);
    }
    let failure = RefCell::new(None);
    let seed = BodySeed {
        max,
        failure: &failure,
    };
    run(bytes, seed, &failure)
}

/// Reads the whole of `bytes` with `seed`; a refusal the seed recorded wins over serde's
/// placeholder error.
fn run<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
    failure: &RefCell<Option<JsonError>>,
) -> Result<S::Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| failure.take().unwrap_or(JsonError::Syntax(e.to_string())))
}

/// Records the structured failure and aborts deserialisation with a placeholder error.
fn fail<E: de::Error>(failure: &RefCell<Option<JsonError>>, e: JsonError) -> E {
    let message = e.to_string();
    *failure.borrow_mut() = Some(e);
    E::custom(message)
}

struct BodySeed<'f> {
    max: usize,
    failure: &'f RefCell<Option<JsonError>>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = ParsedBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ParsedBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reading object or an array of readings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(self.max);
        let mut readings = Vec::with_capacity(hint);
        loop {
            let index = readings.len();
            if index == self.max {
                // One element more than allowed is enough to refuse; the rest is not read.
                return match seq.next_element::<IgnoredAny>()? {
                    Some(_) => Err(fail(self.failure, JsonError::TooMany { max: self.max })),
                    None => Ok(ParsedBody {
                        readings,
                        shape: BodyShape::Array,
                    }),
                };
            }
            let seed = ReadingSeed {
                index: Some(index),
                failure: self.failure,
            };
            match seq.next_element_seed(seed)? {
                Some(r) => readings.push(r),
                None if readings.is_empty() => return Err(fail(self.failure, JsonError::Empty)),
                None => {
                    return Ok(ParsedBody {
                        readings,
                        shape: BodyShape::Array,
                    });
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let seed = ReadingSeed {
            index: None,
            failure: self.failure,
        };
        seed.visit_map(map).map(|r| ParsedBody {
            readings: vec![r],
            shape: BodyShape::One,
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonError::Shape))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonError::Shape))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonError::Shape))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonError::Shape))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonError::Shape))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(fail(self.failure, JsonError::Shape))
    }
}

struct ReadingSeed<'f> {
    index: Option<usize>,
    failure: &'f RefCell<Option<JsonError>>,
}

impl ReadingSeed<'_> {
    fn refuse<E: de::Error>(&self, error: FieldError) -> E {
        fail(
            self.failure,
            JsonError::Reading {
                index: self.index,
                error,
            },
        )
    }

    fn not_an_object<E: de::Error>(&self) -> E {
        self.refuse(FieldError::new("reading", "must be a JSON object"))
    }
}

impl<'de> DeserializeSeed<'de> for ReadingSeed<'_> {
    type Value = Reading;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Reading, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReadingSeed<'_> {
    type Value = Reading;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a reading object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reading, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "meter_id" => &mut fields.meter_id,
                "ts" => &mut fields.ts,
                "kwh" => &mut fields.kwh,
                "interval_s" => &mut fields.interval_s,
                other => {
                    return Err(self.refuse(FieldError::new(
                        "reading",
                        format!("unknown field `{other}`"),
                    )));
                }
            };
            *slot = Some(map.next_value::<Loose<'de>>()?);
        }
        fields.reading().map_err(|e| self.refuse(e))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Reading, A::Error> {
        Err(self.not_an_object())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Reading, E> {
        Err(self.not_an_object())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Reading, E> {
        Err(self.not_an_object())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Reading, E> {
        Err(self.not_an_object())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Reading, E> {
        Err(self.not_an_object())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Reading, E> {
        Err(self.not_an_object())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Reading, E> {
        Err(self.not_an_object())
    }
}

/// A JSON value as read, before our rules judge it; arrays and objects are skipped.
enum Loose<'de> {
    Str(Cow<'de, str>),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Null,
    Other,
}

impl<'de> de::Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Loose<'de>, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Loose<'de>, E> {
        Ok(Loose::Unsigned(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Loose<'de>, E> {
        Ok(Loose::Signed(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Loose<'de>, E> {
        Ok(Loose::Float(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Loose<'de>, E> {
        Ok(Loose::Other)
    }
    fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
        Ok(Loose::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

#[derive(Default)]
struct Fields<'de> {
    meter_id: Option<Loose<'de>>,
    ts: Option<Loose<'de>>,
    kwh: Option<Loose<'de>>,
    interval_s: Option<Loose<'de>>,
}

impl Fields<'_> {
    /// Judges the fields in a fixed order, so the same reading always names the same field.
    fn reading(self) -> Result<Reading, FieldError> {
        let meter_id = match self.meter_id {
            None | Some(Loose::Null) => return Err(FieldError::new("meter_id", "is required")),
            Some(Loose::Str(s)) => {
                MeterId::parse(s).map_err(|e| FieldError::new("meter_id", e.to_string()))?
            }
            Some(_) => return Err(FieldError::new("meter_id", "must be a string")),
        };
        let ts = match self.ts {
            None => return Err(FieldError::new("ts", "is required")),
            Some(Loose::Str(s)) => DateTime::parse_from_rfc3339(&s)
                .map_err(|e| FieldError::new("ts", format!("must be an RFC 3339 timestamp ({e})")))?
                .with_timezone(&Utc),
            Some(_) => return Err(FieldError::new("ts", "must be an RFC 3339 string")),
        };
        let kwh = match self.kwh {
            None => return Err(FieldError::new("kwh", "is required")),
            Some(Loose::Float(v)) => v,
            Some(Loose::Unsigned(v)) => v as f64,
            Some(Loose::Signed(v)) => v as f64,
            Some(_) => return Err(FieldError::new("kwh", "must be a number")),
        };
        let interval_s = match self.interval_s {
            None | Some(Loose::Null) => DEFAULT_INTERVAL_S,
            Some(Loose::Unsigned(n)) => u32::try_from(n).map_err(|_| whole_seconds())?,
            Some(_) => return Err(whole_seconds()),
        };
        let reading = Reading {
            meter_id,
            ts,
            kwh,
            interval_s,
        };
        reading.check_format()?;
        Ok(reading)
    }
}

fn whole_seconds() -> FieldError {
    FieldError::new("interval_s", "must be a whole number of seconds")
}

/// The fast path for the bodies meters, the fleet and our Kafka encoder actually send:
/// compact JSON with the fields in their documented order (what `serde_json` writes for a
/// [`Reading`]). It only splits such a body into the same [`Loose`] values serde would give
/// and leaves every judgement to [`Fields::reading`]; anything else (whitespace, another key
/// order, escapes, a refusal of any kind) returns `None` and takes the serde path, which
/// gives the error with its field and index. Ingest reads every reading it takes, and serde's
/// visitor per field was the meter's largest own cost per reading (`bench/kafka.sh` under
/// perf); a property test holds the two paths to the same answers.
mod compact {
    use std::borrow::Cow;

    use super::{BodyShape, Fields, Loose, ParsedBody, Reading};

    pub(super) fn one(bytes: &[u8]) -> Option<Reading> {
        let mut c = Cursor { b: bytes, i: 0 };
        let reading = c.reading()?;
        c.at_end().then_some(reading)
    }

    pub(super) fn body(bytes: &[u8], max: usize) -> Option<ParsedBody> {
        if bytes.first() != Some(&b'[') {
            return one(bytes).map(|r| ParsedBody {
                readings: vec![r],
                shape: BodyShape::One,
            });
        }
        let mut c = Cursor { b: bytes, i: 1 };
        let mut readings = Vec::with_capacity((bytes.len() / 80).min(max));
        loop {
            if readings.len() == max {
                return None;
            }
            readings.push(c.reading()?);
            match c.byte()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
        c.at_end().then_some(ParsedBody {
            readings,
            shape: BodyShape::Array,
        })
    }

    struct Cursor<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Cursor<'a> {
        fn at_end(&self) -> bool {
            self.i == self.b.len()
        }

        fn byte(&mut self) -> Option<u8> {
            let b = *self.b.get(self.i)?;
            self.i += 1;
            Some(b)
        }

        fn literal(&mut self, s: &[u8]) -> Option<()> {
            self.b
                .get(self.i..)?
                .starts_with(s)
                .then(|| self.i += s.len())
        }

        /// A string's content after its opening quote, when it has no escape or control
        /// character (serde gives exactly these bytes then).
        fn string(&mut self) -> Option<&'a str> {
            let rest = self.b.get(self.i..)?;
            let end = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            if rest[end] != b'"' {
                return None;
            }
            let s = std::str::from_utf8(&rest[..end]).ok()?;
            self.i += end + 1;
            Some(s)
        }

        /// A non-negative JSON number as serde reads it: an integer that fits a `u64` as
        /// one, anything else (a fraction, an exponent, a larger integer) as the nearest `f64`.
        fn number(&mut self) -> Option<Loose<'a>> {
            let start = self.i;
            let digits = |c: &mut Self| {
                let from = c.i;
                while c.b.get(c.i).is_some_and(u8::is_ascii_digit) {
                    c.i += 1;
                }
                c.i > from
            };
            match self.b.get(self.i)? {
                b'0' => self.i += 1,
                b'1'..=b'9' => {
                    digits(self);
                }
                _ => return None,
            }
            let mut integer = true;
            if self.b.get(self.i) == Some(&b'.') {
                self.i += 1;
                integer = false;
                digits(self).then_some(())?;
            }
            if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                self.i += 1;
                integer = false;
                if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                digits(self).then_some(())?;
            }
            let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
            if integer && let Ok(n) = text.parse::<u64>() {
                return Some(Loose::Unsigned(n));
            }
            let v = text.parse::<f64>().ok()?;
            // serde refuses a number too large for an `f64`; so does this path.
            v.is_finite().then_some(Loose::Float(v))
        }

        fn reading(&mut self) -> Option<Reading> {
            self.literal(br#"{"meter_id":""#)?;
            let meter_id = self.string()?;
            self.literal(br#","ts":""#)?;
            let ts = self.string()?;
            self.literal(br#","kwh":"#)?;
            let kwh = self.number()?;
            let interval_s = match self.literal(br#","interval_s":"#) {
                Some(()) => Some(self.number()?),
                None => None,
            };
            self.literal(b"}")?;
            Fields {
                meter_id: Some(Loose::Str(Cow::Borrowed(meter_id))),
                ts: Some(Loose::Str(Cow::Borrowed(ts))),
                kwh: Some(kwh),
                interval_s,
            }
            .reading()
            .ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<ParsedBody, JsonError>) -> Option<(Option<usize>, &'static str)> {
        match r {
            Err(JsonError::Reading { index, error }) => Some((index, error.field)),
            _ => None,
        }
    }

    const GOOD: &str = r#"{"meter_id":"m1","ts":"2026-11-21T10:00:00Z","kwh":0.5}"#;

    /// The serde path alone, to hold the compact path to its answers.
    fn by_serde(bytes: &[u8], max: usize) -> Result<ParsedBody, JsonError> {
        let failure = RefCell::new(None);
        run(
            bytes,
            BodySeed {
                max,
                failure: &failure,
            },
            &failure,
        )
    }

    #[test]
    fn what_our_encoders_write_takes_the_compact_path() {
        let r = Reading {
            meter_id: "m1".parse().unwrap(),
            ts: "2026-11-21T10:00:00Z".parse().unwrap(),
            kwh: 0.155_000_000_000_000_03,
            interval_s: 900,
        };
        let body = serde_json::to_vec(&vec![r.clone(), r.clone()]).unwrap();
        let parsed = compact::body(&body, 10).expect("the compact path");
        assert_eq!(parsed.readings, vec![r.clone(), r.clone()]);
        assert_eq!(compact::one(&serde_json::to_vec(&r).unwrap()), Some(r));
        assert_eq!(
            compact::body(GOOD.as_bytes(), 10).map(|b| b.shape),
            Some(BodyShape::One)
        );
    }

    proptest::proptest! {
        /// Whatever the compact path answers, the serde path answers the same; bodies are
        /// readings as serde writes them, some of them cut, spliced or with a byte changed.
        #[test]
        fn the_compact_path_agrees_with_serde(
            readings in proptest::collection::vec(
                (
                    "[A-Za-z0-9_-]{1,3}|[^\"]{0,3}",
                    -100_000i64..100_000,
                    proptest::prop_oneof![0.0f64..30.0, proptest::num::f64::ANY],
                    proptest::prop_oneof![proptest::strategy::Just(1800u32), proptest::num::u32::ANY],
                ),
                0..4,
            ),
            array in proptest::bool::ANY,
            cut in proptest::option::of(0usize..400),
            poke in proptest::option::of((0usize..400, proptest::num::u8::ANY)),
            max in 1usize..4,
        ) {
            let objects: Vec<serde_json::Value> = readings
                .iter()
                .map(|(id, t, kwh, interval)| {
                    let ts = DateTime::from_timestamp(1_794_999_600 + t * 1800, 0).unwrap_or_default();
                    serde_json::json!({"meter_id": id, "ts": ts, "kwh": kwh, "interval_s": interval})
                })
                .collect();
            let mut body = if array || objects.len() != 1 {
                serde_json::to_vec(&objects).unwrap()
            } else {
                serde_json::to_vec(&objects[0]).unwrap()
            };
            if let Some(cut) = cut { body.truncate(cut); }
            if let Some((at, b)) = poke && at < body.len() { body[at] = b; }
            if let Some(fast) = compact::body(&body, max) {
                proptest::prop_assert_eq!(Ok(fast), by_serde(&body, max));
            }
            if let Some(fast) = compact::one(&body) {
                let failure = RefCell::new(None);
                let serde = run(&body, ReadingSeed { index: None, failure: &failure }, &failure);
                proptest::prop_assert_eq!(Ok(fast), serde);
            }
        }
    }

    #[test]
    fn one_object_or_an_array() {
        let one = parse_readings(GOOD.as_bytes(), 10).unwrap_or_default();
        assert_eq!((one.readings.len(), one.shape), (1, BodyShape::One));
        let body = format!("[{GOOD},{GOOD}]");
        let two = parse_readings(body.as_bytes(), 10).unwrap_or_default();
        assert_eq!((two.readings.len(), two.shape), (2, BodyShape::Array));
        assert_eq!(two.readings[0].interval_s, DEFAULT_INTERVAL_S);
    }

    #[test]
    fn errors_keep_their_field_and_index() {
        let body = format!(r#"[{GOOD},{{"meter_id":"m1","ts":"2026-11-21T10:00:00Z","kwh":"x"}}]"#);
        assert_eq!(
            field_of(parse_readings(body.as_bytes(), 10)),
            Some((Some(1), "kwh"))
        );
        assert_eq!(
            field_of(parse_readings(b"[0,0,0]", 10)),
            Some((Some(0), "reading"))
        );
        let unknown = r#"{"meter_id":"m1","ts":"2026-11-21T10:00:00Z","kwh":1,"kw":2}"#;
        assert_eq!(
            field_of(parse_readings(unknown.as_bytes(), 10)),
            Some((None, "reading"))
        );
        let nested = r#"{"meter_id":{"a":[1,2]},"ts":"2026-11-21T10:00:00Z","kwh":1}"#;
        assert_eq!(
            field_of(parse_readings(nested.as_bytes(), 10)),
            Some((None, "meter_id"))
        );
    }

    #[test]
    fn the_cap_is_enforced_while_reading() {
        let body = format!("[{GOOD},{GOOD},{GOOD}");
        // Cut short after the cap: refused for size before the syntax error is reached.
        assert_eq!(
            parse_readings(body.as_bytes(), 2),
            Err(JsonError::TooMany { max: 2 })
        );
        let body = format!("[{GOOD},{GOOD}]");
        assert!(parse_readings(body.as_bytes(), 2).is_ok());
    }

    #[test]
    fn shapes_and_syntax() {
        assert_eq!(parse_readings(b"[]", 2), Err(JsonError::Empty));
        assert_eq!(parse_readings(b"42", 2), Err(JsonError::Shape));
        assert!(matches!(
            parse_readings(b"[{", 2),
            Err(JsonError::Syntax(_))
        ));
        let trailing = format!("{GOOD} x");
        assert!(matches!(
            parse_readings(trailing.as_bytes(), 2),
            Err(JsonError::Syntax(_))
        ));
        assert!(parse_reading(GOOD.as_bytes()).is_ok());
        assert!(matches!(
            parse_reading(b"[]"),
            Err(JsonError::Reading { .. })
        ));
    }
}

/// The domain's reading rules as a meter applies them to a request: the format, then the
/// time window.
#[cfg(test)]
mod rules {
    use chrono::{DateTime, Utc};

    use crate::domain::{AcceptWindow, FieldError, MeterId, Reading};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-21T12:00:00Z".parse().unwrap_or_default()
    }

    /// As the meter judges a request: the format, then the time rules at `now()`.
    fn format(v: &serde_json::Value) -> Result<Reading, FieldError> {
        super::parse_reading(v.to_string().as_bytes()).map_err(|e| match e {
            super::JsonError::Reading { error, .. } => error,
            other => FieldError::new("body", other.to_string()),
        })
    }

    fn parse(v: serde_json::Value) -> Result<Reading, FieldError> {
        let r = format(&v)?;
        AcceptWindow::default().check(&r, now())?;
        Ok(r)
    }

    #[test]
    fn accepts_a_good_reading_and_defaults_the_interval() {
        let r = parse(json!({"meter_id": "MAC000123", "ts": "2026-11-21T10:00:00Z", "kwh": 0.123}));
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.interval_s, 1800);
        assert_eq!(r.kwh, 0.123);
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let base = json!({"meter_id": "MAC1", "ts": "2026-11-21T10:00:00Z", "kwh": 0.5});
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("meter_id", json!(null), "meter_id"),
            ("meter_id", json!("bad id!"), "meter_id"),
            ("meter_id", json!("x".repeat(65)), "meter_id"),
            ("ts", json!("yesterday"), "ts"),
            ("ts", json!("2026-11-21T10:10:00Z"), "ts"),
            ("ts", json!("2026-11-22T10:00:00Z"), "ts"),
            ("ts", json!(12345), "ts"),
            ("kwh", json!(-0.1), "kwh"),
            ("kwh", json!(13.0), "kwh"),
            ("kwh", json!("NaN"), "kwh"),
            ("interval_s", json!(1234), "interval_s"),
            ("interval_s", json!(-1800), "interval_s"),
        ];
        for (key, value, field) in cases {
            let mut v = base.clone();
            if value.is_null() {
                v.as_object_mut().map(|o| o.remove(key));
            } else {
                v[key] = value.clone();
            }
            let err = parse(v)
                .err()
                .unwrap_or_else(|| panic!("{key}={value} accepted"));
            assert_eq!(err.field, field, "{key}={value}: {err}");
        }
    }

    #[test]
    fn interval_changes_alignment_and_limit() {
        let r = parse(
            json!({"meter_id": "m", "ts": "2026-11-21T10:15:00Z", "kwh": 7.0, "interval_s": 900}),
        );
        assert_eq!(r.err().map(|e| e.field), Some("kwh"));
        let r = parse(
            json!({"meter_id": "m", "ts": "2026-11-21T10:15:00Z", "kwh": 6.0, "interval_s": 3600}),
        );
        assert_eq!(r.err().map(|e| e.field), Some("ts"));
    }

    #[test]
    fn small_clock_skew_is_tolerated() {
        let ok = parse(json!({"meter_id": "m", "ts": "2026-11-21T12:00:00Z", "kwh": 0.1}));
        assert!(ok.is_ok());
        let late = parse(json!({"meter_id": "m", "ts": "2026-11-21T12:30:00Z", "kwh": 0.1}));
        assert!(late.is_err());
    }

    #[test]
    fn readings_older_than_the_retention_are_refused() {
        let window = AcceptWindow { max_age_days: 730 };
        let at = |s: &str| Reading {
            meter_id: MeterId::parse("m").unwrap_or_else(|e| panic!("{e}")),
            ts: s.parse().unwrap_or_default(),
            kwh: 0.1,
            interval_s: 1800,
        };
        // now() is 2026-11-21T12:00:00Z; 730 days before is 2024-11-21T12:00:00Z.
        assert!(window.check(&at("2024-11-21T12:00:00Z"), now()).is_ok());
        let old = window.check(&at("2024-11-21T11:30:00Z"), now());
        assert_eq!(old.map_err(|e| e.field), Err("ts"));
        let year_one = parse(json!({"meter_id": "m", "ts": "0001-01-01T00:00:00Z", "kwh": 0.1}));
        assert_eq!(year_one.err().map(|e| e.field), Some("ts"));
    }

    #[test]
    fn the_format_needs_no_clock() {
        // What a meter accepted is well-formed whenever and wherever it is read again.
        let ahead = json!({"meter_id": "m", "ts": "2030-01-01T00:00:00Z", "kwh": 0.1});
        assert!(format(&ahead).is_ok());
        let old = json!({"meter_id": "m", "ts": "2001-01-01T00:00:00Z", "kwh": 0.1});
        assert!(format(&old).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r = parse(json!({"meter_id": "m", "ts": "2026-11-21T10:00:00Z", "kwh": 0.1, "kw": 3}));
        assert_eq!(r.err().map(|e| e.field), Some("reading"));
    }
}
