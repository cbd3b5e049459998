//! Which status a cancelled request is answered with.
//!
//! The server layer answers a request whose fence fired with an empty
//! response whose status comes from the first reason that fired (the
//! earliest, not a priority by code), and from where the request stood:
//!
//! | first reason | while handling | while the handler read the request body | after the response head was sent |
//! |---|---|---|---|
//! | a time reason (`budget`, `deadline`, any timeout or deadline) | `504 Gateway Timeout` | `408 Request Timeout` | the body ends with an error |
//! | `shutdown` | `503 Service Unavailable` | `503` | the body ends with an error |
//! | `client_disconnected` | `499` (nothing is sent: the client is gone) | `499` | — |
//! | any other code | `503 Service Unavailable` | `503` | the body ends with an error |
//!
//! Replace the table with [`FenceLayer::status`](crate::server::FenceLayer::status);
//! [`status_for`] is the default, for a function that changes one row and
//! keeps the rest. 499 is nginx's "client closed request": it is never
//! written to a socket, only reported (a log, a metric) through
//! [`FenceLayer::on_cancel`](crate::server::FenceLayer::on_cancel).
//!
//! When several reasons fired, the first is the one that stopped the
//! request; the others fired in the same poll or during a grace period. To
//! rank them by code instead, ask
//! [`Cancelled::cancelled_by`](fencing::Cancelled::cancelled_by) or
//! [`Cancelled::reason_by_priority`](fencing::Cancelled::reason_by_priority)
//! in your own function:
//!
//! ```
//! use fencing_tower::status::{status_for, Stage};
//! use fencing_tower::codes;
//! use http::StatusCode;
//!
//! fn shutdown_first(cancelled: &fencing::Cancelled, stage: Stage) -> StatusCode {
//!     if cancelled.cancelled_by(codes::SHUTDOWN) {
//!         StatusCode::SERVICE_UNAVAILABLE
//!     } else {
//!         status_for(cancelled, stage)
//!     }
//! }
//! let layer = fencing_tower::server::FenceLayer::new().status(shutdown_first);
//! ```

use crate::codes;
use fencing::Cancelled;
use http::StatusCode;

/// Where a request stood when its fence fired.
///
/// # Examples
///
/// ```
/// use fencing_tower::status::Stage;
///
/// assert_ne!(Stage::Handler, Stage::RequestBody);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The handler was running, and not reading the request body.
    Handler,
    /// The handler was reading the request body: it had polled it and not
    /// reached its end.
    RequestBody,
    /// The response head was sent; its body was streaming.
    ResponseBody,
}

/// nginx's 499 "client closed request", for a client that went away.
///
/// # Examples
///
/// ```
/// assert_eq!(fencing_tower::status::CLIENT_CLOSED_REQUEST.as_u16(), 499);
/// ```
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
};

/// The default status of a cancelled request: the table of the
/// [module docs](self), read off the first reason that fired.
///
/// # Examples
///
/// ```
/// use fencing::Fencing;
/// use fencing_tower::status::{status_for, Stage};
/// use http::StatusCode;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let cancelled = Fencing::new()
///     .timeout(Duration::from_secs(1))
///     .code("budget")
///     .run(std::future::pending::<()>())
///     .await
///     .unwrap_err();
/// assert_eq!(status_for(&cancelled, Stage::Handler), StatusCode::GATEWAY_TIMEOUT);
/// assert_eq!(status_for(&cancelled, Stage::RequestBody), StatusCode::REQUEST_TIMEOUT);
/// # }
/// ```
#[must_use]
pub fn status_for(cancelled: &Cancelled, stage: Stage) -> StatusCode {
    let first = cancelled.reason();
    if first.has_code(codes::CLIENT_DISCONNECTED) {
        CLIENT_CLOSED_REQUEST
    } else if first.kind().is_time() {
        match stage {
            Stage::RequestBody => StatusCode::REQUEST_TIMEOUT,
            Stage::Handler | Stage::ResponseBody => StatusCode::GATEWAY_TIMEOUT,
        }
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
