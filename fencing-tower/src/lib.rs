//! fencing for tower HTTP services: request budgets in and out, a client
//! that hangs up as a reason the handler sees, and shutdown with grace.
//!
//! An HTTP handler stops for many reasons: the server's budget for the
//! request, the budget the caller sent, the server shutting down, the
//! client hanging up. With tower and hyper alone, each is its own
//! mechanism, and the handler learns of none of them: `TimeoutLayer`
//! races a timer outside it, a shutdown token must be passed by hand, and
//! a client that hangs up simply drops the handler wherever it stands.
//! Written by hand, it looks like this, and still loses which one fired:
//!
//! ```
//! # use std::time::Duration;
//! # use tokio_util::sync::CancellationToken;
//! # async fn fetch_price() -> u32 { 42 }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! # let shutdown = CancellationToken::new();
//! # let budget = Duration::from_secs(10);
//! let price = tokio::select! {
//!     price = fetch_price() => Some(price),
//!     _ = shutdown.cancelled() => None,       // 503? 504? the caller
//!     _ = tokio::time::sleep(budget) => None, // cannot tell, nor can logs
//! };
//! # assert_eq!(price, Some(42));
//! # }
//! ```
//!
//! This crate gives every request a [`fencing`] context instead:
//!
//! - [`server::FenceLayer`] builds each request's `Fencing` from the
//!   server's own budget (code `budget`), the budget the request carries in
//!   its headers (`deadline`; it can only shorten the server's), the
//!   server's [`Drain`] (`shutdown`) and the client going away
//!   (`client_disconnected`), and runs the handler inside a fence of it:
//!   the handler reads it with [`fencing::current()`], derives tighter
//!   timeouts from it, sees every trigger by its code, and a cancelled
//!   request is answered by the [status table](status) (`504`, `408`,
//!   `503`; `499` reported for a client that left). With
//!   [`Disposition::Detach`](server::Disposition::Detach), a client that
//!   hangs up is a reason the handler sees and may finish after, within a
//!   grace period, instead of a drop mid-write.
//! - [`client::PropagateBudget`] sends what is left of the budget on, to
//!   the next service (`connect-timeout-ms`, `grpc-timeout`, rounded up),
//!   refuses to send a budget that is spent, and stops the call when it
//!   runs out, with the context's own reasons.
//! - [`Drain`] shuts the server down: every live request is told, has the
//!   grace period, and what is left is dropped; work shielded from a
//!   handler (`shield(drain.track_future(audit))`) is waited for within the
//!   same grace period; it composes with axum's and hyper-util's graceful
//!   shutdowns.
//! - [`codec`] reads and writes the budget headers, strictly and with
//!   rounding up, and never panics on what a header holds.
//!
//! # A complete service
//!
//! An axum service (feature `axum`) with a budget, a shutdown with grace,
//! a client that may hang up, an inner call with a tighter timeout of its
//! own, and a commit that must not be cut in half:
//!
#![cfg_attr(feature = "axum", doc = "```")]
#![cfg_attr(not(feature = "axum"), doc = "```ignore")]
//! use axum::{routing::get, Router};
//! use fencing::{current, protect};
//! use fencing_tower::axum::CancelledResponse;
//! use fencing_tower::server::{Disposition, FenceLayer};
//! use fencing_tower::Drain;
//! use std::future::IntoFuture;
//! use std::time::Duration;
//!
//! async fn checkout() -> Result<String, CancelledResponse> {
//!     // Inside the request's budget, and at most 2 s for this call.
//!     let price = current()
//!         .timeout(Duration::from_secs(2))
//!         .code("pricing")
//!         .run(async { 42 }) // a call to the next service
//!         .await?;
//!     // From here on, a client that hangs up or a shutdown waits for the
//!     // commit to finish.
//!     let _commit = protect();
//!     Ok(format!("charged {price}"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> std::io::Result<()> {
//! let drain = Drain::new(Duration::from_secs(10));
//! let app = Router::new().route("/checkout", get(checkout)).layer(
//!     FenceLayer::new()
//!         .budget(Duration::from_secs(30))
//!         .disposition(Disposition::Detach { grace: Duration::from_secs(2) })
//!         .drain(&drain),
//! );
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = axum::serve(listener, app).with_graceful_shutdown(drain.draining());
//! let server = tokio::spawn(server.into_future());
//!
//! // ... on SIGTERM:
//! let report = drain.shutdown().await;
//! println!("{} finished, {} dropped", report.finished(), report.dropped());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Codes
//!
//! The triggers the layers declare carry the codes in [`codes`]; ask a
//! [`Cancelled`](fencing::Cancelled) with
//! `cancelled_by(codes::SHUTDOWN)`. Triggers of your own, declared with
//! [`FenceLayer::fencing`](server::FenceLayer::fencing) or derived in the
//! handler, keep theirs.
//!
//! # Features
//!
//! - `axum`: the [`RequestContext`](server::RequestContext) extractor, a
//!   [`CancelledResponse`](crate::axum::CancelledResponse) that handlers
//!   return with `?`, and [`watch_axum_request_body`](server::FenceLayer::watch_axum_request_body);
//!   over `axum-core`, not `axum`.
//! - `reqwest`: the client layer for `reqwest::Client` (reqwest 0.13
//!   without default features, which needs Rust 1.85).
//!
//! # Cancel safety
//!
//! A fenced handler is dropped within the poll in which a trigger fires
//! (after its grace period, if it has one, and never inside a
//! [`protect`](fencing::protect) section), exactly as hyper drops a
//! handler whose client left; a handler is as cancel safe as its own code.
//! When the handler's response and a trigger are ready in the same poll,
//! the response wins. Dropping a server future is the client going away
//! (see [`server`]).
//!
//! # Stability
//!
//! Not covered by semver: the wording of `Display` output and of the
//! messages of the layers' reasons, and the `tracing` events' fields.
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
pub use drain::{Drain, DrainFuture, DrainReport, Draining, TrackedFuture};

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
