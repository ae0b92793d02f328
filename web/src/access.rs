//! Who may ask, said once: extractors a handler names in its signature, so a request that
//! may not ask is refused before the handler runs. [`SignedInAnalyst`] is the analyst token
//! as a bearer header or a console session; [`SameSite`] refuses a state-changing form sent
//! from another site. (A bearer-only analyst is [`iot_common::http::Analyst`]; the pages'
//! own variants, which answer with their sign-in form, live beside those pages.)

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use iot_common::http::is_analyst;
use iot_common::problem::{ApiError, ErrorCode};

use crate::sessions::{cross_site, same_origin};
use crate::state::WebState;

/// A request from an analyst: the analyst token as `Authorization: Bearer`, or a live
/// console session. Anything else is a 401 problem.
#[derive(Debug, Clone, Copy)]
pub struct SignedInAnalyst;

/// Whether the request comes from an analyst (see [`SignedInAnalyst`]).
pub fn signed_in_analyst(s: &WebState, headers: &axum::http::HeaderMap) -> bool {
    is_analyst(&s.analyst_token, headers) || s.sessions.is_signed_in(headers)
}

impl FromRequestParts<WebState> for SignedInAnalyst {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &WebState) -> Result<Self, ApiError> {
        if signed_in_analyst(s, &parts.headers) {
            Ok(Self)
        } else {
            Err(ApiError::new(ErrorCode::Unauthorized, "sign in first"))
        }
    }
}

/// A request that does not come from another site's page (see [`same_origin`]); else 403.
/// Named before the other extractors, so a cross-site form is told so whoever sent it.
#[derive(Debug, Clone, Copy)]
pub struct SameSite;

impl<S: Send + Sync> FromRequestParts<S> for SameSite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if same_origin(&parts.headers) {
            Ok(Self)
        } else if parts.uri.path().starts_with("/internal") {
            Err(cross_site("console's"))
        } else {
            Err(cross_site("site's"))
        }
    }
}
