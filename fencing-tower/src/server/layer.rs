#[cfg(feature = "axum")]
use super::body::AxumBody;
use super::body::{Plain, Watched};
use super::{CancelledRequest, Config, Disposition, Fence, Http, OnMalformed, Protocol};
use crate::codec::BudgetCodec;
use crate::drain::Drain;
use crate::status::Stage;
use fencing::{Cancelled, Fencing};
use http::StatusCode;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Fences every request of the service it wraps: see the
/// [module docs](super).
///
/// The layer is a cheap clone of a shared configuration; each builder step
/// returns it changed.
///
/// # Examples
///
/// ```
/// use fencing_tower::codec::EnvoyTimeout;
/// use fencing_tower::server::{Disposition, FenceLayer, OnMalformed};
/// use fencing_tower::Drain;
/// use std::time::Duration;
///
/// let drain = Drain::new(Duration::from_secs(10));
/// let layer = FenceLayer::new()
///     .budget(Duration::from_secs(30))
///     .codec(EnvoyTimeout)
///     .on_malformed(OnMalformed::Ignore)
///     .disposition(Disposition::Detach { grace: Duration::from_secs(2) })
///     .drain(&drain);
/// # let _ = layer;
/// ```
pub struct FenceLayer<K = Plain> {
    config: Arc<Config>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for FenceLayer<K> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            kind: PhantomData,
        }
    }
}

impl FenceLayer {
    /// A layer with the defaults: no budget of the server's own, the
    /// `grpc-timeout` and `connect-timeout-ms` headers read, a malformed
    /// one answered `400`, [`Disposition::CancelOnDisconnect`], no drain,
    /// the [default status table](crate::status).
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = fencing_tower::server::FenceLayer::new();
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config::default()),
            kind: PhantomData,
        }
    }
}

impl<K> FenceLayer<K> {
    /// Hands the inner service a [`RequestBody`](super::body::RequestBody)
    /// instead of the request's own body, so that a deadline that fires
    /// while the handler reads the body is answered `408 Request Timeout`
    /// (see the [status table](crate::status)). This changes the inner
    /// service's request type; for an axum `Router::layer`, use
    /// [`watch_axum_request_body`](Self::watch_axum_request_body).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::server::body::RequestBody;
    /// use fencing_tower::server::FenceLayer;
    /// use std::time::Duration;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let upload = ServiceBuilder::new()
    ///     .layer(FenceLayer::new().budget(Duration::from_secs(1)).watch_request_body())
    ///     .service(service_fn(|request: http::Request<RequestBody<_>>| async move {
    ///         use http_body_util::BodyExt;
    ///         let body = request.into_body().collect().await.unwrap().to_bytes();
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(format!("{} bytes", body.len())))
    ///     }));
    ///
    /// // A body that never arrives.
    /// let (_sender, body) = http_body_util::channel::Channel::<bytes::Bytes>::new(1);
    /// let response = upload.oneshot(http::Request::new(body)).await.unwrap();
    /// assert_eq!(response.status(), http::StatusCode::REQUEST_TIMEOUT);
    /// # }
    /// ```
    #[must_use]
    pub fn watch_request_body(self) -> FenceLayer<Watched> {
        FenceLayer {
            config: self.config,
            kind: PhantomData,
        }
    }

    /// [`watch_request_body`](Self::watch_request_body) for axum: the inner
    /// service receives an axum `Body` (holding the watched one), so the
    /// layer fits `Router::layer`, and a deadline that fires while an
    /// extractor such as `Json` reads the body is answered `408`. With the
    /// `axum` feature.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::{routing::post, Router};
    /// use fencing_tower::server::FenceLayer;
    /// use std::time::Duration;
    ///
    /// let app: Router = Router::new()
    ///     .route("/upload", post(|body: String| async move { body.len().to_string() }))
    ///     .layer(FenceLayer::new().budget(Duration::from_secs(5)).watch_axum_request_body());
    /// ```
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    #[must_use]
    pub fn watch_axum_request_body(self) -> FenceLayer<AxumBody> {
        FenceLayer {
            config: self.config,
            kind: PhantomData,
        }
    }

    fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        change(config);
        config.prepare();
        self
    }

    /// The server's own budget for every request, under the code
    /// [`codes::BUDGET`](crate::codes::BUDGET), anchored when the request is
    /// received. A budget header can only shorten it. An overflowing
    /// duration is no budget; `Duration::ZERO` answers every request
    /// `504` without calling the handler.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let layer = fencing_tower::server::FenceLayer::new().budget(Duration::from_secs(30));
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn budget(self, budget: Duration) -> Self {
        self.config(|config| config.budget = Some(budget))
    }

    /// Triggers every request gets besides its budget: a `Fencing` that is
    /// the root of each request's context, such as an application token
    /// with its code. Its relative timeouts were anchored when it was
    /// built, so give per-request time with [`budget`](Self::budget).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Token};
    ///
    /// let maintenance = Token::new();
    /// let layer = fencing_tower::server::FenceLayer::new()
    ///     .fencing(Fencing::new().token(&maintenance).code("maintenance"));
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn fencing(self, base: Fencing) -> Self {
        self.config(|config| config.base = base)
    }

    /// Reads one more budget header: the tightest budget of every header
    /// read wins (and never exceeds [`budget`](Self::budget)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::codec::EnvoyTimeout;
    ///
    /// let layer = fencing_tower::server::FenceLayer::new().codec(EnvoyTimeout);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn codec(self, codec: impl BudgetCodec) -> Self {
        self.config(|config| config.codecs.push(Arc::new(codec)))
    }

    /// Reads no budget header, not even the default ones; add the ones to
    /// read with [`codec`](Self::codec).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::codec::ConnectTimeout;
    ///
    /// // Only `connect-timeout-ms`, not `grpc-timeout`.
    /// let layer = fencing_tower::server::FenceLayer::new().clear_codecs().codec(ConnectTimeout);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn clear_codecs(self) -> Self {
        self.config(|config| config.codecs.clear())
    }

    /// What to do with a request whose budget header is malformed.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::server::{FenceLayer, OnMalformed};
    ///
    /// let layer = FenceLayer::new().on_malformed(OnMalformed::Ignore);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn on_malformed(self, on_malformed: OnMalformed) -> Self {
        self.config(|config| config.on_malformed = on_malformed)
    }

    /// What happens to a handler whose client goes away.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::server::{Disposition, FenceLayer};
    /// use std::time::Duration;
    ///
    /// let layer = FenceLayer::new().disposition(Disposition::Detach { grace: Duration::from_secs(1) });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn disposition(self, disposition: Disposition) -> Self {
        self.config(|config| config.disposition = disposition)
    }

    /// Shuts the service down with `drain`: every request carries its
    /// shutdown trigger and is tracked by it. See [`Drain`].
    ///
    /// # Examples
    ///
    /// See [`Drain`].
    #[must_use]
    pub fn drain(self, drain: &Drain) -> Self {
        let drain = drain.clone();
        self.config(|config| config.drain = Some(drain))
    }

    /// Replaces the [status table](crate::status): `status(cancelled, stage)`
    /// gives the status a cancelled request is answered with (plain HTTP,
    /// [`Http::with_status`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use http::StatusCode;
    ///
    /// // Every cancellation is a 503.
    /// let layer = fencing_tower::server::FenceLayer::new()
    ///     .status(|_, _| StatusCode::SERVICE_UNAVAILABLE);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn status<F>(self, status: F) -> Self
    where
        F: Fn(&Cancelled, Stage) -> StatusCode + Send + Sync + 'static,
    {
        self.protocol(Http::with_status(status))
    }

    /// Answers in another protocol than plain HTTP: see [`Protocol`]. The
    /// last of [`status`](Self::status) and `protocol` wins.
    ///
    /// # Examples
    ///
    /// See [`Protocol`].
    #[must_use]
    pub fn protocol(self, protocol: impl Protocol) -> Self {
        self.config(|config| config.protocol = Arc::new(protocol))
    }

    /// Calls `hook` once for every request a trigger stopped or whose
    /// client went away, and for every response body cut short: for logs
    /// and metrics. [`CancelledRequest::is_interrupted`] tells a request cut
    /// from one whose detached handler ran to its end anyway. It runs where the request ended (in a poll, or in a drop):
    /// keep it short, and do not block.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let gone = Arc::new(AtomicUsize::new(0));
    /// let count = gone.clone();
    /// let layer = fencing_tower::server::FenceLayer::new().on_cancel(move |request| {
    ///     if request.cancelled().cancelled_by(fencing_tower::codes::CLIENT_DISCONNECTED) {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn on_cancel<F>(self, hook: F) -> Self
    where
        F: Fn(&CancelledRequest<'_>) + Send + Sync + 'static,
    {
        self.config(|config| config.on_cancel = Some(Arc::new(hook)))
    }
}

impl Default for FenceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, K> Layer<S> for FenceLayer<K> {
    type Service = Fence<S, K>;

    fn layer(&self, inner: S) -> Fence<S, K> {
        Fence {
            inner,
            config: self.config.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for FenceLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FenceLayer")
            .field("config", &self.config)
            .finish()
    }
}
