//! Server middleware that gives every gRPC call a context: the caller's
//! deadline, the server's shutdown, and the client going away, each a
//! reason the handler sees by its code, and a stopped call answered with
//! its `grpc-status`.
//!
//! [`GrpcFenceLayer`] wraps a tonic service: all of a
//! `Server::builder()`'s services (`.layer(..)`), or tonic [`Routes`]
//! served by axum or hyper. For every call it builds the call's
//! [`Fencing`](fencing::Fencing):
//!
//! | trigger | code | from |
//! |---|---|---|
//! | the caller's deadline | [`deadline`](crate::codes::DEADLINE) | the `grpc-timeout` header, anchored when the call is received, ended a [margin](GrpcFenceLayer::margin) early |
//! | the server's own budget | [`budget`](crate::codes::BUDGET) | [`GrpcFenceLayer::budget`]: a header can only shorten it, never extend it |
//! | the server's shutdown | [`shutdown`](crate::codes::SHUTDOWN) | [`GrpcFenceLayer::drain`], with the drain's grace period |
//! | the client going away | [`client_disconnected`](crate::codes::CLIENT_DISCONNECTED) | hyper dropping the call (a reset stream, a closed connection), or its response stream before its end |
//! | anything else | yours | [`GrpcFenceLayer::fencing`] |
//!
//! and runs the handler inside a fence of it: the handler (and everything
//! it awaits) reads it with [`fencing::current()`], with no tonic-specific
//! call, and the request's extensions hold a [`RequestContext`] too. A
//! call whose budget is spent on arrival (`grpc-timeout: 0n`), or that
//! arrives while the server drains, is answered at once, without calling
//! the handler.
//!
//! ```
//! use fencing::current;
//! use fencing_tonic::server::GrpcFenceLayer;
//! use std::time::Duration;
//! use tonic::{Request, Response, Status};
//! use tonic_health::pb::health_server::{Health, HealthServer};
//! use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
//!
//! struct Checker;
//!
//! #[tonic::async_trait]
//! impl Health for Checker {
//!     async fn check(&self, _: Request<HealthCheckRequest>)
//!         -> Result<Response<HealthCheckResponse>, Status>
//!     {
//!         // The caller's deadline, capped by the server's 30 s.
//!         let left = current().remaining();
//!         # let _ = left;
//!         Ok(Response::new(HealthCheckResponse { status: 1 }))
//!     }
//!     # type WatchStream = tokio_stream::Pending<Result<HealthCheckResponse, Status>>;
//!     # async fn watch(&self, _: Request<HealthCheckRequest>)
//!     #     -> Result<Response<Self::WatchStream>, Status> { unimplemented!() }
//! }
//!
//! # async fn run() -> Result<(), tonic::transport::Error> {
//! tonic::transport::Server::builder()
//!     .layer(GrpcFenceLayer::new().budget(Duration::from_secs(30)))
//!     .add_service(HealthServer::new(Checker))
//!     .serve("127.0.0.1:50051".parse().unwrap())
//!     .await
//! # }
//! ```
//!
//! # How a stopped call is answered
//!
//! When a trigger fires, the fence drops the handler, and the call is
//! answered *trailers-only* (one HEADERS frame: HTTP `200`,
//! `content-type: application/grpc`, `grpc-status`, `grpc-message`),
//! following the [status table](crate::status): `DEADLINE_EXCEEDED` for
//! time, `UNAVAILABLE` for shutdown, `CANCELLED` for anything else with the
//! reasons in the message; a client that went away is only recorded
//! ([`GrpcFenceLayer::on_cancel`]): there is nobody to answer.
//! [`GrpcFenceLayer::status`] replaces the table.
//!
//! A **streaming response** runs inside the call's context on every poll.
//! When its deadline passes (or a drain's grace period ends) while it
//! streams, it ends with trailers carrying the status, as a handler that
//! returned the error from its stream would: the client reads every
//! message sent before, then the status. Without this layer, tonic does not
//! bound response streams at all; with `fencing-tower`'s plain HTTP layer,
//! the stream would end with an error, which hyper turns into a bare
//! `RST_STREAM` the client sees as `INTERNAL` or an unexpected end.
//!
//! # A malformed `grpc-timeout`
//!
//! A `grpc-timeout` that is not of gRPC's form (`-1S`, `1.5S`, `1s`, nine
//! digits) is answered `INTERNAL` ("malformed `grpc-timeout` header: …")
//! without calling the handler, as grpc-go answers it. A caller that sends
//! a deadline means to be held to one; serving the call without it would
//! hide the caller's bug behind the server's own budget, or no limit at
//! all, which is what tonic does (it ignores such a header, and so does
//! its own timer). [`OnMalformed::Ignore`] serves the call as if the header
//! were absent.
//!
//! # The race with tonic's own timeout
//!
//! tonic's `Server` wraps every service, outside the layers given to
//! `Server::builder().layer(..)`, in a timer of its own that reads the same
//! `grpc-timeout` header: at the caller's deadline it drops the service's
//! future, this layer's included, and answers `CANCELLED`
//! ("Timeout expired"). For the caller to see `DEADLINE_EXCEEDED`, this
//! layer must answer first. So the call's deadline is the header's minus a
//! [margin](GrpcFenceLayer::margin), [`DEFAULT_MARGIN`] by default, and a
//! grace period given to the deadline is taken out of the budget too: the
//! handler is told of the deadline at `header − margin − grace` and dropped
//! at `header − margin`, a margin before tonic's timer, which never fires.
//!
//! The margin covers the time between tonic's timer and this layer's (the
//! layers in between, which is why this one should be the first given to
//! `Server::builder().layer(..)`), tokio's 1 ms timer resolution, and, with
//! [`Disposition::Detach`], the handler's own task being scheduled before
//! tonic's timer is polled. Served by axum or hyper, where tonic's timer is
//! absent, set it to zero if you like. Every hop ends its deadline a margin
//! early, so in a chain of `n` hops, the last one has `n` margins less
//! than the first: keep it small against your deadlines.
//!
//! The handler sees the shortened deadline: `current().remaining()` and
//! [`RequestContext::inbound_budget`] are the header's minus the margin.
//!
//! # Concurrency limits go inside
//!
//! As with `fencing-tower`: a concurrency limit outside this layer is
//! bypassed by clients that disconnect and retry while their detached
//! handlers still run. Put limits after this layer in
//! `Server::builder().layer(..)`; tonic's `Server::concurrency_limit_per_connection`
//! sits outside it.
//!
//! [`Routes`]: https://docs.rs/tonic/0.14/tonic/service/struct.Routes.html

mod layer;

pub use fencing_tower::server::{Disposition, Fence, OnMalformed, RequestContext};
pub use layer::GrpcFenceLayer;

use fencing::Cancelled;
use fencing_tower::codec::{BudgetCodec, GrpcTimeout, MalformedBudget};
use fencing_tower::server::Protocol;
use fencing_tower::status::Stage;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Code, Status};

/// How much earlier than the caller's `grpc-timeout` a call's deadline is,
/// by default: 5 ms. See
/// [the race with tonic's own timeout](self#the-race-with-tonics-own-timeout).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(fencing_tonic::server::DEFAULT_MARGIN, Duration::from_millis(5));
/// ```
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(5);

pub(crate) type StatusFn = dyn Fn(&Cancelled) -> Status + Send + Sync;

/// gRPC as `fencing-tower`'s server layer speaks it: a stopped call is
/// answered trailers-only with its `grpc-status`, a malformed
/// `grpc-timeout` with `INTERNAL`, and a cut response stream ends with
/// trailers carrying the status.
///
/// [`GrpcFenceLayer`] uses it; give it to a `fencing-tower`
/// [`FenceLayer`](fencing_tower::server::FenceLayer) of your own with
/// [`protocol`](fencing_tower::server::FenceLayer::protocol).
///
/// # Examples
///
/// ```
/// use fencing_tonic::server::GrpcProtocol;
/// use fencing_tower::server::FenceLayer;
///
/// let layer = FenceLayer::new().protocol(GrpcProtocol::new());
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct GrpcProtocol {
    status: Arc<StatusFn>,
}

impl GrpcProtocol {
    /// gRPC with the default [status table](crate::status).
    ///
    /// # Examples
    ///
    /// See [`GrpcProtocol`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            status: Arc::new(crate::status::status_for),
        }
    }

    /// gRPC with `status(cancelled)` as the status table.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::server::GrpcProtocol;
    ///
    /// let protocol = GrpcProtocol::with_status(|_| tonic::Status::unavailable("try elsewhere"));
    /// # let _ = protocol;
    /// ```
    #[must_use]
    pub fn with_status<F>(status: F) -> Self
    where
        F: Fn(&Cancelled) -> Status + Send + Sync + 'static,
    {
        Self {
            status: Arc::new(status),
        }
    }
}

impl Default for GrpcProtocol {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for GrpcProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcProtocol").finish_non_exhaustive()
    }
}

/// A trailers-only answer: HTTP 200, `content-type: application/grpc`,
/// `grpc-status` and `grpc-message`, and the status in the extensions.
fn trailers_only(status: Status) -> Response<()> {
    status.into_http()
}

impl Protocol for GrpcProtocol {
    fn stopped(&self, cancelled: &Cancelled, _: Stage) -> Response<()> {
        trailers_only((self.status)(cancelled))
    }

    fn malformed(&self, malformed: &MalformedBudget) -> Response<()> {
        trailers_only(Status::internal(malformed.to_string()))
    }

    fn cut(&self, cancelled: &Cancelled) -> Option<HeaderMap> {
        let mut trailers = HeaderMap::with_capacity(2);
        match (self.status)(cancelled).add_header(&mut trailers) {
            Ok(()) => Some(trailers),
            // A status whose metadata is no valid header: still end with
            // its code.
            Err(_) => {
                trailers.clear();
                let code = (self.status)(cancelled).code();
                trailers.insert(GRPC_STATUS, code_value(code));
                Some(trailers)
            }
        }
    }
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

fn code_value(code: Code) -> HeaderValue {
    HeaderValue::from(code as i32)
}

/// `grpc-timeout`, read as gRPC specifies it, less `shave`: the margin and
/// the deadline's grace period.
#[derive(Debug)]
pub(crate) struct Shaved {
    pub(crate) shave: Duration,
}

impl BudgetCodec for Shaved {
    fn header_name(&self) -> &HeaderName {
        GrpcTimeout.header_name()
    }

    fn applies_to(&self, headers: &HeaderMap) -> bool {
        GrpcTimeout.applies_to(headers)
    }

    fn decode(&self, value: &HeaderValue) -> Result<Duration, MalformedBudget> {
        Ok(GrpcTimeout.decode(value)?.saturating_sub(self.shave))
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        GrpcTimeout.encode(budget.saturating_add(self.shave))
    }
}

/// A call a trigger stopped, as [`GrpcFenceLayer::on_cancel`] sees it.
///
/// # Examples
///
/// See [`GrpcFenceLayer::on_cancel`].
#[derive(Debug)]
pub struct CancelledCall<'a> {
    cancelled: &'a Cancelled,
    stage: Stage,
    code: Option<Code>,
}

impl CancelledCall<'_> {
    /// Every reason that fired, in firing order.
    ///
    /// # Examples
    ///
    /// See [`GrpcFenceLayer::on_cancel`].
    #[must_use]
    pub fn cancelled(&self) -> &Cancelled {
        self.cancelled
    }

    /// Where the call stood: [`Stage::Handler`], or
    /// [`Stage::ResponseBody`] for a response stream cut short.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::server::GrpcFenceLayer;
    /// use fencing_tower::status::Stage;
    ///
    /// let layer = GrpcFenceLayer::new().on_cancel(|call| {
    ///     if call.stage() == Stage::ResponseBody {
    ///         eprintln!("stream cut: {}", call.cancelled());
    ///     }
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The code the call was answered with, following the status table (in
    /// the trailers of a response stream cut short): `None` if nothing
    /// could be sent, because the client went away.
    ///
    /// # Examples
    ///
    /// See [`GrpcFenceLayer::on_cancel`].
    #[must_use]
    pub fn code(&self) -> Option<Code> {
        self.code
    }
}
