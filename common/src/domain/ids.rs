//! Identifiers that parse once: a [`MeterId`] or a [`RegionCode`] that exists is valid, so
//! nothing downstream checks it again. They read from and write to strings through `parse`
//! (and serde, `FromStr`), and lend `&str` for everything else.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {max} characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct IdError {
    max: usize,
}

fn check(s: &str, max: usize) -> Result<(), IdError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(IdError { max }) }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest identifier, in bytes.
            pub const MAX_LEN: usize = $max;

            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check(&s, $max)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .pattern(Some(concat!("^[A-Za-z0-9_-]{1,", $max, "}$")))
                    .min_length(Some(1))
                    .max_length(Some($max))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        // Hash and Eq are the string's, so maps keyed by the id are searched by `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

identifier!(
    /// A meter identifier: 1 to 64 characters of `[A-Za-z0-9_-]`.
    MeterId,
    64
);

identifier!(
    /// A region code (e.g. an ONS code such as `E09000001`): 1 to 64 characters of
    /// `[A-Za-z0-9_-]`.
    RegionCode,
    64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_allowed_characters_and_lengths() {
        for good in ["m", "MAC000123", "a_b-C9", &"x".repeat(64)] {
            assert!(MeterId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "bad id", "é", "a.b", "a/b", &"x".repeat(65)] {
            assert!(MeterId::parse(bad).is_err(), "{bad:?}");
            assert!(RegionCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_refuses_what_parse_refuses() {
        let ok: Result<MeterId, _> = serde_json::from_str("\"MAC1\"");
        assert_eq!(ok.ok().as_deref(), Some("MAC1"));
        let bad: Result<RegionCode, _> = serde_json::from_str("\"no way\"");
        assert!(bad.is_err());
        let id = MeterId::parse("MAC1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(serde_json::to_string(&id).unwrap_or_default(), "\"MAC1\"");
    }
}
