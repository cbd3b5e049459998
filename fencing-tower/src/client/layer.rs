use super::{Codec, PropagateBudget};
use crate::codec::BudgetCodec;
use tower_layer::Layer;

/// Wraps services in [`PropagateBudget`], which sends the caller's
/// remaining budget to the next service and fences the call to it; see the
/// [module docs](super).
///
/// # Examples
///
/// ```
/// use fencing::Fencing;
/// use fencing_tower::client::PropagateBudgetLayer;
/// use http::Request;
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), fencing_tower::BoxError> {
/// let client = ServiceBuilder::new()
///     .layer(PropagateBudgetLayer::new())
///     .service(service_fn(|request: Request<()>| async move {
///         Ok::<_, Infallible>(request.headers().get("connect-timeout-ms").cloned())
///     }));
///
/// // 1,234.5 ms left: the next service is told 1,235, never 1,234.
/// let budget = Fencing::new().timeout(Duration::from_micros(1_234_500));
/// let sent = budget.bind(client.clone().oneshot(Request::new(()))).await?;
/// assert_eq!(sent.unwrap(), "1235");
///
/// // No deadline, no header.
/// let sent = client.oneshot(Request::new(())).await?;
/// assert_eq!(sent, None);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct PropagateBudgetLayer {
    codec: Codec,
}

impl PropagateBudgetLayer {
    /// A layer that stamps budgets as `connect-timeout-ms`
    /// ([`ConnectTimeout`](crate::codec::ConnectTimeout)).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing_tower::client::PropagateBudgetLayer;
    ///
    /// let layer = PropagateBudgetLayer::new();
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        Self {
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
    /// use fencing_tower::client::PropagateBudgetLayer;
    /// use fencing_tower::codec::EnvoyTimeout;
    ///
    /// let layer = PropagateBudgetLayer::new().codec(EnvoyTimeout);
    /// ```
    #[must_use]
    pub fn codec(mut self, codec: impl BudgetCodec) -> Self {
        self.codec = Codec::new(codec);
        self
    }
}

impl<S> Layer<S> for PropagateBudgetLayer {
    type Service = PropagateBudget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateBudget {
            inner,
            codec: self.codec.clone(),
        }
    }
}
