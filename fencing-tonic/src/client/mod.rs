//! Client middleware that sends the caller's deadline with every gRPC
//! call, holds the call and its response stream to it, and reports expiry
//! as `DEADLINE_EXCEEDED`.
//!
//! [`PropagateDeadline`] wraps the transport of any generated client (a
//! tonic `Channel`, any `Service<http::Request<tonic::body::Body>>`). On
//! every call it reads the caller's context, [`fencing::current()`], and:
//!
//! 1. **refuses to send a spent budget**: if a trigger of the context has
//!    fired already, or its deadline has passed, nothing goes on the wire,
//!    and the call fails at once with `DEADLINE_EXCEEDED` (or the status of
//!    the trigger that fired, from the [status table](crate::status));
//! 2. **stamps** `grpc-timeout` with the tighter of the request's own
//!    timeout (`tonic::Request::set_timeout`) and what is left of the
//!    context's budget, rounded **up** as grpc-go does (tonic's own
//!    encoding truncates, which lets the next hop believe it has more time
//!    than this one waits for), in the finest unit whose value fits 8
//!    digits, saturating, never panicking;
//! 3. **holds the call to it**: the call runs inside a fence of the
//!    context (with the request's own timeout, code
//!    [`deadline`](crate::codes::DEADLINE), added), and so does every poll
//!    of the response stream; when a trigger fires, the call fails, or the
//!    stream ends, with the [status](crate::status) of what fired:
//!    `DEADLINE_EXCEEDED` for time, whatever the transport was doing;
//! 4. **reports expiry as expiry**: a `CANCELLED` that tonic reports once
//!    the call's deadline has passed (its `Channel` runs a timer of its own
//!    on the same `grpc-timeout` and reports `CANCELLED` "Timeout
//!    expired"; a tonic server without [`GrpcFenceLayer`](crate::server::GrpcFenceLayer)
//!    answers so too), as an error, a trailers-only answer or in trailers,
//!    becomes `DEADLINE_EXCEEDED`.
//!
//! The errors are [`tonic::Status`]es, boxed, so a generated client's
//! methods return them as they are (`Status::from_error` finds a boxed
//! `Status`), with the `fencing::Cancelled` as their source.
//!
//! ```
//! use fencing::Fencing;
//! use fencing_tonic::client::PropagateDeadlineLayer;
//! use std::time::Duration;
//! use tonic::Code;
//! use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .layer(PropagateDeadlineLayer::new())
//!     .service(channel);
//! let mut health = HealthClient::new(channel);
//!
//! // In a handler whose budget is spent, nothing is sent.
//! let spent = Fencing::new().timeout(Duration::ZERO).code("deadline");
//! let status = spent
//!     .bind(health.check(HealthCheckRequest::default()))
//!     .await
//!     .unwrap_err();
//! assert_eq!(status.code(), Code::DeadlineExceeded);
//! # }
//! ```
//!
//! # Where it goes
//!
//! Outside the `Channel`, as the example shows: `call` reads the context of
//! the task it runs in, and a `Channel` hands the call to a worker task of
//! its own. For the same reason it goes outside `tower::buffer::Buffer` and
//! anything else that calls from another task. The generated client's
//! method must be awaited inside the caller's context: in a handler fenced
//! by [`GrpcFenceLayer`](crate::server::GrpcFenceLayer), it is; in a task
//! spawned with [`fencing::spawn`], too; in one spawned with
//! `tokio::spawn`, not.
//!
//! # Opting out
//!
//! - **One method**: [`PropagateDeadlineLayer::skip`] names the methods
//!   (by the `tonic::GrpcMethod` a generated client puts in the request's
//!   extensions) whose calls go out untouched: no header, no fence, tonic's
//!   own errors. For a long-lived stream, such as a health `Watch`, that
//!   must outlive the request that opened it.
//! - **One call**: run it in a detached context, [`fencing::detach`]: the
//!   caller's triggers do not apply to it, and only its own timeout, if it
//!   has one, is sent and held.
//!
//! ```
//! # use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
//! # async fn audit(mut health: HealthClient<fencing_tonic::client::PropagateDeadline<tonic::transport::Channel>>)
//! #     -> Result<(), tonic::Status> {
//! // An audit call that must go out even when the request that made it is
//! // cancelled.
//! let mut request = tonic::Request::new(HealthCheckRequest::default());
//! request.set_timeout(std::time::Duration::from_secs(2)); // its own budget
//! fencing::detach(health.check(request)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Cancel safety
//!
//! Dropping the response future or the response body drops the inner
//! service's, as dropping those would: the call is abandoned, and tonic's
//! `Channel` resets its stream, which the server sees as a client that went
//! away. When a response and a trigger are ready in the same poll, the
//! response wins, as in [`fencing::Fenced`].
//!
//! # Differences from tonic's timeouts
//!
//! `Endpoint::timeout` and `Request::set_timeout` hold one call to a
//! duration chosen where the call is made, report `CANCELLED`, and do not
//! bound the response stream. `PropagateDeadline` takes the deadline from
//! the caller's context, which also holds every other trigger, and applies
//! it to the whole call, stream included, with the reasons that fired.

mod layer;

pub mod body;
pub mod future;

pub use layer::PropagateDeadlineLayer;

use crate::codes;
use body::ResponseBody;
use fencing::{Cancelled, Fencing};
use fencing_tower::client::PropagateBudget;
use fencing_tower::codec::{BudgetCodec, GrpcTimeout};
use fencing_tower::BoxError;
use future::ResponseFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tonic::{Code, GrpcMethod, Status, TimeoutExpired};
use tower_service::Service;

pub(crate) type SkipFn = dyn Fn(&GrpcMethod<'_>) -> bool + Send + Sync;

/// Sends the caller's deadline with every call of the inner transport,
/// holds the call and its response stream to it, and reports expiry as
/// `DEADLINE_EXCEEDED`; see the [module docs](self).
///
/// Created with [`PropagateDeadline::new`] or [`PropagateDeadlineLayer`].
///
/// # Examples
///
/// ```
/// use fencing_tonic::client::PropagateDeadline;
/// use tonic_health::pb::health_client::HealthClient;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
/// let health = HealthClient::new(PropagateDeadline::new(channel));
/// # let _ = health;
/// # }
/// ```
///
/// # Errors
///
/// A [`BoxError`] holding a [`tonic::Status`] when the call was refused,
/// interrupted or remapped; else the inner transport's error, boxed as it
/// was.
#[derive(Clone)]
pub struct PropagateDeadline<S> {
    inner: PropagateBudget<S>,
    skip: Option<Arc<SkipFn>>,
}

impl<S> PropagateDeadline<S> {
    /// Wraps `inner`, a gRPC transport such as a tonic `Channel`.
    ///
    /// # Examples
    ///
    /// See [`PropagateDeadline`].
    #[must_use]
    pub fn new(inner: S) -> Self {
        Self::with_skip(inner, None)
    }

    pub(crate) fn with_skip(inner: S, skip: Option<Arc<SkipFn>>) -> Self {
        Self {
            inner: PropagateBudget::new(inner).codec(GrpcTimeout),
            skip,
        }
    }

    /// A reference to the inner transport.
    ///
    /// # Examples
    ///
    /// ```
    /// let client = fencing_tonic::client::PropagateDeadline::new(7);
    /// assert_eq!(*client.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// A mutable reference to the inner transport.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut client = fencing_tonic::client::PropagateDeadline::new(7);
    /// *client.get_mut() += 1;
    /// assert_eq!(*client.get_ref(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// The inner transport.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fencing_tonic::client::PropagateDeadline::new(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }

    fn skips<B>(&self, request: &Request<B>) -> bool {
        self.skip.as_ref().is_some_and(|skip| {
            request
                .extensions()
                .get::<GrpcMethod<'static>>()
                .is_some_and(|method| skip(method))
        })
    }
}

impl<S: fmt::Debug> fmt::Debug for PropagateDeadline<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateDeadline")
            .field("inner", self.inner.get_ref())
            .field("skip", &self.skip.is_some())
            .finish()
    }
}

static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

impl<S, B, ResBody> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    /// Reads [`fencing::current()`]: call it inside the caller's context.
    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.skips(&request) {
            return ResponseFuture::skipped(self.inner.get_mut().call(request));
        }
        let context = fencing::current();
        // The request's own timeout is a deadline of the call too: held
        // here, it is reported as this layer reports any deadline.
        let own = request
            .headers()
            .get(&GRPC_TIMEOUT)
            .and_then(|value| GrpcTimeout.decode(value).ok());
        match own {
            Some(own) => {
                let context = context.timeout(own).code(codes::DEADLINE);
                let future = context.in_scope(|| self.inner.call(request));
                ResponseFuture::new(future, context)
            }
            // The inner layer reads the same context.
            None => ResponseFuture::new(self.inner.call(request), context),
        }
    }
}

/// Whether the deadline of `context` has passed.
fn deadline_passed(context: &Fencing) -> bool {
    context
        .effective_deadline()
        .is_some_and(|deadline| deadline <= Instant::now())
}

/// The status for a `CANCELLED` that the transport or the server reported
/// (`reported`) when the call's deadline had passed: what the call's own
/// fence would have said, `DEADLINE_EXCEEDED`.
fn remapped(context: &Fencing, reported: &str) -> Option<Status> {
    if !deadline_passed(context) {
        return None;
    }
    let cancelled = context.check().err()?;
    let mut status = Status::new(
        crate::status::code_for(&cancelled),
        format!("{cancelled} (reported as CANCELLED: {reported})"),
    );
    status.set_source(Arc::new(cancelled));
    Some(status)
}

/// Whether `err`, or an error in its chain, is a `CANCELLED`: a `Status`
/// with that code, or tonic's `TimeoutExpired` (which tonic maps to it).
fn cancelled_message(err: &(dyn Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(status) = err.downcast_ref::<Status>() {
            return (status.code() == Code::Cancelled).then(|| status.message().to_owned());
        }
        if err.is::<TimeoutExpired>() {
            return Some(err.to_string());
        }
        source = err.source();
    }
    None
}

/// The error a call or its stream fails with: a [`Cancelled`] becomes its
/// status, a `CANCELLED` after the deadline becomes `DEADLINE_EXCEEDED`,
/// anything else is passed on as it was.
pub(crate) fn call_error(err: BoxError, context: &Fencing) -> BoxError {
    if let Some(cancelled) = err.downcast_ref::<Cancelled>() {
        return Box::new(crate::status::status_for(cancelled));
    }
    if let Some(reported) = cancelled_message(&*err) {
        if let Some(status) = remapped(context, &reported) {
            return Box::new(status);
        }
    }
    err
}

/// Rewrites a `grpc-status: 1` in `headers` (a trailers-only answer, or
/// trailers) received once the call's deadline had passed.
pub(crate) fn remap_headers(headers: &mut HeaderMap, context: &Fencing) {
    let cancelled = headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"1");
    if !cancelled {
        return;
    }
    let reported = Status::from_header_map(headers)
        .map(|status| status.message().to_owned())
        .unwrap_or_default();
    if let Some(status) = remapped(context, &reported) {
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        if status.add_header(headers).is_err() {
            headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
        }
    }
}
