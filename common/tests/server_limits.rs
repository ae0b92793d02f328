//! What every listener bounds, on a real socket: an idle kept-alive connection is closed, a
//! slow handler is answered 503 with a problem document, a request's headers must arrive in
//! time, each response carries a request id, and a request's log lines say its method,
//! route and status.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use iot_common::problem::ApiError;
use iot_common::server::{HttpLimits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

async fn start(limits: HttpLimits) -> (String, CancellationToken) {
    logs();
    let router = Router::new()
        .route("/fast", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/items/{id}",
            get(|| async {
                tracing::info!("looking the item up");
                ApiError::not_found()
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, router, limits, stop.clone()));
    (addr, stop)
}

const LIMITS: HttpLimits = HttpLimits {
    header_timeout: Duration::from_millis(600),
    request_timeout: Duration::from_millis(400),
    idle_timeout: Duration::from_millis(300),
};

/// Reads until the server closes; what it sent and how long that took.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                return (
                    String::from_utf8_lossy(&all).into_owned(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&all).into_owned(), None)
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let (addr, stop) = start(LIMITS).await;
    let mut s = TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (answer, closed) = until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_lowercase().contains("x-request-id:"), "{answer}");
    let closed = closed.unwrap_or_else(|| panic!("the idle connection stayed open"));
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
    stop.cancel();
}

#[tokio::test]
async fn a_slow_handler_is_answered_503_in_time() {
    let (addr, stop) = start(LIMITS).await;
    let started = Instant::now();
    let res = reqwest::get(format!("http://{addr}/slow"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = res.text().await.unwrap_or_default();
    assert!(body.contains("problem:service_timeout"), "{body}");
    stop.cancel();
}

#[tokio::test]
async fn headers_that_never_end_are_cut_off() {
    let (addr, stop) = start(LIMITS).await;
    let mut s = TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, closed) = until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(
        closed.is_some(),
        "a connection without a complete request stayed open"
    );
    stop.cancel();
}

/// What the tests' log lines say, kept in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log of every test of this binary. Installed as the global subscriber before any
/// test's server runs ([`start`] calls it first): a subscriber scoped to one test thread
/// would miss span sites another test's thread reached first.
fn logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

#[tokio::test]
async fn a_requests_log_lines_carry_its_method_route_and_status() {
    let (addr, stop) = start(LIMITS).await;
    let res = reqwest::get(format!("http://{addr}/items/42"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 404);
    stop.cancel();
    let text = logs()
        .0
        .lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let handler = text
        .lines()
        .find(|l| l.contains("looking the item up"))
        .unwrap_or_else(|| panic!("no handler line in:\n{text}"));
    assert!(handler.contains("method=GET"), "{handler}");
    assert!(handler.contains("route=/items/{id}"), "{handler}");
    let answered = text
        .lines()
        .find(|l| l.contains("answered") && l.contains("route=/items/{id}"))
        .unwrap_or_else(|| panic!("no closing line in:\n{text}"));
    assert!(answered.contains("status=404"), "{answered}");
}
