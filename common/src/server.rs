//! Serving HTTP/1.1 to clients that may be slow or hostile. Every listener of every service
//! goes through [`serve`], so each one bounds how long a client may take to send its headers,
//! how long a whole request may run, and how long a connection may sit idle, and every error
//! it answers is a problem document carrying the request's id.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;

use crate::http::problem_responses;
use crate::problem::{ApiError, ErrorCode};

/// How long a client may take, on every listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must have arrived this long after the connection started waiting
    /// for them (a slowloris client trickling headers is cut off here).
    pub header_timeout: Duration,
    /// A request, body included, must have been answered within this (408 when the client
    /// was still sending its body, 503 otherwise).
    pub request_timeout: Duration,
    /// A connection with no request in flight on which no byte moves for this long is
    /// closed: the keep-alive limit, and the end of a client that stops reading.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

/// The limits as flags and `IOT_HTTP_*` variables, for every binary's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Milliseconds a client may take to send a request's headers.
    #[arg(long, env = "IOT_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,
    /// Milliseconds a whole request (body included) may take before 408 or 503.
    #[arg(long, env = "IOT_HTTP_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_request_timeout_ms: u64,
    /// Milliseconds a connection may sit idle (keep-alive) before it is closed.
    #[arg(long, env = "IOT_HTTP_IDLE_TIMEOUT_MS", default_value_t = 5_000)]
    pub http_idle_timeout_ms: u64,
}

impl HttpArgs {
    pub fn limits(&self) -> HttpLimits {
        let ms = |v: u64| Duration::from_millis(v.max(1));
        HttpLimits {
            header_timeout: ms(self.http_header_timeout_ms),
            request_timeout: ms(self.http_request_timeout_ms),
            idle_timeout: ms(self.http_idle_timeout_ms),
        }
    }
}

/// The span every log line of a request is in: its method and the route it matched (the
/// route's pattern, so ids in paths do not flood the logs), and its status once answered.
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str);
    tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route,
        status = tracing::field::Empty,
    )
}

fn record_status(res: &Response, latency: Duration, span: &tracing::Span) {
    span.record("status", res.status().as_u16());
    tracing::debug!(latency_ms = latency.as_millis() as u64, "answered");
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight requests finish.
/// Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router
        .layer(middleware::from_fn_with_state(limits, limit_request))
        .layer(middleware::from_fn(problem_responses))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(record_status)
                // A failed request is logged once, with its detail, by `problem_responses`.
                .on_failure(()),
        );
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: not fatal,
                    // but do not spin on it.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let io = TokioIo::new(IdleStream::new(
            stream,
            limits.idle_timeout,
            in_flight.clone(),
        ));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let busy = InFlight::enter(&in_flight);
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let _busy = busy;
                router.oneshot(req.map(Body::new)).await
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Counts a request in flight on its connection for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that ends itself once nothing has moved for `idle` while no request is in
/// flight (a request in flight is bounded by the request timeout instead).
struct IdleStream {
    stream: TcpStream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    in_flight: Arc<AtomicUsize>,
}

impl IdleStream {
    fn new(stream: TcpStream, idle: Duration, in_flight: Arc<AtomicUsize>) -> Self {
        Self {
            stream,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            in_flight,
        }
    }

    fn moved(&mut self) {
        self.armed = false;
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => {}
            ready => {
                this.moved();
                return ready;
            }
        }
        if this.in_flight.load(Ordering::Acquire) > 0 {
            this.armed = false;
            return Poll::Pending;
        }
        if !this.armed {
            let deadline = Instant::now() + this.idle;
            this.timer.as_mut().reset(deadline);
            this.armed = true;
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Bounds a request's run time. A body still arriving when time is up means a slow client
/// (408); otherwise the service was slow (503). Whenever a response goes out before the body
/// was read to the end (a stranger refused with 401, a request timed out), the connection is
/// closed rather than left to read a body nobody will use.
async fn limit_request(
    axum::extract::State(limits): axum::extract::State<HttpLimits>,
    req: Request,
    next: Next,
) -> Response {
    let received = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        use http_body::Body as _;
        if body.is_end_stream() {
            received.store(true, Ordering::Release);
        }
        Body::new(Tracked {
            inner: body,
            received: received.clone(),
        })
    });
    let mut res = match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) if !received.load(Ordering::Acquire) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                limits.request_timeout.as_millis()
            ),
        )
        .into_response(),
        Err(_) => ApiError::new(
            ErrorCode::ServiceTimeout,
            format!(
                "the request was not answered within {} ms",
                limits.request_timeout.as_millis()
            ),
        )
        .into_response(),
    };
    if !received.load(Ordering::Acquire) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// A request body that records when it has been read to the end.
struct Tracked {
    inner: Body,
    received: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.received.store(true, Ordering::Release);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The peer of a request served by [`serve`].
pub fn peer(req: &axum::http::Extensions) -> Option<SocketAddr> {
    req.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
