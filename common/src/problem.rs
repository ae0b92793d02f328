//! Every HTTP error of every service, as an RFC 9457 problem document. [`ErrorCode`] is the
//! closed list of what can go wrong, each with the one status it is answered with; handlers
//! return [`ApiError`] and convert port errors with `?` (the `From` impls below), so no
//! handler picks a status by hand. Logging is the `problem_responses` middleware's job, not
//! the conversions'.

use axum::extract::FromRequestParts;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::bus::BusError;
use crate::store::StoreError;

/// Media type of every error body: RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What a 5xx tells the client: the detail (a store or bus error) stays in the log line that
/// carries the same request id.
const SERVER_DETAIL: &str =
    "the service could not handle this request; retry later, or quote the request id";

/// What went wrong, as the client reads it in the problem's `type`
/// (`urn:iot-demo:problem:<code>`, the variant's name in snake case). Each code has exactly
/// one status.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// The request cannot be read (a broken body or form).
    BadRequest,
    /// The body is not JSON.
    MalformedJson,
    /// The body is JSON, but not a reading or an array of readings.
    MalformedBody,
    /// A query parameter is unknown, of the wrong type or out of range.
    InvalidQuery,
    /// No credentials, or not valid ones.
    Unauthorized,
    /// Valid credentials for something else (another meter's readings).
    Forbidden,
    /// A form that changes state, sent from another site.
    CrossSite,
    NotFound,
    MethodNotAllowed,
    /// The body did not arrive within the request timeout.
    RequestTimeout,
    /// A recompute is running already.
    RunInProgress,
    /// The recompute could not be started.
    NotStarted,
    PayloadTooLarge,
    /// More readings than one request may carry.
    BatchTooLarge,
    UnsupportedMediaType,
    /// A reading breaks a rule; `field` and `index` say which.
    InvalidReading,
    /// A meter registration breaks a rule; `field` says which.
    InvalidMeter,
    /// An empty array of readings.
    EmptyBatch,
    /// Some other well-formed request the service cannot act on.
    InvalidRequest,
    /// Too many failed attempts from one client.
    TooManyRequests,
    /// A fault of the service itself.
    Internal,
    /// The service is at capacity: retry in a second.
    Overloaded,
    /// A port (store, bus, analytics) does not answer: retry later.
    Unavailable,
    /// The service did not answer within the request timeout.
    ServiceTimeout,
    /// An analyst's SQL is not one read-only query (DDL, DML, COPY, several statements).
    QueryRefused,
    /// An analyst's SQL does not parse or plan (an unknown column, no time bound on readings).
    QueryInvalid,
    /// An analyst's SQL went over its memory or time limit.
    QueryOverLimit,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        <ErrorCode as strum::IntoEnumIterator>::iter()
    }

    /// The one status this code is answered with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            BadRequest | MalformedJson | MalformedBody | InvalidQuery | QueryRefused
            | QueryInvalid => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden | CrossSite => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            RunInProgress | NotStarted => StatusCode::CONFLICT,
            PayloadTooLarge | BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidReading | InvalidMeter | EmptyBatch | InvalidRequest | QueryOverLimit => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Overloaded | Unavailable | ServiceTimeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The code as it appears in the problem's `type`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// How long a client should wait before trying again, for the codes that say so.
    fn retry_after_s(self) -> Option<u64> {
        match self {
            ErrorCode::Overloaded | ErrorCode::ServiceTimeout => Some(1),
            ErrorCode::Unavailable => Some(5),
            _ => None,
        }
    }

    /// The code of an error response some other layer wrote with only a status (axum's own
    /// refusals).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::CONFLICT => ErrorCode::NotStarted,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidRequest,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::TooManyRequests,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// An error answered as an RFC 9457 problem document: `type` (`urn:iot-demo:problem:<code>`),
/// `title`, `status`, `detail`, and the extensions `field` (the request field at fault),
/// `index` (the reading's position in a batch) and `request_id`. A 5xx never shows its detail
/// to the client; `problem_responses` logs it with the request id.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    /// The position of the offending reading in a batch.
    pub index: Option<usize>,
}

/// An RFC 9457 problem document: the body of every error of every service.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// `urn:iot-demo:problem:<code>`: what went wrong, one code per status.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:iot-demo:problem:[a-z_]+$")]
    kind: String,
    /// The status's reason phrase.
    title: &'a str,
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What to change; for a fault of the service, only to retry and quote the request id.
    detail: &'a str,
    /// The request field at fault: a body field, `body`, `authorization`, a query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    field: Option<&'a str>,
    /// The position of the offending reading in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    index: Option<usize>,
    /// The request's id, as in the `X-Request-Id` header and the service's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    request_id: Option<&'a str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            index: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// What the client is told: the detail, unless the fault is the server's.
    fn client_detail(&self) -> &str {
        if self.status().is_server_error() {
            SERVER_DETAIL
        } else {
            &self.message
        }
    }

    pub(crate) fn render(&self, request_id: Option<&str>) -> Response {
        let status = self.status();
        let problem = Problem {
            kind: format!("urn:iot-demo:problem:{}", self.code.as_str()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.client_detail(),
            field: self.field.as_deref(),
            index: self.index,
            request_id,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut res = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        if let Some(s) = self.code.retry_after_s() {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.render(None);
        // Kept for `problem_responses`, which adds the request id and logs the detail.
        res.extensions_mut().insert(self);
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(format!("the store is unavailable: {e}"))
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        let code = match e {
            BusError::Overloaded => ErrorCode::Overloaded,
            _ => ErrorCode::Unavailable,
        };
        ApiError::new(code, format!("readings not accepted: {e}"))
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(ErrorCode::Unauthorized, e.to_string()).field("authorization")
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(ErrorCode::InvalidQuery, e.body_text()).field("query")
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        ApiError::new(ErrorCode::for_status(e.status()), e.body_text())
    }
}

/// `axum::extract::Query` whose refusal is an [`ApiError`] (`invalid_query`), so handlers
/// take typed query structs and never see a rejection.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_its_one_status() {
        let expected = [
            ("bad_request", 400),
            ("malformed_json", 400),
            ("malformed_body", 400),
            ("invalid_query", 400),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("cross_site", 403),
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("request_timeout", 408),
            ("run_in_progress", 409),
            ("not_started", 409),
            ("payload_too_large", 413),
            ("batch_too_large", 413),
            ("unsupported_media_type", 415),
            ("invalid_reading", 422),
            ("invalid_meter", 422),
            ("empty_batch", 422),
            ("invalid_request", 422),
            ("too_many_requests", 429),
            ("internal", 500),
            ("overloaded", 503),
            ("unavailable", 503),
            ("service_timeout", 503),
            ("query_refused", 400),
            ("query_invalid", 400),
            ("query_over_limit", 422),
        ];
        assert_eq!(ErrorCode::all().count(), expected.len());
        for (code, (name, status)) in ErrorCode::all().zip(expected) {
            assert_eq!(code.as_str(), name);
            assert_eq!(name.parse::<ErrorCode>().ok(), Some(code), "{name}");
            assert_eq!(code.status().as_u16(), status, "{name}");
            let rendered = ApiError::new(code, "x").into_response();
            assert_eq!(rendered.status().as_u16(), status, "{name}");
        }
    }

    #[test]
    fn a_status_alone_maps_to_a_code_with_that_status() {
        for code in ErrorCode::all() {
            let back = ErrorCode::for_status(code.status());
            assert_eq!(back.status(), code.status(), "{code:?}");
        }
    }

    #[test]
    fn retryable_codes_say_when() {
        let res = ApiError::from(BusError::Overloaded).into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let res = ApiError::from(StoreError::Unavailable("down".into())).into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "5");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
