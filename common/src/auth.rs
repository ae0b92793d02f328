//! Credentials: per-meter bearer tokens derived from a server secret, and the operator/analyst
//! token for internal routes. Every comparison is constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::is_valid_meter_id;

type HmacSha256 = Hmac<Sha256>;

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
}

/// Issues and checks meter tokens: `<meter_id>.<base64url(HMAC-SHA256(secret, meter_id))>`.
/// The meter id travels in the token so a valid token for another meter is told apart from
/// a forged one (403 rather than 401), and the meter service needs no token table.
#[derive(Clone)]
pub struct MeterTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for MeterTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeterTokens(<secret>)")
    }
}

impl MeterTokens {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, meter_id: &str) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail; an empty key is still a key.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"iot-demo meter token v1\0");
        mac.update(meter_id.as_bytes());
        mac
    }

    /// The token for a meter.
    pub fn issue(&self, meter_id: &str) -> String {
        let tag = self.mac(meter_id).finalize().into_bytes();
        format!("{meter_id}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks a token and returns the meter it belongs to.
    pub fn verify<'t>(&self, token: &'t str) -> Result<&'t str, AuthError> {
        let (meter_id, tag) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        if !is_valid_meter_id(meter_id) {
            return Err(AuthError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| AuthError::Malformed)?;
        self.mac(meter_id)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        Ok(meter_id)
    }
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// A shared secret compared in constant time (hashing first hides the length too).
#[derive(Clone)]
pub struct StaticToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(<secret>)")
    }
}

impl StaticToken {
    pub fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    pub fn matches(&self, candidate: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        bool::from(self.digest.ct_eq(&d))
    }
}

/// A fresh random secret, URL-safe, for tokens generated on first start.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_name_their_meter() {
        let t = MeterTokens::new(b"s3cret");
        let tok = t.issue("MAC000123");
        assert_eq!(t.verify(&tok), Ok("MAC000123"));
    }

    #[test]
    fn forged_and_foreign_tokens_fail() {
        let t = MeterTokens::new(b"s3cret");
        let other = MeterTokens::new(b"other");
        assert_eq!(t.verify(&other.issue("m1")), Err(AuthError::BadSignature));
        let tok = t.issue("m1");
        let (_, tag) = tok.split_once('.').unwrap_or_default();
        assert_eq!(t.verify(&format!("m2.{tag}")), Err(AuthError::BadSignature));
        assert_eq!(t.verify("no-dot"), Err(AuthError::Malformed));
        assert_eq!(t.verify("bad id.AAAA"), Err(AuthError::Malformed));
        assert_eq!(t.verify("m1.!!!"), Err(AuthError::Malformed));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some("Basic abc")), Err(AuthError::Malformed));
        assert_eq!(bearer(Some("Bearer ")), Err(AuthError::Malformed));
    }

    #[test]
    fn static_token_matches_only_itself() {
        let t = StaticToken::new("analyst");
        assert!(t.matches("analyst"));
        assert!(!t.matches("analyst "));
        assert!(!t.matches(""));
    }
}
