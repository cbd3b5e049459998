//! Server middleware that gives every request a context: its budget, the
//! server's shutdown, and the client going away, each a reason the handler
//! sees by its code.
//!
//! [`Fence`] wraps an HTTP service (an axum `Router`, a hyper service, any
//! `Service<http::Request<B>>`). For every request it builds the request's
//! [`Fencing`]:
//!
//! | trigger | code | from |
//! |---|---|---|
//! | the server's own budget | [`budget`](crate::codes::BUDGET) | [`FenceLayer::budget`], anchored when the request is received |
//! | the budget the request carries | [`deadline`](crate::codes::DEADLINE) | the [budget headers](crate::codec) (`grpc-timeout` on gRPC requests and `connect-timeout-ms` by default), anchored at receipt; it can only shorten the server's own budget, never extend it |
//! | the server's shutdown | [`shutdown`](crate::codes::SHUTDOWN) | [`FenceLayer::drain`], with the drain's grace period |
//! | the client going away | [`client_disconnected`](crate::codes::CLIENT_DISCONNECTED) | hyper dropping the request, or its response body before its end |
//! | anything else | yours | [`FenceLayer::fencing`] |
//!
//! and runs the inner service inside a fence of it: the handler (and
//! `call` itself, and everything the handler awaits) reads it with
//! [`fencing::current()`], derives tighter timeouts from it, spawns helpers
//! that keep it with [`fencing::spawn`], and sends what is left of the
//! budget on with [`PropagateBudget`](crate::client::PropagateBudget). The
//! request's extensions hold a [`RequestContext`] too. The streamed
//! response body runs inside the same context on every poll, and ends with
//! an error when the deadline passes.
//!
//! When a trigger fires, the fence drops the handler and the request is
//! answered with an empty response whose status follows the
//! [status table](crate::status) (`504` for time, `408` while reading the
//! request body, `503` for shutdown); the response's extensions hold the
//! [`Cancelled`]. A request whose budget is spent on arrival (`0` in its
//! header), or that arrives while the server drains, is answered at once,
//! without calling the inner service.
//!
//! ```
//! use fencing::current;
//! use fencing_tower::server::FenceLayer;
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! async fn handler(_: http::Request<String>)
//!     -> Result<http::Response<String>, std::convert::Infallible>
//! {
//!     // The tighter of the server's 10 s and the 3 s the client sent.
//!     let left = current().remaining().unwrap();
//!     tokio::time::sleep(Duration::from_secs(5)).await; // too slow
//!     Ok(http::Response::new(format!("{left:?} were enough")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(FenceLayer::new().budget(Duration::from_secs(10)))
//!     .service(service_fn(handler));
//!
//! let request = http::Request::builder()
//!     .header("connect-timeout-ms", "3000")
//!     .body(String::new())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), http::StatusCode::GATEWAY_TIMEOUT);
//! let cancelled = response.extensions().get::<fencing::Cancelled>().unwrap();
//! assert!(cancelled.cancelled_by("deadline"));
//! # }
//! ```
//!
//! # When the client goes away
//!
//! hyper drops the future of a request whose connection closed (HTTP/1) or
//! whose stream was reset (HTTP/2). What happens next is the layer's
//! [`Disposition`]:
//!
//! - [`CancelOnDisconnect`](Disposition::CancelOnDisconnect), the default,
//!   is hyper's own behaviour and spawns nothing: the handler is dropped
//!   with the request, where it stands. The layer records the drop as the
//!   reason `client_disconnected` ([`FenceLayer::on_cancel`], status `499`
//!   for logs and metrics).
//! - [`Detach { grace }`](Disposition::Detach) keeps the handler alive
//!   when hyper drops the request. The handler runs where hyper polls it,
//!   as usual, until then (boxed, so that it can move); when its client
//!   goes away it moves to a task of its own, spawned then and only for
//!   such requests, and `client_disconnected` fires in its context: the
//!   handler sees it cooperatively (`current().is_cancelled()`,
//!   `current().cancelled().await`, an inner fence's `cancelled_by`), a
//!   [`protect`](fencing::protect) section completes its commit, and the
//!   task is dropped only once `grace` has passed. A panic in the handler
//!   passes through the request's future while hyper still holds it, and is
//!   logged (`tracing`, `ERROR`) once the handler has moved.
//!
//! What hyper can and cannot see:
//!
//! - **HTTP/1 sees a closed connection only while it reads.** While a
//!   handler leaves the request body unread, hyper does not read the
//!   socket, and a client that hangs up is not noticed until the handler
//!   reads the body or answers. Read (or drop) the body before long work.
//! - **A half-closed client counts as gone**: hyper's default
//!   (`half_close(false)`) treats the end of the client's writes as the end
//!   of the connection. A client that shuts down its writing side and waits
//!   for the answer must be served with `half_close(true)`.
//! - **Pipelined HTTP/1 requests** are served one at a time; only the one
//!   being served is watched.
//! - **A silent peer** (a cable pulled, a NAT entry gone) closes nothing:
//!   only TCP keep-alive or HTTP/2 pings find it. Configure them on the
//!   server.
//!
//! # Concurrency limits go inside
//!
//! With `Detach`, a request's handler may outlive the request's future. A
//! concurrency limit *outside* this layer counts futures, not handlers:
//! a client that disconnects and retries frees its slot at once while its
//! detached handler still runs, and so bypasses the limit. Put limits
//! inside the layer, where each permit is held by the handler itself:
//! `ServiceBuilder::new().layer(FenceLayer::new()..).concurrency_limit(n)`.
//!
//! # Differences from `tower_http::timeout`
//!
//! tower-http's `TimeoutLayer` has one duration for every request, answers
//! `408` with nothing to tell why, and cannot let the handler know: its
//! timer is raced outside the handler. Here each request has its own
//! budget (the tighter of the server's and the client's), the handler sees
//! it and every other trigger, inner calls derive from it, and the response
//! says which reason fired.
//!
//! [`Cancelled`]: fencing::Cancelled

mod layer;

pub mod body;
pub mod future;

pub use layer::FenceLayer;

use crate::codec::{decode_budget, BudgetCodec, ConnectTimeout, GrpcTimeout, MalformedBudget};
use crate::codes;
use crate::drain::Drain;
use crate::status::{status_for, Stage};
use body::{Plain, RequestBody, RequestBodyKind, ResponseBody};
use fencing::{Cancelled, Fencing, Token};
use future::{detach, ResponseFuture};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// The service of [`FenceLayer`]: fences every request of `S`. See the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use fencing_tower::server::{Fence, FenceLayer};
/// use tower::service_fn;
///
/// let inner = service_fn(|_: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// });
/// let service: Fence<_> = tower_layer::Layer::layer(&FenceLayer::new(), inner);
/// let inner = service.get_ref();
/// ```
pub struct Fence<S, K = Plain> {
    inner: S,
    config: Arc<Config>,
    kind: PhantomData<fn() -> K>,
}

impl<S: Clone, K> Clone for Fence<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            kind: PhantomData,
        }
    }
}

impl<S> Fence<S> {
    /// Wraps `inner` with the defaults of [`FenceLayer::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let service = fencing_tower::server::Fence::new(tower::service_fn(
    ///     |_: http::Request<String>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    ///     },
    /// ));
    /// # let _ = service;
    /// ```
    #[must_use]
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&FenceLayer::new(), inner)
    }
}

impl<S, K> Fence<S, K> {
    /// The inner service.
    ///
    /// # Examples
    ///
    /// See [`Fence`].
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut service = fencing_tower::server::Fence::new(7);
    /// *service.get_mut() += 1;
    /// assert_eq!(service.into_inner(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// # Examples
    ///
    /// See [`Fence::get_mut`].
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, K> fmt::Debug for Fence<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fence")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// What happens to a handler whose client goes away; see the
/// [module docs](self#when-the-client-goes-away).
///
/// # Examples
///
/// ```
/// use fencing_tower::server::Disposition;
/// use std::time::Duration;
///
/// assert_eq!(Disposition::default(), Disposition::CancelOnDisconnect);
/// let detach = Disposition::Detach { grace: Duration::from_secs(2) };
/// # let _ = detach;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Disposition {
    /// The handler is dropped with the request, as hyper does; the drop is
    /// recorded as `client_disconnected`. Nothing is spawned.
    #[default]
    CancelOnDisconnect,
    /// The handler outlives its client: when the client goes away, the
    /// handler moves to a task of its own, `client_disconnected` fires in
    /// its context, and the task is dropped only once `grace` has passed
    /// (`Duration::ZERO`: at once; a duration that overflows the clock:
    /// never, it is only told). Until then it runs where hyper polls it.
    Detach {
        /// How long a handler may go on once its client has gone.
        grace: Duration,
    },
}

/// What to do with a request whose budget header is malformed (`-1`,
/// `12x`, more digits than the header allows).
///
/// The default is [`Reject`](Self::Reject): a client that sends a budget
/// means to be held to one, and a budget silently dropped would hide its
/// bug behind the server's own (longer) budget; grpc-go answers such a
/// request with an error too. A header never panics the server, whatever
/// it holds.
///
/// # Examples
///
/// ```
/// use fencing_tower::server::OnMalformed;
///
/// assert_eq!(OnMalformed::default(), OnMalformed::Reject);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnMalformed {
    /// Answer `400 Bad Request` without calling the inner service.
    #[default]
    Reject,
    /// Serve the request as if the header were absent (a `DEBUG` event is
    /// emitted).
    Ignore,
}

/// The context of a request, in its extensions: the request's [`Fencing`]
/// and the budget it carried.
///
/// In a handler, [`fencing::current()`] is the same `Fencing`; the
/// extension reaches it where the context is not bound (a task spawned with
/// `tokio::spawn`, a layer below that calls from elsewhere). With the `axum`
/// feature it is an extractor.
///
/// # Examples
///
/// ```
/// use fencing_tower::server::{FenceLayer, RequestContext};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(FenceLayer::new())
///     .service(service_fn(|request: http::Request<String>| async move {
///         let context = request.extensions().get::<RequestContext>().unwrap();
///         let seen = context.inbound_budget();
///         Ok::<_, std::convert::Infallible>(http::Response::new(format!("{seen:?}")))
///     }));
///
/// let request = http::Request::builder()
///     .header("connect-timeout-ms", "250")
///     .body(String::new())
///     .unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// # use http_body_util::BodyExt;
/// let body = response.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(body, "Some(250ms)");
/// # }
/// ```
#[derive(Clone)]
pub struct RequestContext {
    // The request's own state: the extension costs one pointer, not a
    // copy of the `Fencing`.
    shared: Arc<Shared>,
}

// The extension only reads the request's `Fencing` and budget; behind it
// are atomics, a token, and the layer's hooks and protocol, which it never
// calls. As with the client's `Codec`, the missing `UnwindSafe` bound on
// those trait objects should not make the extension `!UnwindSafe`: it was
// not while it held a copy of the `Fencing`.
impl UnwindSafe for RequestContext {}
impl RefUnwindSafe for RequestContext {}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("fencing", &self.shared.fencing)
            .field("inbound", &self.shared.inbound)
            .field("received", &self.shared.received)
            .finish()
    }
}

impl RequestContext {
    /// The request's `Fencing`: every trigger of the request.
    ///
    /// # Examples
    ///
    /// See [`RequestContext`].
    #[must_use]
    pub fn fencing(&self) -> &Fencing {
        &self.shared.fencing
    }

    /// The budget the request's headers carried, if any (before the server's
    /// own budget capped it).
    ///
    /// # Examples
    ///
    /// See [`RequestContext`].
    #[must_use]
    pub fn inbound_budget(&self) -> Option<Duration> {
        self.shared.inbound
    }

    /// When the layer received the request, on tokio's clock: the instant
    /// the budgets are anchored at.
    ///
    /// # Examples
    ///
    /// See [`RequestContext`].
    #[must_use]
    pub fn received(&self) -> Instant {
        self.shared.received
    }
}

/// A request that a trigger stopped, or whose client went away, as
/// [`FenceLayer::on_cancel`] sees it.
///
/// # Examples
///
/// See [`FenceLayer::on_cancel`].
#[derive(Debug)]
pub struct CancelledRequest<'a> {
    cancelled: &'a Cancelled,
    stage: Stage,
    status: Option<StatusCode>,
    interrupted: bool,
}

impl CancelledRequest<'_> {
    /// Every reason that fired, in firing order.
    ///
    /// # Examples
    ///
    /// See [`FenceLayer::on_cancel`].
    #[must_use]
    pub fn cancelled(&self) -> &Cancelled {
        self.cancelled
    }

    /// Where the request stood.
    ///
    /// # Examples
    ///
    /// See [`FenceLayer::on_cancel`].
    #[must_use]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The status the request was answered with: `None` if nothing could
    /// be sent (the client went away, or the response head was sent
    /// already).
    ///
    /// # Examples
    ///
    /// See [`FenceLayer::on_cancel`].
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// Returns `true` if the request was cut: its handler was dropped (by
    /// its fence, or by hyper with the request), or its response body was
    /// cut short. `false` for a detached handler that ran to its end after
    /// its client went away.
    ///
    /// # Examples
    ///
    /// See [`FenceLayer::on_cancel`].
    #[must_use]
    pub fn is_interrupted(&self) -> bool {
        self.interrupted
    }
}

type StatusFn = dyn Fn(&Cancelled, Stage) -> StatusCode + Send + Sync;

/// How the layer answers in the protocol spoken over HTTP: plain HTTP by
/// status codes ([`Http`], the default), or another one, such as gRPC's
/// status in headers and trailers (the `fencing-tonic` crate's).
///
/// Implement it to speak another protocol; the layer calls it for every
/// request it answers itself.
///
/// # Examples
///
/// ```
/// use fencing::Cancelled;
/// use fencing_tower::codec::MalformedBudget;
/// use fencing_tower::server::{FenceLayer, Protocol};
/// use fencing_tower::status::Stage;
/// use http::{HeaderMap, Response};
///
/// /// Says why in a header, and ends cut streams with it as a trailer.
/// #[derive(Debug)]
/// struct Why;
///
/// impl Protocol for Why {
///     fn stopped(&self, cancelled: &Cancelled, _: Stage) -> Response<()> {
///         let code = cancelled.reason().code().map_or("", |c| c.as_str()).to_owned();
///         Response::builder().status(503).header("x-why", code).body(()).unwrap()
///     }
///     fn malformed(&self, _: &MalformedBudget) -> Response<()> {
///         Response::builder().status(400).body(()).unwrap()
///     }
///     fn cut(&self, cancelled: &Cancelled) -> Option<HeaderMap> {
///         let mut trailers = HeaderMap::new();
///         trailers.insert("x-why", "cut".parse().unwrap());
///         Some(trailers)
///     }
/// }
///
/// let layer = FenceLayer::new().protocol(Why);
/// # let _ = layer;
/// ```
pub trait Protocol: fmt::Debug + Send + Sync + 'static {
    /// The response (its head: the body is empty) to a request a trigger
    /// stopped before its handler answered, or refused on arrival.
    fn stopped(&self, cancelled: &Cancelled, stage: Stage) -> Response<()>;

    /// The response to a request whose budget header is malformed, when
    /// the layer [rejects](OnMalformed::Reject) it.
    fn malformed(&self, malformed: &MalformedBudget) -> Response<()>;

    /// How a streaming response body that a trigger cut short ends: with
    /// these trailers, cleanly, or, with `None`, with an error (then hyper
    /// aborts the response, and the client sees it cut).
    fn cut(&self, cancelled: &Cancelled) -> Option<HeaderMap>;
}

/// Plain HTTP: a stopped request is answered with an empty response whose
/// status follows the [status table](crate::status) (or a function of your
/// own), a malformed budget with `400 Bad Request`, and a cut stream ends
/// with an error.
///
/// # Examples
///
/// ```
/// use fencing_tower::server::{FenceLayer, Http};
/// use http::StatusCode;
///
/// let layer = FenceLayer::new().protocol(Http::with_status(|_, _| StatusCode::SERVICE_UNAVAILABLE));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct Http {
    status: Arc<StatusFn>,
}

impl Http {
    /// HTTP with the default [status table](crate::status).
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = fencing_tower::server::FenceLayer::new().protocol(fencing_tower::server::Http::new());
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            status: Arc::new(status_for),
        }
    }

    /// HTTP with `status(cancelled, stage)` as the status table.
    ///
    /// # Examples
    ///
    /// See [`Http`].
    #[must_use]
    pub fn with_status<F>(status: F) -> Self
    where
        F: Fn(&Cancelled, Stage) -> StatusCode + Send + Sync + 'static,
    {
        Self {
            status: Arc::new(status),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

/// An empty response head with `status`.
fn head(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

impl Protocol for Http {
    fn stopped(&self, cancelled: &Cancelled, stage: Stage) -> Response<()> {
        head((self.status)(cancelled, stage))
    }

    fn malformed(&self, _: &MalformedBudget) -> Response<()> {
        head(StatusCode::BAD_REQUEST)
    }

    fn cut(&self, _: &Cancelled) -> Option<HeaderMap> {
        None
    }
}

type HookFn = dyn Fn(&CancelledRequest<'_>) + Send + Sync;

#[derive(Clone)]
pub(crate) struct Config {
    base: Fencing,
    /// `base` with what every request declares alike (see `prepare`).
    prepared: Fencing,
    budget: Option<Duration>,
    codecs: Vec<Arc<dyn BudgetCodec>>,
    on_malformed: OnMalformed,
    disposition: Disposition,
    drain: Option<Drain>,
    protocol: Arc<dyn Protocol>,
    on_cancel: Option<Arc<HookFn>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base: Fencing::new(),
            prepared: Fencing::new(),
            budget: None,
            codecs: vec![Arc::new(GrpcTimeout), Arc::new(ConnectTimeout)],
            on_malformed: OnMalformed::Reject,
            disposition: Disposition::CancelOnDisconnect,
            drain: None,
            protocol: Arc::new(Http::new()),
            on_cancel: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base", &self.base)
            .field("budget", &self.budget)
            .field("codecs", &self.codecs)
            .field("on_malformed", &self.on_malformed)
            .field("disposition", &self.disposition)
            .field("drain", &self.drain)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Declares, once for every request, what is the same for all: the
    /// base, the drain's trigger and the graces. Called after every change.
    pub(crate) fn prepare(&mut self) {
        let mut fencing = self.base.clone();
        if let Some(drain) = &self.drain {
            fencing = drain.declare(fencing);
        }
        if let Disposition::Detach { grace } = self.disposition {
            fencing = fencing.grace_for(codes::CLIENT_DISCONNECTED, grace);
        }
        self.prepared = fencing;
    }

    /// The request's `Fencing` but its disconnect token: the prepared
    /// triggers, then the budgets, anchored now.
    fn declared_for(&self, inbound: Option<Duration>) -> Fencing {
        let mut fencing = self.prepared.clone();
        if let Some(budget) = self.budget {
            fencing = fencing.timeout(budget).code(codes::BUDGET);
        }
        if let Some(inbound) = inbound {
            fencing = fencing.timeout(inbound).code(codes::DEADLINE);
        }
        fencing
    }
}

/// One request, shared by its future, its detached task and its bodies.
pub(crate) struct Shared {
    config: Arc<Config>,
    fencing: Fencing,
    disconnect: Token,
    /// The budget the request's headers carried (see [`RequestContext`]).
    inbound: Option<Duration>,
    /// When the layer received the request.
    received: Instant,
    /// The handler polled the request body and has not reached its end.
    /// Stays set when the body is dropped half-read, so the stage is still
    /// known after the fence dropped the handler.
    reading: AtomicBool,
    /// The request arrived while the drain had not begun: the drain counts
    /// it when it ends.
    counted: bool,
}

impl Shared {
    pub(crate) fn fencing(&self) -> &Fencing {
        &self.fencing
    }

    pub(crate) fn drain(&self) -> Option<&Drain> {
        self.config.drain.as_ref()
    }

    pub(crate) fn stage(&self) -> Stage {
        if self.reading.load(Ordering::Relaxed) {
            Stage::RequestBody
        } else {
            Stage::Handler
        }
    }

    pub(crate) fn set_reading(&self, reading: bool) {
        self.reading.store(reading, Ordering::Relaxed);
    }

    /// The answer to a request a trigger stopped at `stage`.
    pub(crate) fn stopped(&self, cancelled: &Cancelled, stage: Stage) -> Response<()> {
        self.config.protocol.stopped(cancelled, stage)
    }

    pub(crate) fn protocol(&self) -> &dyn Protocol {
        &*self.config.protocol
    }

    /// Tells the hook, and the `tracing` subscriber, that a trigger stopped
    /// the request (`interrupted`: its handler or its response was cut), or
    /// that its client went away while its handler ran to its end.
    pub(crate) fn report(
        &self,
        cancelled: &Cancelled,
        stage: Stage,
        status: Option<StatusCode>,
        interrupted: bool,
    ) {
        tracing::debug!(
            target: "fencing_tower::server",
            reason = %cancelled,
            ?stage,
            status = status.map(|s| s.as_u16()),
            interrupted,
            "request cancelled"
        );
        if let Some(hook) = &self.config.on_cancel {
            hook(&CancelledRequest {
                cancelled,
                stage,
                status,
                interrupted,
            });
        }
    }

    /// Fires `client_disconnected` in the request's context. Returns
    /// `false` if it had fired already.
    pub(crate) fn disconnect(&self) -> bool {
        self.disconnect.cancel_with("client disconnected")
    }

    /// The client went away at `stage`, after the handler ended (or with
    /// it): fires `client_disconnected` and reports it, once.
    pub(crate) fn disconnected(&self, stage: Stage) {
        if self.disconnect() {
            if let Err(cancelled) = self.fencing.check() {
                self.report(&cancelled, stage, None, true);
            }
        }
    }

    pub(crate) fn is_disconnected(&self) -> bool {
        self.disconnect.is_cancelled()
    }

    /// Counts a handler that ended, ran to its end or was stopped
    /// (`dropped`), in the drain under way.
    fn count(&self, dropped: bool) {
        if let Some(drain) = &self.config.drain {
            if self.counted && drain.is_draining() {
                drain.ended(dropped);
            }
        }
    }

    /// hyper dropped the handler with its request: the client went away.
    pub(crate) fn dropped_with_request(&self) {
        self.disconnected(self.stage());
        self.count(true);
    }

    /// The handler panicked: counted as stopped before its end.
    pub(crate) fn panicked(&self) {
        self.count(true);
    }

    /// A trigger stopped the handler (or it never started): reports and
    /// counts it, and gives the answer to send.
    pub(crate) fn stopped_here(&self, cancelled: &Cancelled) -> Response<()> {
        let stage = self.stage();
        let answer = self.stopped(cancelled, stage);
        let sent = (!self.is_disconnected()).then(|| answer.status());
        self.report(cancelled, stage, sent, true);
        self.count(true);
        answer
    }

    /// The handler ran to its end: counts it, and reports it if its client
    /// went away meanwhile.
    pub(crate) fn finished(&self) {
        if self.is_disconnected() {
            if let Err(cancelled) = self.fencing.check() {
                self.report(&cancelled, self.stage(), None, false);
            }
        }
        self.count(false);
    }
}

/// `head` with an empty body, holding `cancelled` in its extensions.
pub(crate) fn answer<B>(
    head: Response<()>,
    cancelled: Option<Cancelled>,
) -> Response<ResponseBody<B>> {
    let (parts, ()) = head.into_parts();
    let mut response = Response::from_parts(parts, ResponseBody::empty());
    if let Some(cancelled) = cancelled {
        response.extensions_mut().insert(cancelled);
    }
    response
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for Fence<S, K>
where
    K: RequestBodyKind<ReqBody>,
    S: Service<Request<K::Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Body + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let received = Instant::now();
        let codecs = config.codecs.iter().map(|codec| &**codec);
        let inbound = match decode_budget(codecs, request.headers()) {
            Ok(inbound) => inbound,
            Err(malformed) => {
                tracing::debug!(target: "fencing_tower::server", %malformed, ?config.on_malformed);
                match config.on_malformed {
                    OnMalformed::Reject => {
                        let head = config.protocol.malformed(&malformed);
                        return ResponseFuture::answered(head, None);
                    }
                    OnMalformed::Ignore => None,
                }
            }
        };
        let counted = !config.drain.as_ref().is_some_and(Drain::is_draining);
        let declared = config.declared_for(inbound);
        // Spent on arrival (a `0` budget, a drain under way): the inner
        // service is not called at all. Asked before the request's own
        // disconnect token is added, since it cannot have fired yet, and
        // with `is_cancelled`, which gathers no reasons: a trigger that
        // fired stays fired, so `check` then finds it too.
        let spent = declared.is_cancelled();
        let disconnect = Token::new();
        let fencing = declared.token(&disconnect).code(codes::CLIENT_DISCONNECTED);
        let shared = Arc::new(Shared {
            config: config.clone(),
            fencing: fencing.clone(),
            disconnect,
            inbound,
            received,
            reading: AtomicBool::new(false),
            counted,
        });
        if spent {
            if let Err(cancelled) = fencing.check() {
                let head = shared.stopped_here(&cancelled);
                return ResponseFuture::answered(head, Some(cancelled));
            }
        }
        let tracked = config.drain.as_ref().map(Drain::track);
        let mut request = K::wrap(request, |body| RequestBody::new(body, shared.clone()));
        request.extensions_mut().insert(RequestContext {
            shared: shared.clone(),
        });
        let future = fencing.in_scope(|| self.inner.call(request));
        match config.disposition {
            Disposition::CancelOnDisconnect => {
                ResponseFuture::inline(fencing, future, shared, tracked)
            }
            Disposition::Detach { .. } => {
                ResponseFuture::attached(fencing, future, detach::<S::Future>, shared, tracked)
            }
        }
    }
}
