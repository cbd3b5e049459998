//! The request and response bodies of [`Fence`](super::Fence).

use super::Shared;
use crate::drain::{Drain, Draining};
use crate::status::Stage;
use crate::BoxError;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::time::{Instant, Sleep};

/// What the inner service receives as the request body: the body as it
/// came ([`Plain`], the default), or one watched so that a deadline that
/// fires while the handler reads it is answered `408 Request Timeout`
/// ([`Watched`], and [`AxumBody`] with the `axum` feature). Chosen with
/// [`FenceLayer::watch_request_body`](super::FenceLayer::watch_request_body).
///
/// Sealed: the three kinds are the only ones.
///
/// # Examples
///
/// ```
/// use fencing_tower::server::body::{Plain, RequestBodyKind, Watched};
///
/// fn inner_body<K: RequestBodyKind<String>>() {}
/// inner_body::<Plain>(); // the inner service gets `String`
/// inner_body::<Watched>(); // ... or `RequestBody<String>`
/// ```
pub trait RequestBodyKind<B>: sealed::Sealed {
    /// The body type the inner service receives.
    type Body;

    /// The request as the inner service receives it; `watch` wraps its
    /// body, for the kinds that watch it (so that [`Plain`] neither moves
    /// the request nor touches the request's state).
    #[doc(hidden)]
    fn wrap<W>(request: Request<B>, watch: W) -> Request<Self::Body>
    where
        W: FnOnce(B) -> RequestBody<B>;
}

mod sealed {
    pub trait Sealed {}
}

/// The inner service receives the request body as it came: no `408`, a
/// deadline while reading the body is a `504` like any other. The default,
/// as it keeps the request's type (an axum `Router::layer` needs that).
///
/// # Examples
///
/// See [`RequestBodyKind`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

/// The inner service receives a [`RequestBody`]: a deadline that fires
/// while the handler reads the body is answered `408`.
///
/// # Examples
///
/// See [`RequestBodyKind`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Watched;

impl sealed::Sealed for Plain {}
impl sealed::Sealed for Watched {}

impl<B> RequestBodyKind<B> for Plain {
    type Body = B;

    fn wrap<W>(request: Request<B>, _: W) -> Request<B> {
        request
    }
}

impl<B> RequestBodyKind<B> for Watched {
    type Body = RequestBody<B>;

    fn wrap<W>(request: Request<B>, watch: W) -> Request<RequestBody<B>>
    where
        W: FnOnce(B) -> RequestBody<B>,
    {
        request.map(watch)
    }
}

/// The inner service receives an axum `Body` holding a watched one: the
/// request keeps axum's type, for `Router::layer`, and a deadline that
/// fires while an extractor or the handler reads the body is answered
/// `408`. With the `axum` feature.
///
/// # Examples
///
/// See [`FenceLayer::watch_axum_request_body`](super::FenceLayer::watch_axum_request_body).
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct AxumBody;

#[cfg(feature = "axum")]
impl sealed::Sealed for AxumBody {}

#[cfg(feature = "axum")]
impl<B> RequestBodyKind<B> for AxumBody
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Body = axum_core::body::Body;

    fn wrap<W>(request: Request<B>, watch: W) -> Request<axum_core::body::Body>
    where
        W: FnOnce(B) -> RequestBody<B>,
    {
        request.map(|body| axum_core::body::Body::new(watch(body)))
    }
}

pin_project! {
    /// The request body a fenced handler receives with [`Watched`]: the
    /// body hyper gave, unchanged, watched so that a deadline that fires
    /// while the handler reads it is answered `408 Request Timeout` (see
    /// the [status table](crate::status)), and so that a body that fails
    /// (the client went away, or reset the stream, before sending all of
    /// it) fires `client_disconnected` in the request's context. HTTP/1
    /// sees a client go, while a body is unread, only when the handler
    /// reads it; this makes that read a disconnect the handler's context
    /// knows of.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::server::{body::RequestBody, FenceLayer};
    /// use http_body_util::BodyExt;
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let echo = tower::service_fn(|request: http::Request<RequestBody<String>>| async {
    ///     let body = request.into_body().collect().await.unwrap().to_bytes();
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(body)))
    /// });
    /// let echo = tower_layer::Layer::layer(&FenceLayer::new().watch_request_body(), echo);
    /// let response = echo.oneshot(http::Request::new(String::from("ping"))).await.unwrap();
    /// let body = response.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "ping");
    /// # }
    /// ```
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        shared: Arc<Shared>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The body hyper gave.
    ///
    /// # Examples
    ///
    /// See [`RequestBody`].
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The body hyper gave, mutably.
    ///
    /// # Examples
    ///
    /// See [`RequestBody`].
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Unwraps the body hyper gave. A deadline that fires while it is read
    /// from then on is answered as if the handler were not reading it.
    ///
    /// # Examples
    ///
    /// See [`RequestBody`].
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        this.shared.set_reading(true);
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            // The body could not be read to its end: for a server's
            // request body, the client went away (or reset the stream)
            // while sending it.
            Some(Err(_)) => {
                this.shared.disconnect();
            }
            None => this.shared.set_reading(false),
            Some(Ok(_)) if this.inner.is_end_stream() => this.shared.set_reading(false),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response body of a fenced request: the handler's body, polled
    /// inside the request's context, or the empty body of a request a
    /// trigger stopped.
    ///
    /// Every poll runs with the request's `Fencing` as the context, so a
    /// streaming body reads `current()` as its handler did. When a trigger
    /// fires while the body streams (its deadline, the end of a drain's
    /// grace period), the stream ends with an error holding the
    /// [`Cancelled`](fencing::Cancelled): hyper then aborts the response
    /// (HTTP/1 closes the connection before the final chunk, HTTP/2 resets
    /// the stream), so the client sees the response cut short, never a
    /// truncated one that looks whole. A body dropped before its end (the
    /// client went away) fires `client_disconnected` in the request's
    /// context, for work the handler left running.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::server::FenceLayer;
    /// use http_body_util::BodyExt;
    /// use std::time::Duration;
    /// use tower::{ServiceBuilder, ServiceExt};
    /// # use std::{pin::Pin, task::{Context, Poll}};
    /// # struct Ticks(tokio::time::Interval);
    /// # impl http_body::Body for Ticks {
    /// #     type Data = bytes::Bytes;
    /// #     type Error = std::convert::Infallible;
    /// #     fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>)
    /// #         -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
    /// #         self.0.poll_tick(cx).map(|_| Some(Ok(http_body::Frame::data("tick".into()))))
    /// #     }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // A body that ticks once a second for ever, under a 2.5 s budget.
    /// let service = ServiceBuilder::new()
    ///     .layer(FenceLayer::new().budget(Duration::from_millis(2_500)))
    ///     .service(tower::service_fn(|_: http::Request<String>| async {
    ///         let ticks = Ticks(tokio::time::interval(Duration::from_secs(1)));
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(ticks))
    ///     }));
    ///
    /// let response = service.oneshot(http::Request::new(String::new())).await.unwrap();
    /// let mut body = std::pin::pin!(response.into_body()); // it holds a timer
    /// let mut ticks = 0;
    /// let err = loop {
    ///     match body.as_mut().frame().await {
    ///         Some(Ok(_)) => ticks += 1,
    ///         Some(Err(err)) => break err,
    ///         None => unreachable!("the budget ends it with an error"),
    ///     }
    /// };
    /// assert_eq!(ticks, 3); // at 0 s, 1 s and 2 s
    /// assert!(err.downcast_ref::<fencing::Cancelled>().unwrap().cancelled_by("budget"));
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Fenced {
            #[pin]
            body: B,
            // Both boxed, and only once the body has returned pending: a
            // body that is always ready (most are) carries neither.
            timer: Option<Pin<Box<Sleep>>>,
            draining: Option<Pin<Box<Draining>>>,
            watch: BodyWatch,
            // Polled once: the first poll delivers what the handler made,
            // whatever the time (completion wins).
            started: bool,
            ended: bool,
        },
        Empty,
    }
}

/// Watches a response body: dropped before the body ends, the client went
/// away.
struct BodyWatch {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for BodyWatch {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            self.shared.disconnected(Stage::ResponseBody);
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn new(body: B, shared: Arc<Shared>) -> Self {
        // A body that is complete already is never polled, and its drop is
        // no disconnect.
        let armed = !body.is_end_stream();
        Self {
            kind: Kind::Fenced {
                body,
                timer: None,
                draining: None,
                watch: BodyWatch { shared, armed },
                started: false,
                ended: false,
            },
        }
    }
}

const YEAR: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The instant a response body may not stream past: the request's
/// deadline, or the end of the drain's grace period once it began.
fn end_of(shared: &Shared) -> Option<Instant> {
    let deadline = shared.fencing().effective_deadline();
    let drained = shared.drain().and_then(Drain::grace_end);
    match (deadline, drained) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<B: Body> Body for ResponseBody<B>
where
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let KindProj::Fenced {
            mut body,
            timer,
            draining,
            watch,
            started,
            ended,
        } = self.project().kind.project()
        else {
            return Poll::Ready(None);
        };
        if *ended {
            return Poll::Ready(None);
        }
        let shared = &*watch.shared;
        // Checked before each later frame, so a body that is always ready
        // stops too; the end is looked for, and the clock read, only then,
        // and only when there is an end to reach. The first frame is the
        // handler's own work, done in its time (a handler may finish a
        // protected commit past its deadline): it is delivered first,
        // whatever the clock says.
        let passed = || end_of(shared).is_some_and(|end| end <= Instant::now());
        if !std::mem::replace(started, true) || !passed() {
            // Completion wins: a frame that is ready is delivered.
            let frame = shared.fencing().in_scope(|| body.as_mut().poll_frame(cx));
            match frame {
                Poll::Ready(Some(Ok(frame))) => {
                    if body.is_end_stream() {
                        // Complete: hyper may drop it without polling again,
                        // and a poll that does finds it ended.
                        *ended = true;
                        watch.armed = false;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(err))) => {
                    *ended = true;
                    watch.armed = false;
                    return Poll::Ready(Some(Err(err.into())));
                }
                Poll::Ready(None) => {
                    *ended = true;
                    watch.armed = false;
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            // Woken when the drain begins: its grace period may end first.
            if let Some(drain) = shared.drain().filter(|drain| !drain.is_draining()) {
                let wait = draining.get_or_insert_with(|| Box::pin(drain.draining()));
                if wait.as_mut().poll(cx).is_ready() {
                    *draining = None;
                }
            }
            let Some(end) = end_of(shared) else {
                return Poll::Pending;
            };
            loop {
                // A far end is reached in steps of at most a year: the
                // timer is set again when it fires short of it.
                let now = Instant::now();
                if end <= now {
                    break;
                }
                let target = now.checked_add(YEAR).map_or(end, |step| step.min(end));
                let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(target)));
                if sleep.deadline() != target {
                    sleep.as_mut().reset(target);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        // Cut short: the stream ends with the reasons that fired.
        *ended = true;
        watch.armed = false;
        match shared.fencing().check() {
            Err(cancelled) => {
                shared.report(&cancelled, Stage::ResponseBody, None, true);
                Poll::Ready(Some(match shared.protocol().cut(&cancelled) {
                    Some(trailers) => Ok(Frame::trailers(trailers)),
                    None => Err(cancelled.into()),
                }))
            }
            // Unreachable: the end is a deadline that passed or a drain that
            // began, both of which `check` sees.
            Ok(()) => Poll::Ready(Some(Err(Box::new(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            ))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Fenced { body, ended, .. } => *ended || body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Fenced {
                body, ended: false, ..
            } => body.size_hint(),
            Kind::Fenced { .. } | Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ResponseBody");
        match &self.kind {
            Kind::Fenced { ended, .. } => debug.field("ended", ended),
            Kind::Empty => debug.field("empty", &true),
        };
        debug.finish_non_exhaustive()
    }
}
