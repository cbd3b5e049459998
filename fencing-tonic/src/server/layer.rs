use super::{CancelledCall, GrpcProtocol, Shaved, StatusFn, DEFAULT_MARGIN};
use crate::status::status_for;
use fencing::{Cancelled, Fencing};
use fencing_tower::codes;
use fencing_tower::server::{Disposition, Fence, FenceLayer, OnMalformed};
use fencing_tower::status::Stage;
use fencing_tower::Drain;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;
use tower_layer::Layer;

type HookFn = dyn Fn(&CancelledCall<'_>) + Send + Sync;

/// Fences every call of the gRPC service it wraps with the call's deadline,
/// the server's shutdown and the client going away, and answers a stopped
/// call with its `grpc-status`: see the [module docs](super).
///
/// A [`FenceLayer`] of `fencing-tower`, set up for gRPC: it reads only
/// `grpc-timeout`, ends the caller's deadline [`margin`](Self::margin)
/// early (so that it fires before tonic's own timer), answers in gRPC
/// ([`GrpcProtocol`]), and a malformed `grpc-timeout` is `INTERNAL`. Its
/// service is `fencing-tower`'s [`Fence`].
///
/// The layer is a cheap clone of a shared configuration; each builder step
/// returns it changed.
///
/// # Examples
///
/// ```
/// use fencing_tonic::server::GrpcFenceLayer;
/// use fencing_tonic::Drain;
/// use std::time::Duration;
///
/// let drain = Drain::new(Duration::from_secs(5));
/// let layer = GrpcFenceLayer::new()
///     .budget(Duration::from_secs(30)) // no call runs longer, whatever it asks for
///     .drain(&drain);
/// let server = tonic::transport::Server::builder().layer(layer);
/// # let _ = server;
/// ```
#[derive(Clone)]
pub struct GrpcFenceLayer {
    inner: FenceLayer,
    base: Fencing,
    margin: Duration,
    status: Arc<StatusFn>,
    hook: Option<Arc<HookFn>>,
}

impl GrpcFenceLayer {
    /// A layer with the defaults: no budget of the server's own, the
    /// caller's `grpc-timeout` read and ended [`DEFAULT_MARGIN`] early, a
    /// malformed one answered `INTERNAL`,
    /// [`Disposition::CancelOnDisconnect`], no drain, the
    /// [default status table](crate::status).
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = fencing_tonic::server::GrpcFenceLayer::new();
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        let status: Arc<StatusFn> = Arc::new(status_for);
        Self {
            inner: FenceLayer::new().on_malformed(OnMalformed::Reject),
            base: Fencing::new(),
            margin: DEFAULT_MARGIN,
            status,
            hook: None,
        }
        .sync()
    }

    /// Applies what the other settings derive from: the codec (the margin
    /// and the deadline's grace period), the protocol (the status table)
    /// and the hook (which reports with the status table).
    fn sync(mut self) -> Self {
        let grace = self
            .base
            .grace_period_for(codes::DEADLINE)
            .unwrap_or(Duration::ZERO);
        let shave = self.margin.saturating_add(grace);
        let protocol = GrpcProtocol {
            status: self.status.clone(),
        };
        let mut inner = self
            .inner
            .fencing(self.base.clone())
            .clear_codecs()
            .codec(Shaved { shave })
            .protocol(protocol);
        if let Some(hook) = &self.hook {
            let hook = hook.clone();
            let status = self.status.clone();
            inner = inner.on_cancel(move |request| {
                // A cut stream is reported with no HTTP status, yet it ended
                // with its `grpc-status` in trailers, unless its client left.
                let cut = request.stage() == Stage::ResponseBody
                    && !request
                        .cancelled()
                        .reason()
                        .has_code(codes::CLIENT_DISCONNECTED);
                let answered = request.status().is_some() || cut;
                let code = answered.then(|| status(request.cancelled()).code());
                hook(&CancelledCall {
                    cancelled: request.cancelled(),
                    stage: request.stage(),
                    code,
                });
            });
        }
        self.inner = inner;
        self
    }

    /// The server's own budget for every call, under the code
    /// [`budget`](crate::codes::BUDGET), anchored when the call is
    /// received: the longest any call may run. A caller's `grpc-timeout`
    /// can only shorten it. An overflowing duration is no budget;
    /// `Duration::ZERO` answers every call `DEADLINE_EXCEEDED` without
    /// calling the handler.
    ///
    /// Prefer it to tonic's `Server::timeout`, which answers `CANCELLED`
    /// and is not visible to the handler. If you set both, set this one
    /// shorter, by at least the [margin](Self::margin).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let layer = fencing_tonic::server::GrpcFenceLayer::new().budget(Duration::from_secs(30));
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn budget(mut self, budget: Duration) -> Self {
        self.inner = self.inner.budget(budget);
        self
    }

    /// How much earlier than the caller's `grpc-timeout` the call's
    /// deadline is: [`DEFAULT_MARGIN`] unless changed. See
    /// [the race with tonic's own timeout](super#the-race-with-tonics-own-timeout).
    ///
    /// A grace period that the [base `Fencing`](Self::fencing) gives the
    /// code `deadline` comes out of the budget too, so that the call is
    /// dropped, and answered, a margin before tonic's timer. A header no
    /// longer than the margin (and that grace period) is a spent budget:
    /// the call is answered `DEADLINE_EXCEEDED` without calling the
    /// handler.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // Served behind axum or hyper, where tonic's own timer is absent.
    /// let layer = fencing_tonic::server::GrpcFenceLayer::new().margin(Duration::ZERO);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self.sync()
    }

    /// Triggers every call gets besides its deadline: a `Fencing` that is
    /// the root of each call's context, such as an application token with
    /// its code. A grace period it gives the code `deadline` (or every
    /// code) is taken out of the caller's budget; see
    /// [`margin`](Self::margin).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// let maintenance = Token::new();
    /// let layer = fencing_tonic::server::GrpcFenceLayer::new()
    ///     .fencing(Fencing::new().token(&maintenance).code("maintenance"));
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn fencing(mut self, base: Fencing) -> Self {
        self.base = base;
        self.sync()
    }

    /// What to do with a call whose `grpc-timeout` is malformed: answer it
    /// `INTERNAL` without calling the handler ([`OnMalformed::Reject`], the
    /// default, as grpc-go does), or serve it as if it had no deadline
    /// ([`OnMalformed::Ignore`], as tonic does).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::server::{GrpcFenceLayer, OnMalformed};
    ///
    /// let layer = GrpcFenceLayer::new().on_malformed(OnMalformed::Ignore);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn on_malformed(mut self, on_malformed: OnMalformed) -> Self {
        self.inner = self.inner.on_malformed(on_malformed);
        self
    }

    /// What happens to a handler whose client goes away (resets the
    /// stream, closes the connection). See
    /// [`Disposition`](fencing_tower::server::Disposition).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::server::{Disposition, GrpcFenceLayer};
    /// use std::time::Duration;
    ///
    /// let layer = GrpcFenceLayer::new()
    ///     .disposition(Disposition::Detach { grace: Duration::from_secs(1) });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn disposition(mut self, disposition: Disposition) -> Self {
        self.inner = self.inner.disposition(disposition);
        self
    }

    /// Shuts the service down with `drain`: every call carries its
    /// shutdown trigger (code `shutdown`, answered `UNAVAILABLE`) and is
    /// tracked by it; calls that arrive once it began are answered
    /// `UNAVAILABLE` without calling the handler. See
    /// [`Drain`](fencing_tower::Drain).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::{server::GrpcFenceLayer, Drain};
    /// use std::time::Duration;
    ///
    /// let drain = Drain::new(Duration::from_secs(5));
    /// let layer = GrpcFenceLayer::new().drain(&drain);
    /// // ... on SIGTERM: `drain.shutdown().await`.
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn drain(mut self, drain: &Drain) -> Self {
        self.inner = self.inner.drain(drain);
        self
    }

    /// Replaces the [status table](crate::status): `status(cancelled)`
    /// gives the status a stopped call is answered with, and that a cut
    /// response stream ends with. [`status_for`] is the default, for a
    /// function that changes one row and keeps the rest.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::status::status_for;
    /// use tonic::Status;
    ///
    /// // A server behind a load balancer that retries only `UNAVAILABLE`.
    /// let layer = fencing_tonic::server::GrpcFenceLayer::new().status(|cancelled| {
    ///     if cancelled.cancelled_by("maintenance") {
    ///         Status::unavailable("down for maintenance")
    ///     } else {
    ///         status_for(cancelled)
    ///     }
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn status<F>(mut self, status: F) -> Self
    where
        F: Fn(&Cancelled) -> Status + Send + Sync + 'static,
    {
        self.status = Arc::new(status);
        self.sync()
    }

    /// Calls `hook` for every call a trigger stopped, the client going away
    /// included, and every response stream cut short: for logs and
    /// metrics. It runs where the call ended (in a poll, or in a drop):
    /// keep it short, and do not block.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::server::GrpcFenceLayer;
    /// use tonic::Code;
    ///
    /// let layer = GrpcFenceLayer::new().on_cancel(|call| match call.code() {
    ///     Some(Code::DeadlineExceeded) => eprintln!("too slow: {}", call.cancelled()),
    ///     Some(code) => eprintln!("answered {code:?}: {}", call.cancelled()),
    ///     None => eprintln!("nobody to answer: {}", call.cancelled()),
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn on_cancel<F>(mut self, hook: F) -> Self
    where
        F: Fn(&CancelledCall<'_>) + Send + Sync + 'static,
    {
        self.hook = Some(Arc::new(hook));
        self.sync()
    }

    /// The `fencing-tower` layer this one configures, for what only it
    /// offers. Changing its codecs, protocol or hook undoes what this
    /// layer set up.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer: fencing_tower::server::FenceLayer =
    ///     fencing_tonic::server::GrpcFenceLayer::new().into_inner();
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn into_inner(self) -> FenceLayer {
        self.inner
    }
}

impl Default for GrpcFenceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for GrpcFenceLayer {
    type Service = Fence<S>;

    fn layer(&self, inner: S) -> Fence<S> {
        self.inner.layer(inner)
    }
}

impl fmt::Debug for GrpcFenceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcFenceLayer")
            .field("inner", &self.inner)
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}
