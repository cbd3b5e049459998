use super::{PropagateDeadline, SkipFn};
use std::fmt;
use std::sync::Arc;
use tonic::GrpcMethod;
use tower_layer::Layer;

/// Wraps gRPC transports in [`PropagateDeadline`], which sends the
/// caller's deadline with every call, holds the call and its response
/// stream to it, and reports expiry as `DEADLINE_EXCEEDED`; see the
/// [module docs](super).
///
/// # Examples
///
/// ```
/// use fencing_tonic::client::PropagateDeadlineLayer;
/// use tonic_health::pb::health_client::HealthClient;
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
/// let channel = ServiceBuilder::new()
///     .layer(PropagateDeadlineLayer::new())
///     .service(channel);
/// let health = HealthClient::new(channel);
/// # let _ = health;
/// # }
/// ```
#[derive(Clone, Default)]
pub struct PropagateDeadlineLayer {
    skip: Option<Arc<SkipFn>>,
}

impl PropagateDeadlineLayer {
    /// A layer that propagates the deadline of every call.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = fencing_tonic::client::PropagateDeadlineLayer::new();
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        Self { skip: None }
    }

    /// Leaves alone the calls of the methods for which `skip` returns
    /// `true`: they go out with no `grpc-timeout` of the context's, no
    /// fence, and fail with tonic's own errors. Methods are named by the
    /// [`GrpcMethod`] that generated clients put in the request's
    /// extensions; a request without one (built by hand) is never skipped.
    /// Calling it again replaces the predicate.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tonic::client::PropagateDeadlineLayer;
    ///
    /// // A health `Watch` outlives the request that opened it.
    /// let layer = PropagateDeadlineLayer::new().skip(|method| {
    ///     method.service() == "grpc.health.v1.Health" && method.method() == "Watch"
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn skip<F>(mut self, skip: F) -> Self
    where
        F: Fn(&GrpcMethod<'_>) -> bool + Send + Sync + 'static,
    {
        self.skip = Some(Arc::new(skip));
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> PropagateDeadline<S> {
        PropagateDeadline::with_skip(inner, self.skip.clone())
    }
}

impl fmt::Debug for PropagateDeadlineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateDeadlineLayer")
            .field("skip", &self.skip.is_some())
            .finish()
    }
}
