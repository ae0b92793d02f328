//! Sessions: a signed-in browser holds a random session id, never the token it signed in
//! with; the id maps to an expiry and what the session is for (an analyst; a resident's
//! meter), kept here, in the web process (a restart signs everyone out). Failed sign-ins are
//! counted per client, and a client that keeps failing is refused for a while;
//! state-changing forms must come from the site's own pages.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use iot_common::problem::{ApiError, ErrorCode};

/// The analyst console's cookie.
pub const COOKIE: &str = "iot_session";
/// A resident's own page's cookie.
pub const RESIDENT_COOKIE: &str = "iot_me";
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Failed sign-ins a client may make in [`FAILURE_WINDOW`] before it is refused (429).
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most sessions kept at once; the oldest goes first (a bound, not a limit anyone meets).
const MAX_SESSIONS: usize = 10_000;

/// What a resident's session holds: the claims of the meter token it signed in with, and
/// the tariff the resident chose on their page (none yet: the default one).
#[derive(Debug, Clone)]
pub struct ResidentSession {
    pub claims: iot_common::auth::Claims,
    pub tariff: Option<String>,
}

/// Live sessions, each holding a `V` (nothing for an analyst, the meter's claims for a
/// resident), under one cookie scoped to one path.
pub struct Sessions<V = ()> {
    cookie: &'static str,
    path: &'static str,
    live: Mutex<HashMap<String, (Instant, V)>>,
    failures: Mutex<HashMap<Option<IpAddr>, VecDeque<Instant>>>,
    /// Adds `Secure` to the cookie (`IOT_COOKIE_SECURE=1`, behind a TLS front).
    pub secure: bool,
}

impl Sessions<()> {
    /// The analyst console's sessions (`/internal`).
    pub fn new(secure: bool) -> Self {
        Self::for_cookie(COOKIE, "/internal", secure)
    }

    /// Opens an analyst's session; returns its `Set-Cookie` value.
    pub fn open(&self) -> String {
        self.open_with(())
    }

    /// Whether the request carries a live session.
    pub fn is_signed_in(&self, headers: &HeaderMap) -> bool {
        self.get(headers).is_some()
    }
}

impl<V: Clone> Sessions<V> {
    pub fn for_cookie(cookie: &'static str, path: &'static str, secure: bool) -> Self {
        Self {
            cookie,
            path,
            live: Mutex::default(),
            failures: Mutex::default(),
            secure,
        }
    }

    fn set_cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}; Path={}; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            self.cookie,
            self.path,
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Opens a session holding `value`; returns its `Set-Cookie` value.
    pub fn open_with(&self, value: V) -> String {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        if let Ok(mut live) = self.live.lock() {
            let now = Instant::now();
            live.retain(|_, (expires, _)| *expires > now);
            if live.len() >= MAX_SESSIONS
                && let Some(oldest) = live
                    .iter()
                    .min_by_key(|(_, (e, _))| *e)
                    .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
            live.insert(id.clone(), (now + SESSION_TTL, value));
        }
        self.set_cookie(&id, SESSION_TTL.as_secs())
    }

    /// What the request's live session holds, if it has one.
    pub fn get(&self, headers: &HeaderMap) -> Option<V> {
        let id = session_id(headers, self.cookie)?;
        let live = self.live.lock().ok()?;
        live.get(id)
            .filter(|(e, _)| *e > Instant::now())
            .map(|(_, v)| v.clone())
    }

    /// Changes what the request's live session holds; false when it has none.
    pub fn update(&self, headers: &HeaderMap, change: impl FnOnce(&mut V)) -> bool {
        let Some(id) = session_id(headers, self.cookie) else {
            return false;
        };
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        match live.get_mut(id).filter(|(e, _)| *e > Instant::now()) {
            Some((_, v)) => {
                change(v);
                true
            }
            None => false,
        }
    }

    /// Ends the request's session; returns the `Set-Cookie` value that clears the cookie.
    pub fn close(&self, headers: &HeaderMap) -> String {
        if let (Some(id), Ok(mut live)) = (session_id(headers, self.cookie), self.live.lock()) {
            live.remove(id);
        }
        self.set_cookie("", 0)
    }

    /// Seconds until `client` may try again, when it failed too often lately.
    pub fn throttled(&self, client: Option<IpAddr>) -> Option<u64> {
        let mut failures = self.failures.lock().ok()?;
        let now = Instant::now();
        let recent = failures.get_mut(&client)?;
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() < MAX_FAILURES {
            return None;
        }
        let oldest = *recent.front()?;
        Some(
            (FAILURE_WINDOW - now.duration_since(oldest))
                .as_secs()
                .max(1),
        )
    }

    pub fn failed(&self, client: Option<IpAddr>) {
        if let Ok(mut failures) = self.failures.lock() {
            let now = Instant::now();
            failures.retain(|_, r| {
                r.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
            failures.entry(client).or_default().push_back(now);
        }
    }
}

/// What a sign-in form posts.
#[derive(serde::Deserialize)]
pub struct SignInForm {
    pub token: String,
}

/// What a sign-in form needs of its page: where a signed-in browser lands, what a wrong
/// token is told, and the form again with a message, answered with a status.
pub struct SignInPage<'a> {
    pub landing: &'static str,
    pub wrong_token: &'static str,
    pub form: &'a dyn Fn(StatusCode, &str) -> Response,
}

impl<V: Clone> Sessions<V> {
    /// One sign-in, the same on every page: a client that failed too often lately is
    /// refused (429 with `Retry-After`); a token `verify` does not accept is counted and
    /// refused (401); else a session holding what `verify` answered is opened and the browser
    /// sent to the landing page. (That the form comes from the site is the route's
    /// `SameSite` check.)
    pub fn sign_in(
        &self,
        client: Option<IpAddr>,
        verify: impl FnOnce() -> Option<V>,
        page: SignInPage<'_>,
    ) -> Response {
        if let Some(wait) = self.throttled(client) {
            let mut res = (page.form)(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins from here; wait a minute and try again.",
            );
            res.headers_mut().insert(header::RETRY_AFTER, wait.into());
            return res;
        }
        let Some(value) = verify() else {
            self.failed(client);
            tracing::warn!(client = ?client, page = page.landing, "failed sign-in");
            return (page.form)(StatusCode::UNAUTHORIZED, page.wrong_token);
        };
        (
            [(header::SET_COOKIE, self.open_with(value))],
            Redirect::to(page.landing),
        )
            .into_response()
    }

    /// Ends the request's session and sends the browser to `landing`.
    pub fn sign_out(&self, headers: &HeaderMap, landing: &'static str) -> Response {
        (
            [(header::SET_COOKIE, self.close(headers))],
            Redirect::to(landing),
        )
            .into_response()
    }
}

fn session_id<'a>(headers: &'a HeaderMap, cookie: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == cookie)
        .map(|(_, v)| v)
}

/// The refusal of a form sent from another site; `page` names whose page it must come from.
pub fn cross_site(page: &str) -> ApiError {
    ApiError::new(
        ErrorCode::CrossSite,
        format!("this form must be sent from the {page} own page"),
    )
    .field("origin")
}

/// Whether a state-changing request comes from this site's own pages: a browser says where
/// a request comes from (`Sec-Fetch-Site`, or in older browsers `Origin`); a request that says
/// nothing is not a browser's cross-site form (curl, scripts with the bearer token) and
/// passes. `Sec-Fetch-Site` decides when present: the pages' `Referrer-Policy: no-referrer`
/// makes a browser send `Origin: null` even for the site's own forms.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_session_is_a_random_id_that_can_be_closed() {
        let s = Sessions::new(true);
        let cookie = s.open();
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"));
        let pair = cookie.split(';').next().unwrap_or_default().to_owned();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&pair).unwrap_or(HeaderValue::from_static("")),
        );
        assert!(s.is_signed_in(&h));
        s.close(&h);
        assert!(!s.is_signed_in(&h));
        assert!(!s.is_signed_in(&headers(&[("cookie", "iot_session=forged")])));
    }

    #[test]
    fn the_sixth_failure_in_a_minute_is_throttled() {
        let s = Sessions::new(false);
        let client = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..MAX_FAILURES {
            assert_eq!(s.throttled(client), None);
            s.failed(client);
        }
        assert!(s.throttled(client).is_some());
        assert_eq!(s.throttled(Some(IpAddr::from([10, 0, 0, 2]))), None);
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9080"),
            ("origin", "http://127.0.0.1:9080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "a")])));
        // What Chromium sends for the site's own form under `Referrer-Policy: no-referrer`.
        assert!(same_origin(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "null"),
            ("host", "a")
        ])));
        assert!(!same_origin(&headers(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://a"),
            ("host", "a")
        ])));
    }
}
