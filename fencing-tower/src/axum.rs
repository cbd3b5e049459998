//! axum support (feature `axum`, over `axum-core`): the request's context
//! as an extractor, and a cancellation as a response.
//!
//! ```
//! use axum::{routing::get, Router};
//! use fencing::current;
//! use fencing_tower::axum::CancelledResponse;
//! use fencing_tower::server::{FenceLayer, RequestContext};
//! use std::time::Duration;
//!
//! async fn report(context: RequestContext) -> Result<String, CancelledResponse> {
//!     // An inner call under its own, tighter timeout, inside the request's.
//!     let rows = current()
//!         .timeout(Duration::from_secs(2))
//!         .code("db")
//!         .run(async { 42 })
//!         .await?;
//!     Ok(format!("{rows} rows; the client gave {:?}", context.inbound_budget()))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/report", get(report))
//!     .layer(FenceLayer::new().budget(Duration::from_secs(10)));
//! ```

use crate::server::RequestContext;
use crate::status::{status_for, Stage};
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use fencing::Cancelled;
use http::request::Parts;
use http::StatusCode;
use std::fmt;

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = MissingContext;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, MissingContext> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingContext(()))
    }
}

/// The rejection of the [`RequestContext`] extractor when the router has no
/// [`FenceLayer`](crate::server::FenceLayer): a `500 Internal Server Error`
/// whose body names the missing layer, since that is a bug of the server,
/// not of the request.
///
/// # Examples
///
/// ```
/// use axum::{body::Body, routing::get, Router};
/// use fencing_tower::server::RequestContext;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // No `FenceLayer` on this router.
/// let app: Router = Router::new().route("/", get(|_: RequestContext| async { "unreachable" }));
/// let response = app.oneshot(http::Request::new(Body::empty())).await.unwrap();
/// assert_eq!(response.status(), 500);
/// # }
/// ```
#[derive(Debug)]
pub struct MissingContext(());

impl fmt::Display for MissingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no request context: the route is not behind fencing_tower's FenceLayer \
             (add `.layer(fencing_tower::server::FenceLayer::new())` to the router)",
        )
    }
}

impl std::error::Error for MissingContext {}

impl IntoResponse for MissingContext {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// A [`Cancelled`] as an axum response, so that a handler can return the
/// cancellation of an inner fence with `?`: the status follows the
/// [status table](crate::status) (`504` for time, `503` for shutdown and
/// other codes, `499` for a client that went away), the body is empty, and
/// the response's extensions hold the `Cancelled`, as for the requests the
/// layer itself stops.
///
/// (A newtype, since neither `Cancelled` nor `IntoResponse` is this
/// crate's. The table is the default one: a table given to
/// [`FenceLayer::status`](crate::server::FenceLayer::status) applies to the
/// layer's own answers only.)
///
/// # Examples
///
/// ```
/// use axum::response::IntoResponse;
/// use fencing::Fencing;
/// use fencing_tower::axum::CancelledResponse;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let cancelled = Fencing::new()
///     .timeout(Duration::from_secs(1))
///     .code("db")
///     .run(std::future::pending::<()>())
///     .await
///     .unwrap_err();
/// let response = CancelledResponse::from(cancelled).into_response();
/// assert_eq!(response.status(), 504);
/// assert!(response.extensions().get::<fencing::Cancelled>().unwrap().cancelled_by("db"));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CancelledResponse(pub Cancelled);

impl From<Cancelled> for CancelledResponse {
    fn from(cancelled: Cancelled) -> Self {
        Self(cancelled)
    }
}

impl fmt::Display for CancelledResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for CancelledResponse {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl IntoResponse for CancelledResponse {
    fn into_response(self) -> Response {
        let mut response = status_for(&self.0, Stage::Handler).into_response();
        response.extensions_mut().insert(self.0);
        response
    }
}
