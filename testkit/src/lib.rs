//! The tests' kit, one copy for every test binary (dev-dependency only; never in a service):
//! a child process that is killed when the test lets go of it ([`KillOnDrop`]), the
//! "listening" line the binaries print ([`listening`]), a poll until something holds
//! ([`poll`], [`poll_until`]), an HTTP client that shows redirects instead of following them
//! ([`no_redirect_client`]), a process's `/proc` figures ([`status_kib`]) and the secrets the
//! tests configure ([`secrets`]).

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::process::Child;
use std::time::Duration;

/// The secrets tests start services with: long enough for every check, obviously not real.
pub mod secrets {
    /// A meter-token key (`IOT_METER_SECRET`): at least 32 bytes.
    pub const METER_SECRET: &str = "test-meter-secret-of-at-least-32-bytes!";
    /// The analyst token (`IOT_ANALYST_TOKEN`).
    pub const ANALYST_TOKEN: &str = "test-analyst-token";
}

/// A child process killed (`kill -9`) and reaped when dropped, so a failing test leaves no
/// process behind.
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The listeners a service binary says it bound, from its stdout line
/// `listening external=http://A internal=http://B`: `(external, internal)` base URLs.
/// Panics (naming `what`) when the process ends before it says so.
pub fn listening(child: &mut Child, what: &str) -> (String, String) {
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("{what}: start it with a piped stdout"));
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_else(|e| panic!("{what} stdout: {e}"));
        if let Some(rest) = line.strip_prefix("listening external=") {
            let (external, internal) = rest.split_once(" internal=").unwrap_or((rest, ""));
            return (external.trim().to_owned(), internal.trim().to_owned());
        }
    }
    panic!("{what} exited before it listened");
}

/// Calls `check` every `every` until it answers `Some`, and returns that; `None` once
/// `timeout` has passed.
pub async fn poll<T, F, Fut>(timeout: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll`], failing the test (naming `what`) when `timeout` passes.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, every: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(timeout, every, check)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {timeout:?}"))
}

/// An HTTP client that answers a redirect as it is (303 and its `Location`), for tests of
/// sign-in and form flows.
pub fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A `/proc/PID/status` line in KiB, `field` with its colon (`"VmHWM:"`: peak resident
/// memory; `"VmRSS:"`: resident now).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    iot_common::proc_status::status_kib(Some(pid), field)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resets a process's peak resident memory to what it holds now (`clear_refs` 5), so the
/// next `VmHWM` is what comes after, not a start-up peak that could hide it; answers it.
pub fn reset_peak_rss(pid: u32) -> u64 {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|e| panic!("/proc/{pid}/clear_refs: {e}"));
    status_kib(pid, "VmHWM:")
}
