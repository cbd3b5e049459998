//! fencing for tower HTTP services: request budgets in and out, a client
//! that hangs up as a reason the handler sees, and shutdown with grace.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(
    no_crate_inject,
    attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))
))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod client;
pub mod codec;

/// The error type of the layers' services: any error, boxed, as in tower.
///
/// A cancellation is a boxed [`fencing::Cancelled`], found with
/// `err.downcast_ref::<fencing::Cancelled>()`; an inner service's error is
/// passed through boxed as it was.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub mod server;
pub mod status;

mod drain;
pub use drain::{Drain, DrainFuture, DrainReport, Draining};

/// The codes of the triggers the server layer declares, to ask a
/// [`Cancelled`](fencing::Cancelled) with `cancelled_by`.
pub mod codes {
    /// The server's own budget for a request
    /// ([`FenceLayer::budget`](crate::server::FenceLayer::budget)).
    pub const BUDGET: &str = "budget";
    /// The budget the request carried in a header.
    pub const DEADLINE: &str = "deadline";
    /// The server's shutdown ([`Drain`](crate::Drain)).
    pub const SHUTDOWN: &str = "shutdown";
    /// The client went away.
    pub const CLIENT_DISCONNECTED: &str = "client_disconnected";
}
