//! Which gRPC status a cancellation becomes, on both sides of a call.
//!
//! A cancelled call is answered (by the [server layer](crate::server)) or
//! fails (in the [client layer](crate::client)) with a [`Status`] whose
//! code comes from the first reason that fired:
//!
//! | first reason | code | message |
//! |---|---|---|
//! | a time reason: the caller's deadline (`deadline`), the server's own budget (`budget`), any timeout or deadline declared in the handler | `DEADLINE_EXCEEDED` | the reasons, `cancelled: deadline: timed out after 95ms` |
//! | `shutdown` (the server's [`Drain`](crate::Drain)) | `UNAVAILABLE` | the reasons |
//! | `client_disconnected` | `CANCELLED` | the reasons; on a server, nothing is sent: the client is gone |
//! | anything else: a token, a signal, a future, your own codes | `CANCELLED` | the reasons |
//!
//! When several reasons fired (in the same poll, or during a grace
//! period), the first is the one that stopped the call. To answer by a
//! priority of codes instead, give
//! [`GrpcFenceLayer::status`](crate::server::GrpcFenceLayer::status) a
//! function that reads
//! [`Cancelled::reason_by_priority`](fencing::Cancelled::reason_by_priority).
//!
//! The [`Status`] holds the [`Cancelled`] as its
//! [source](std::error::Error::source), so the codes stay readable after
//! the conversion: `status.source().and_then(|e| e.downcast_ref::<Cancelled>())`.
//!
//! # Differences from tonic
//!
//! tonic's own timeouts (`Server::timeout`, `Endpoint::timeout`, the
//! `grpc-timeout` header its transport enforces) report expiry as
//! `CANCELLED` with the message `Timeout expired` (`TimeoutExpired` in
//! `tonic::Status::from_error`). This table deliberately says
//! `DEADLINE_EXCEEDED` instead, as gRPC's core libraries and grpc-go do:
//! `CANCELLED` means "the caller gave up", and a client that retries on
//! `DEADLINE_EXCEEDED` but not on `CANCELLED` (or the reverse) must be able
//! to tell them apart. The [client layer](crate::client) also turns a
//! `CANCELLED` that tonic reports once the caller's deadline has passed
//! into `DEADLINE_EXCEEDED`.
//!
//! A shutdown is `UNAVAILABLE`, the code gRPC's own servers use when they
//! go away: it tells the client to retry elsewhere.
//!
//! # Examples
//!
//! ```
//! use fencing::Fencing;
//! use fencing_tonic::status::status_for;
//! use std::time::Duration;
//! use tonic::Code;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let cancelled = Fencing::new()
//!     .timeout(Duration::from_millis(250))
//!     .code("deadline")
//!     .run(std::future::pending::<()>())
//!     .await
//!     .unwrap_err();
//! let status = status_for(&cancelled);
//! assert_eq!(status.code(), Code::DeadlineExceeded);
//! assert_eq!(status.message(), "cancelled: deadline: timed out after 250ms");
//! # }
//! ```

use crate::codes;
use fencing::Cancelled;
use http::StatusCode;
use std::sync::Arc;
use tonic::{Code, Status};

/// The code of the default table (see the [module docs](self)) for
/// `cancelled`, read off its first reason.
///
/// # Examples
///
/// ```
/// use fencing::{Fencing, Token};
/// use fencing_tonic::status::code_for;
/// use tonic::Code;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// shutdown.cancel_with("server shutting down");
/// let cancelled = Fencing::new()
///     .token(&shutdown)
///     .code("shutdown")
///     .run(async {})
///     .await
///     .unwrap_err();
/// assert_eq!(code_for(&cancelled), Code::Unavailable);
/// # }
/// ```
#[must_use]
pub fn code_for(cancelled: &Cancelled) -> Code {
    let first = cancelled.reason();
    if first.has_code(codes::CLIENT_DISCONNECTED) {
        Code::Cancelled
    } else if first.kind().is_time() {
        Code::DeadlineExceeded
    } else if first.has_code(codes::SHUTDOWN) {
        Code::Unavailable
    } else {
        Code::Cancelled
    }
}

/// The [`Status`] of the default table (see the [module docs](self)) for
/// `cancelled`: the code of [`code_for`], the reasons as the message, and
/// the `Cancelled` itself as the source.
///
/// # Examples
///
/// ```
/// use fencing::{Cancelled, Fencing, Token};
/// use fencing_tonic::status::status_for;
/// use std::error::Error;
/// use tonic::Code;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let maintenance = Token::new();
/// maintenance.cancel_with("rolling restart");
/// let cancelled = Fencing::new()
///     .token(&maintenance)
///     .code("maintenance")
///     .run(async {})
///     .await
///     .unwrap_err();
///
/// let status = status_for(&cancelled);
/// assert_eq!(status.code(), Code::Cancelled);
/// assert_eq!(status.message(), "cancelled: maintenance: rolling restart");
/// let source = status.source().unwrap().downcast_ref::<Cancelled>().unwrap();
/// assert!(source.cancelled_by("maintenance"));
/// # }
/// ```
#[must_use]
pub fn status_for(cancelled: &Cancelled) -> Status {
    let mut status = Status::new(code_for(cancelled), cancelled.to_string());
    status.set_source(Arc::new(cancelled.clone()));
    status
}

/// The HTTP status a service that speaks HTTP to its own clients answers
/// with when a gRPC call it made failed with `code`: `504` for
/// `DEADLINE_EXCEEDED`, `503` for `UNAVAILABLE`, `499` for `CANCELLED`,
/// and so on, as in the mapping of `google.rpc.Code` (and grpc-gateway).
///
/// | code | HTTP |
/// |---|---|
/// | `OK` | `200` |
/// | `CANCELLED` | `499` (client closed request) |
/// | `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `OUT_OF_RANGE` | `400` |
/// | `UNAUTHENTICATED` | `401` |
/// | `PERMISSION_DENIED` | `403` |
/// | `NOT_FOUND` | `404` |
/// | `ALREADY_EXISTS`, `ABORTED` | `409` |
/// | `RESOURCE_EXHAUSTED` | `429` |
/// | `UNIMPLEMENTED` | `501` |
/// | `UNAVAILABLE` | `503` |
/// | `DEADLINE_EXCEEDED` | `504` |
/// | `UNKNOWN`, `INTERNAL`, `DATA_LOSS` | `500` |
///
/// # Examples
///
/// ```
/// use fencing_tonic::status::http_status_for;
/// use http::StatusCode;
/// use tonic::Code;
///
/// assert_eq!(http_status_for(Code::DeadlineExceeded), StatusCode::GATEWAY_TIMEOUT);
/// assert_eq!(http_status_for(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(http_status_for(Code::Cancelled).as_u16(), 499);
/// ```
#[must_use]
pub fn http_status_for(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => fencing_tower::status::CLIENT_CLOSED_REQUEST,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
