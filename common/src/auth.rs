//! Credentials: per-meter bearer tokens derived from a server secret, and the operator/analyst
//! token for internal routes. Every comparison is constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::domain::MeterId;
use crate::store::{Store, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// Shortest meter secret accepted: 32 bytes, as much as the HMAC-SHA256 tag it keys.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing `Authorization: Bearer <token>` header")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("the token's key is not in service (rotated out?); ask the operator for a new token")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("the token was revoked; ask the operator for a new token")]
    Revoked,
}

/// A meter secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name} is {len} bytes long; it must be at least {MIN_SECRET_BYTES} bytes \
     (generate one with `openssl rand -hex 32`)"
)]
pub struct SecretError {
    pub name: &'static str,
    pub len: usize,
}

/// One signing key: the secret and the id tokens name it by.
struct Key {
    id: String,
    secret: Vec<u8>,
}

impl Key {
    fn new(name: &'static str, secret: &str) -> Result<Self, SecretError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError {
                name,
                len: secret.len(),
            });
        }
        // The id is a digest of the secret: every replica derives the same one, and it
        // tells nothing usable about the secret.
        let digest = Sha256::new()
            .chain_update(b"iot-demo key id\0")
            .chain_update(secret.as_bytes())
            .finalize();
        Ok(Self {
            id: URL_SAFE_NO_PAD.encode(&digest[..6]),
            secret: secret.as_bytes().to_vec(),
        })
    }

    fn mac(&self, meter_id: &str, issued_ms: i64) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"iot-demo meter token v2\0");
        mac.update(meter_id.as_bytes());
        mac.update(b"\0");
        mac.update(self.id.as_bytes());
        mac.update(b"\0");
        mac.update(&issued_ms.to_be_bytes());
        mac
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub meter_id: MeterId,
    /// When the token was issued, ms since the epoch: a revocation voids the tokens issued
    /// up to it, and a token issued after it works.
    pub issued_ms: i64,
}

/// Issues and checks meter tokens: `<meter_id>.<key id>.<issued ms>.<base64url(HMAC-SHA256)>`.
/// The meter id travels in the token so a valid token for another meter is told apart from
/// a forged one (403 rather than 401) and no token table is needed; the key id lets a
/// service hold the current secret and, while secrets rotate, the previous one.
#[derive(Clone)]
pub struct MeterTokens {
    current: Arc<Key>,
    previous: Option<Arc<Key>>,
}

impl std::fmt::Debug for MeterTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeterTokens(<secret>)")
    }
}

impl MeterTokens {
    /// Tokens under `secret` (`IOT_METER_SECRET`), at least [`MIN_SECRET_BYTES`] long.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self {
            current: Arc::new(Key::new("IOT_METER_SECRET", secret)?),
            previous: None,
        })
    }

    /// Also accepts tokens of `previous` (`IOT_METER_SECRET_PREVIOUS`) while secrets rotate;
    /// `None` or an empty string: no previous secret.
    pub fn with_previous(mut self, previous: Option<&str>) -> Result<Self, SecretError> {
        self.previous = match previous.map(str::trim).filter(|p| !p.is_empty()) {
            Some(p) => Some(Arc::new(Key::new("IOT_METER_SECRET_PREVIOUS", p)?)),
            None => None,
        };
        Ok(self)
    }

    /// A new token for a meter, signed with the current secret.
    pub fn issue(&self, meter_id: &MeterId) -> String {
        self.issue_at(meter_id, Utc::now().timestamp_millis())
    }

    pub fn issue_at(&self, meter_id: &MeterId, issued_ms: i64) -> String {
        let key = &self.current;
        let tag = key.mac(meter_id, issued_ms).finalize().into_bytes();
        format!(
            "{meter_id}.{}.{issued_ms}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a token's signature and returns what it says.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut parts = token.rsplitn(4, '.');
        let (Some(tag), Some(issued), Some(key_id), Some(meter_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let meter_id = MeterId::parse(meter_id).map_err(|_| AuthError::Malformed)?;
        let issued_ms: i64 = issued.parse().map_err(|_| AuthError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| AuthError::Malformed)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or(AuthError::UnknownKey)?;
        key.mac(&meter_id, issued_ms)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        Ok(Claims {
            meter_id,
            issued_ms,
        })
    }
}

/// Revoked meters as the store last listed them, each with the instant its revocation
/// voids tokens up to. Every replica refreshes its copy in the background
/// ([`Revocations::keep_fresh`]), so a revocation reaches all of them within one refresh.
#[derive(Debug, Default)]
pub struct Revocations {
    revoked: RwLock<HashMap<MeterId, i64>>,
}

impl Revocations {
    /// Whether the token was issued at or before its meter's revocation.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        self.revoked
            .read()
            .map(|m| {
                m.get(&claims.meter_id)
                    .is_some_and(|at| claims.issued_ms <= *at)
            })
            .unwrap_or(false)
    }

    /// Takes in a revocation made here, without waiting for the next refresh.
    pub fn insert(&self, meter_id: &MeterId, revoked_at_ms: i64) {
        if let Ok(mut m) = self.revoked.write() {
            m.insert(meter_id.clone(), revoked_at_ms);
        }
    }

    /// Replaces the list with the store's.
    pub async fn refresh(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let list = store.revocations().await?;
        let n = list.len();
        let fresh: HashMap<MeterId, i64> = list
            .into_iter()
            .map(|(id, at)| (id, at.timestamp_millis()))
            .collect();
        if let Ok(mut m) = self.revoked.write() {
            *m = fresh;
        }
        Ok(n)
    }

    /// Refreshes the list every `every` until `shutdown`. A failed refresh keeps the last
    /// list (a store outage must not stop ingest) and says so in the log. Never fails: the
    /// result type lets a service run it as one of its tasks.
    pub async fn keep_fresh(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        every: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        let mut failing = false;
        loop {
            match self.refresh(store.as_ref()).await {
                Ok(_) if failing => {
                    tracing::info!("revocation list refreshed again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "cannot refresh the revocation list; keeping the last one");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// How a service tells a meter's token good: signature, then revocation.
#[derive(Clone, Debug)]
pub struct MeterAuth {
    pub tokens: MeterTokens,
    pub revocations: Arc<Revocations>,
}

impl MeterAuth {
    pub fn new(tokens: MeterTokens) -> Self {
        Self {
            tokens,
            revocations: Arc::default(),
        }
    }

    /// The meter a token belongs to, if it verifies and is not revoked.
    pub fn check(&self, token: &str) -> Result<MeterId, AuthError> {
        let claims = self.tokens.verify(token)?;
        if self.revocations.is_revoked(&claims) {
            return Err(AuthError::Revoked);
        }
        Ok(claims.meter_id)
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

    const A: &str = "a-meter-secret-of-thirty-two-bytes-or-more";
    const B: &str = "another-meter-secret-of-thirty-two-bytes";

    fn id(s: &str) -> MeterId {
        MeterId::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tokens(s: &str) -> MeterTokens {
        MeterTokens::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn issued_tokens_verify_and_name_their_meter() {
        let t = tokens(A);
        let tok = t.issue_at(&id("MAC000123"), 1_000);
        let claims = t.verify(&tok).map_err(|e| e.to_string());
        assert_eq!(
            claims.map(|c| (c.meter_id, c.issued_ms)),
            Ok((id("MAC000123"), 1_000))
        );
    }

    #[test]
    fn forged_and_foreign_tokens_fail() {
        let t = tokens(A);
        let other = tokens(B);
        assert_eq!(
            t.verify(&other.issue(&id("m1"))),
            Err(AuthError::UnknownKey)
        );
        let tok = t.issue_at(&id("m1"), 5);
        let rest = tok.split_once('.').map(|(_, r)| r).unwrap_or_default();
        assert_eq!(
            t.verify(&format!("m2.{rest}")),
            Err(AuthError::BadSignature)
        );
        let later = tok.replace(".5.", ".6.");
        assert_eq!(t.verify(&later), Err(AuthError::BadSignature));
        assert_eq!(t.verify("no-dot"), Err(AuthError::Malformed));
        assert_eq!(t.verify("bad id.k.1.AAAA"), Err(AuthError::Malformed));
        assert_eq!(t.verify("m1.k.x.AAAA"), Err(AuthError::Malformed));
        assert_eq!(t.verify("m1.k.1.!!!"), Err(AuthError::Malformed));
    }

    #[test]
    fn short_secrets_are_refused() {
        let e = MeterTokens::new("s3cret").err();
        assert_eq!(e.map(|e| e.len), Some(6));
        let e = tokens(A).with_previous(Some("short")).err();
        assert_eq!(e.map(|e| e.name), Some("IOT_METER_SECRET_PREVIOUS"));
    }

    #[test]
    fn previous_secret_works_while_configured() -> Result<(), SecretError> {
        let old = tokens(A).issue(&id("m1"));
        let rotating = tokens(B).with_previous(Some(A))?;
        assert!(rotating.verify(&old).is_ok());
        assert!(rotating.verify(&rotating.issue(&id("m1"))).is_ok());
        let rotated = tokens(B).with_previous(None)?;
        assert_eq!(rotated.verify(&old), Err(AuthError::UnknownKey));
        Ok(())
    }

    #[test]
    fn revocation_voids_tokens_issued_up_to_it() {
        let auth = MeterAuth::new(tokens(A));
        let before = auth.tokens.issue_at(&id("m1"), 100);
        let after = auth.tokens.issue_at(&id("m1"), 201);
        auth.revocations.insert(&id("m1"), 200);
        assert_eq!(auth.check(&before), Err(AuthError::Revoked));
        assert_eq!(auth.check(&after), Ok(id("m1")));
        assert_eq!(
            auth.check(&auth.tokens.issue_at(&id("m2"), 100)),
            Ok(id("m2"))
        );
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
