//! Client middleware that sends the caller's remaining budget to the next
//! service, and holds the call to it.
//!
//! [`PropagateBudget`] wraps an HTTP client (hyper-util's legacy client, an
//! axum router called in-process, reqwest's `Client` with the `reqwest`
//! feature, any `Service<http::Request<B>>`). On every call it reads the
//! caller's context, [`fencing::current()`], and:
//!
//! 1. **refuses to send a spent budget**: if a trigger of the context has
//!    fired already, or its deadline has passed, the inner service is not
//!    called at all and the response future resolves at once to the
//!    [`Cancelled`] holding the reasons that fired. Nothing goes on the wire;
//! 2. **stamps** the remaining budget on the request, in the header of a
//!    [`BudgetCodec`] (by default [`ConnectTimeout`], `connect-timeout-ms`),
//!    rounded up by the codec so the next service never believes it has
//!    more time than this one waits for. A tighter budget already in that
//!    header is kept; a malformed one is replaced. Without a deadline in the
//!    context, or on a request the codec does not
//!    [apply to](BudgetCodec::applies_to) (`grpc-timeout` on a request that
//!    is not gRPC), nothing is stamped;
//! 3. **enforces it locally**: the inner future runs inside a fence of the
//!    context, so it is dropped when the budget runs out, or when any other
//!    trigger of the context fires (a shutdown, a client that went away),
//!    and the error is the context's own [`Cancelled`], with its codes
//!    (`budget`, `deadline`, `shutdown`…), not an anonymous "elapsed".
//!
//! ```
//! use fencing::Fencing;
//! use fencing_tower::client::PropagateBudgetLayer;
//! use http::Request;
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), fencing_tower::BoxError> {
//! // Stands in for an HTTP client: answers with the budget it was sent.
//! let client = service_fn(|request: Request<()>| async move {
//!     Ok::<_, Infallible>(request.headers()["connect-timeout-ms"].clone())
//! });
//! let client = ServiceBuilder::new()
//!     .layer(PropagateBudgetLayer::new())
//!     .service(client);
//!
//! // The context of a request handler with 1.5 s left.
//! let handler = Fencing::new().timeout(Duration::from_millis(1_500)).code("budget");
//! let sent = handler
//!     .bind(client.clone().oneshot(Request::new(())))
//!     .await?;
//! assert_eq!(sent, "1500");
//!
//! // Once the budget is spent, the request is not sent at all.
//! let spent = Fencing::new().timeout(Duration::ZERO).code("budget");
//! let err = spent.bind(client.oneshot(Request::new(()))).await.unwrap_err();
//! let cancelled = err.downcast_ref::<fencing::Cancelled>().unwrap();
//! assert!(cancelled.cancelled_by("budget"));
//! # Ok(())
//! # }
//! ```
//!
//! # Where it goes
//!
//! [`call`](tower_service::Service::call) reads the context of the task it
//! runs in, so it must run inside the caller's context: put the layer
//! outside anything that calls the inner service from another task, such as
//! `tower::buffer::Buffer`, whose worker task has no context (or none of
//! this caller's). A call made from a spawned task sees the context only if
//! the task was spawned with [`fencing::spawn`]; `tokio::spawn` does not
//! carry it. `ServiceExt::oneshot` calls when its future is first polled, so
//! await that future inside the context, as the example does.
//!
//! The fence is a fence of the caller's context: everything declared there
//! applies to the call, a [grace period](fencing::Fencing::grace) and a
//! [policy](fencing::Fencing::policy) included. A reason that the policy
//! declines does not stop the request from being sent.
//!
//! # reqwest
//!
//! With the `reqwest` feature the same layer wraps `reqwest::Client`, which
//! is a `Service<reqwest::Request>`; the feature uses reqwest 0.13 without
//! its default features, and so needs Rust 1.85:
//!
#![cfg_attr(feature = "reqwest", doc = "```")]
#![cfg_attr(not(feature = "reqwest"), doc = "```ignore")]
//! use fencing::Fencing;
//! use fencing_tower::client::PropagateBudgetLayer;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let client = ServiceBuilder::new()
//!     .layer(PropagateBudgetLayer::new())
//!     .service(reqwest::Client::new());
//!
//! let request = reqwest::Request::new(
//!     reqwest::Method::GET,
//!     "http://127.0.0.1:9/".parse().unwrap(),
//! );
//! let spent = Fencing::new().timeout(Duration::ZERO).code("budget");
//! let err = spent.bind(client.oneshot(request)).await.unwrap_err();
//! assert!(err.downcast_ref::<fencing::Cancelled>().unwrap().cancelled_by("budget"));
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error is a [`BoxError`], as in tower, so that
//! `HandleErrorLayer` and `err.downcast_ref::<fencing::Cancelled>()` work:
//!
//! - a refused or interrupted call is a boxed [`Cancelled`], holding every
//!   reason that fired, in firing order;
//! - an error of the inner service (its `poll_ready` or its response future)
//!   is passed through with `Into<BoxError>`: a concrete error downcasts to
//!   its own type (`hyper_util::client::legacy::Error`, `reqwest::Error`),
//!   and an error that is a `BoxError` already is passed on as it is.
//!
//! # Cancel safety
//!
//! Dropping the [`ResponseFuture`] drops the inner service's future, as
//! dropping that future would: for an HTTP client, the request is abandoned
//! where it stands. When the response and a trigger are ready in the same
//! poll, the response wins, as in [`fencing::Fenced`].
//!
//! # Differences from `tower::timeout`
//!
//! `tower::timeout::Timeout` takes its duration when the layer is built and
//! fails with an anonymous `Elapsed`. `PropagateBudget` takes its deadline
//! from each caller's context, which also holds every other trigger, tells
//! the next service about it, and fails with the reasons that fired.
//!
//! [`BudgetCodec`]: crate::codec::BudgetCodec
//! [`ConnectTimeout`]: crate::codec::ConnectTimeout
//! [`BoxError`]: crate::BoxError
//! [`Cancelled`]: fencing::Cancelled
//! [`ResponseFuture`]: future::ResponseFuture

use crate::codec::{BudgetCodec, ConnectTimeout};
use crate::BoxError;
use fencing::{Cancelled, Fencing};
use http::HeaderMap;
use std::fmt;
use std::future::Future;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tower_service::Service;

pub mod future;
mod layer;

pub use self::layer::PropagateBudgetLayer;

use self::future::ResponseFuture;

/// Sends the caller's remaining budget to the inner service and fences the
/// call to it; see the [module docs](self).
///
/// Created with [`PropagateBudget::new`] or [`PropagateBudgetLayer`].
///
/// # Examples
///
/// ```
/// use fencing::Fencing;
/// use fencing_tower::client::PropagateBudget;
/// use fencing_tower::codec::GrpcTimeout;
/// use http::{header::CONTENT_TYPE, Request};
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), fencing_tower::BoxError> {
/// let client = service_fn(|request: Request<()>| async move {
///     Ok::<_, Infallible>(request.headers()["grpc-timeout"].clone())
/// });
/// let client = PropagateBudget::new(client).codec(GrpcTimeout);
///
/// let request = Request::builder()
///     .header(CONTENT_TYPE, "application/grpc")
///     .body(())?;
/// let sent = Fencing::new()
///     .timeout(Duration::from_secs(2))
///     .bind(client.oneshot(request))
///     .await?;
/// assert_eq!(sent, "2000000u");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// A [`BoxError`]: a boxed [`Cancelled`] when the call was refused or
/// interrupted, else the inner service's error, boxed as it was; see
/// [Errors](self#errors).
///
/// # Cancel safety
///
/// Dropping the response future drops the inner service's future, and
/// nothing else; see [Cancel safety](self#cancel-safety).
#[derive(Clone, Debug)]
pub struct PropagateBudget<S> {
    inner: S,
    codec: Codec,
}

impl<S> PropagateBudget<S> {
    /// Wraps `inner`, stamping budgets as `connect-timeout-ms`
    /// ([`ConnectTimeout`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::client::PropagateBudget;
    /// use tower::service_fn;
    ///
    /// let client = PropagateBudget::new(service_fn(|request: http::Request<()>| async move {
    ///     Ok::<_, std::convert::Infallible>(request)
    /// }));
    /// ```
    #[must_use]
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            codec: Codec::DEFAULT,
        }
    }

    /// Stamps budgets with `codec` instead: the budget goes in its header,
    /// on the requests it [applies to](BudgetCodec::applies_to) (for
    /// [`GrpcTimeout`](crate::codec::GrpcTimeout), gRPC requests only).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::client::PropagateBudget;
    /// use fencing_tower::codec::{HeaderBudget, Unit};
    /// use http::HeaderName;
    /// use tower::service_fn;
    ///
    /// let client = service_fn(|request: http::Request<()>| async move {
    ///     Ok::<_, std::convert::Infallible>(request)
    /// });
    /// let codec = HeaderBudget::new(HeaderName::from_static("x-budget-ms"), Unit::Millis);
    /// let client = PropagateBudget::new(client).codec(codec);
    /// ```
    #[must_use]
    pub fn codec(mut self, codec: impl BudgetCodec) -> Self {
        self.codec = Codec::new(codec);
        self
    }

    /// A reference to the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::client::PropagateBudget;
    ///
    /// let service = PropagateBudget::new(7);
    /// assert_eq!(*service.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::client::PropagateBudget;
    ///
    /// let mut service = PropagateBudget::new(7);
    /// *service.get_mut() += 1;
    /// assert_eq!(*service.get_ref(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::client::PropagateBudget;
    ///
    /// assert_eq!(PropagateBudget::new(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> Service<R> for PropagateBudget<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
    R: OutgoingRequest,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// Reads [`fencing::current()`]: call it inside the caller's context.
    fn call(&mut self, mut request: R) -> Self::Future {
        let context = fencing::current();
        match prepare(&context, self.codec.get(), request.headers_mut()) {
            // The inner service is not called: tower's `Filter` does the
            // same with a request it rejects after `poll_ready`.
            Err(cancelled) => ResponseFuture::refused(cancelled),
            Ok(()) => ResponseFuture::new(context.run(self.inner.call(request))),
        }
    }
}

/// A request whose headers [`PropagateBudget`] can stamp:
/// [`http::Request<B>`](http::Request) and, with the `reqwest` feature,
/// `reqwest::Request`.
///
/// This trait is sealed: it cannot be implemented outside this crate.
///
/// # Examples
///
/// ```
/// use fencing_tower::client::OutgoingRequest;
///
/// fn stampable<R: OutgoingRequest>() {}
/// stampable::<http::Request<String>>();
/// ```
pub trait OutgoingRequest: sealed::Sealed {}

// The method lives on the sealed supertrait, so that it is no public API.
// `Sealed` is `pub` in a private module, the usual sealing pattern.
#[allow(unreachable_pub)]
mod sealed {
    pub trait Sealed {
        fn headers_mut(&mut self) -> &mut http::HeaderMap;
    }
}

impl<B> sealed::Sealed for http::Request<B> {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        Self::headers_mut(self)
    }
}

impl<B> OutgoingRequest for http::Request<B> {}

#[cfg(feature = "reqwest")]
impl sealed::Sealed for reqwest::Request {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        Self::headers_mut(self)
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl OutgoingRequest for reqwest::Request {}

/// The codec a service stamps with: `None` for the default,
/// [`ConnectTimeout`], so that `new` can be `const`.
#[derive(Clone, Default)]
pub(crate) struct Codec(Option<Arc<dyn BudgetCodec>>);

// A codec is called through `&self` to format and parse header values; a
// panic inside one leaves nothing of the layer's half-updated. As with the
// core's `Policy`, the missing `UnwindSafe` bound on the trait object
// should not make every service and layer `!UnwindSafe`.
impl UnwindSafe for Codec {}
impl RefUnwindSafe for Codec {}

impl Codec {
    pub(crate) const DEFAULT: Self = Self(None);

    pub(crate) fn new(codec: impl BudgetCodec) -> Self {
        Self(Some(Arc::new(codec)))
    }

    fn get(&self) -> &dyn BudgetCodec {
        match &self.0 {
            Some(codec) => &**codec,
            None => &ConnectTimeout,
        }
    }
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// Decides one call, before the inner service sees it: `Err` with what
/// fired if the budget is spent, else stamps the remaining budget.
fn prepare(
    context: &Fencing,
    codec: &dyn BudgetCodec,
    headers: &mut HeaderMap,
) -> Result<(), Cancelled> {
    let remaining = context.remaining();
    if remaining == Some(Duration::ZERO) || context.is_cancelled() {
        if let Some(cancelled) = fired(context) {
            return Err(cancelled);
        }
    }
    if let Some(budget) = remaining {
        stamp(codec, budget, headers);
    }
    Ok(())
}

/// What a fence of `context` would stop with right now, if anything.
///
/// `is_cancelled` does not consult the context's policy, and only a fence
/// can make a `Cancelled`: so ask one, polled once. A fence whose trigger
/// fired before its first poll resolves in that poll without registering
/// any waiter; if it is pending instead, every reason that fired was
/// declined, and the request goes out as any fenced work would.
fn fired(context: &Fencing) -> Option<Cancelled> {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let wait = pin!(context.clone().cancelled());
    match wait.poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(cancelled) => Some(cancelled),
        Poll::Pending => None,
    }
}

/// Writes `budget` in the codec's header, unless a tighter well-formed
/// value is there already. Leaves a single value.
fn stamp(codec: &dyn BudgetCodec, budget: Duration, headers: &mut HeaderMap) {
    if !codec.applies_to(headers) {
        return;
    }
    let name = codec.header_name();
    let ours = codec.encode(budget);
    // What the next service will read from ours: at least `budget`.
    let ours_read = codec.decode(&ours).unwrap_or(budget);
    let tighter = headers
        .get_all(name)
        .iter()
        .filter_map(|value| Some((codec.decode(value).ok()?, value)))
        .min_by_key(|(read, _)| *read)
        .filter(|(read, _)| *read <= ours_read)
        .map(|(_, value)| value.clone());
    headers.insert(name.clone(), tighter.unwrap_or(ours));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::GrpcTimeout;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("connect-timeout-ms", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn stamped(values: &[&str], budget: Duration) -> Vec<String> {
        let mut headers = headers(values);
        stamp(&ConnectTimeout, budget, &mut headers);
        headers
            .get_all("connect-timeout-ms")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn stamp_keeps_the_tightest_well_formed_value() {
        let second = Duration::from_secs(1);
        assert_eq!(stamped(&[], second), ["1000"]);
        assert_eq!(stamped(&["300"], second), ["300"]);
        assert_eq!(stamped(&["5000"], second), ["1000"]);
        assert_eq!(stamped(&["1000"], second), ["1000"]);
        assert_eq!(stamped(&["soon"], second), ["1000"]);
        assert_eq!(stamped(&["soon", "700", "400"], second), ["400"]);
        assert_eq!(
            stamped(&["0700"], second),
            ["0700"],
            "kept as it was written"
        );
        // Ours rounds 999.1 ms up to 1000: an existing 1000 is as tight.
        assert_eq!(stamped(&["1000"], Duration::from_micros(999_100)), ["1000"]);
    }

    #[test]
    fn stamp_only_where_the_codec_applies() {
        let mut headers = HeaderMap::new();
        stamp(&GrpcTimeout, Duration::from_secs(1), &mut headers);
        assert!(headers.is_empty());
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        stamp(&GrpcTimeout, Duration::from_secs(1), &mut headers);
        assert_eq!(headers["grpc-timeout"], "1000000u");
    }
}
