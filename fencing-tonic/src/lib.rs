//! fencing for tonic gRPC services: the caller's deadline reaches every
//! call a handler makes, shrunk by the time spent, and expiry is
//! `DEADLINE_EXCEEDED` at every hop.
//!
//! gRPC's core libraries propagate a deadline by themselves: a server's
//! incoming deadline applies to every call it makes, and expiry is
//! `DEADLINE_EXCEEDED` everywhere. tonic does not: a handler cannot read
//! its deadline, `Request::new` takes none, tonic's own timers report
//! expiry as `CANCELLED` ("Timeout expired"), its encoder truncates
//! `grpc-timeout`, and response streams outlive the deadline. Written by
//! hand, a handler that passes its deadline on looks like this, and still
//! gets most of it wrong:
//!
//! ```
//! # use std::time::Duration;
//! # fn parse_grpc_timeout(_: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>) -> Option<Duration> { None }
//! # async fn call_next(_: tonic::Request<()>) -> Result<(), tonic::Status> { Ok(()) }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tonic::Status> {
//! # let request = tonic::Request::new(());
//! // Parse the header yourself (tonic does not say what it holds), ...
//! let received = tokio::time::Instant::now();
//! let budget = request.metadata().get("grpc-timeout").and_then(parse_grpc_timeout);
//! // ... pass what is left to every call, by hand ...
//! let mut next = tonic::Request::new(());
//! if let Some(budget) = budget {
//!     next.set_timeout(budget.saturating_sub(received.elapsed())); // truncated on the wire
//! }
//! // ... and hope the caller can tell "too slow" from "cancelled".
//! call_next(next).await?; // CANCELLED "Timeout expired" on expiry
//! # Ok(())
//! # }
//! ```
//!
//! With this crate, one layer on the server and one on each client do it,
//! and handlers need no tonic-specific call:
//!
//! - [`server::GrpcFenceLayer`] makes each call's deadline (`grpc-timeout`,
//!   anchored on receipt, capped by the server's own budget), the server's
//!   shutdown and the client going away the handler's context, readable
//!   anywhere below with [`fencing::current()`]; answers a call stopped by
//!   one of them trailers-only, with its `grpc-status`; answers a spent
//!   budget without calling the handler; and ends response streams at the
//!   deadline with trailers carrying `DEADLINE_EXCEEDED`.
//! - [`client::PropagateDeadline`] sends what is left of the caller's
//!   budget with every call (rounded up, as grpc-go does), refuses to send
//!   a spent one, holds the call and its response stream to it, and
//!   reports expiry as `DEADLINE_EXCEEDED`, tonic's own `CANCELLED`
//!   included.
//! - [`status`] is the table of which reason becomes which code.
//!
//! # Setup
//!
//! One line on the server, one on each client:
//!
//! ```
//! use fencing_tonic::client::PropagateDeadlineLayer;
//! use fencing_tonic::server::GrpcFenceLayer;
//! use std::time::Duration;
//! use tonic_health::pb::health_client::HealthClient;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Every call: its caller's deadline, and at most 30 s.
//! let server = tonic::transport::Server::builder()
//!     .layer(GrpcFenceLayer::new().budget(Duration::from_secs(30)));
//!
//! // Every call of this client: what is left of its caller's deadline.
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
//! let next_hop = HealthClient::new(
//!     ServiceBuilder::new()
//!         .layer(PropagateDeadlineLayer::new())
//!         .service(channel),
//! );
//! # let _ = (server, next_hop);
//! # }
//! ```
//!
//! For tonic [`Routes`] served by axum or hyper, put the same layer on the
//! router (`routes.into_axum_router().layer(GrpcFenceLayer::new())`).
//!
//! # A handler
//!
//! The handler reads its deadline and its remaining budget, derives a
//! tighter timeout for one step, spawns a helper that keeps its context,
//! and calls the next hop, which is sent what is left; none of it takes a
//! deadline as a parameter:
//!
//! ```
//! use fencing::current;
//! use fencing_tonic::client::PropagateDeadline;
//! use fencing_tonic::status::status_for;
//! use std::time::Duration;
//! use tonic::transport::Channel;
//! use tonic::{Request, Response, Status};
//! use tonic_health::pb::health_client::HealthClient;
//! use tonic_health::pb::health_server::Health;
//! use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
//!
//! struct Frontend {
//!     backend: HealthClient<PropagateDeadline<Channel>>,
//! }
//!
//! #[tonic::async_trait]
//! impl Health for Frontend {
//!     async fn check(&self, request: Request<HealthCheckRequest>)
//!         -> Result<Response<HealthCheckResponse>, Status>
//!     {
//!         // The caller's deadline, less the server's margin.
//!         let deadline = current().effective_deadline();
//!         let left = current().remaining();
//!
//!         // At most 50 ms for the cache, and never past the deadline.
//!         let cached = current()
//!             .timeout(Duration::from_millis(50))
//!             .code("cache")
//!             .run(async { None::<HealthCheckResponse> })
//!             .await;
//!         if let Ok(Some(hit)) = cached {
//!             return Ok(Response::new(hit));
//!         }
//!
//!         // A helper task that keeps the call's context (tokio::spawn
//!         // would not).
//!         let warm = fencing::spawn(async { current().remaining() });
//!         let _ = warm.await;
//!
//!         // The next hop is sent what is left, and holds to it.
//!         let reply = self.backend.clone().check(request.into_inner()).await?;
//!
//!         // A step of our own, stopped like the rest, and answered by the
//!         // status table if it is.
//!         current()
//!             .run(tokio::task::yield_now())
//!             .await
//!             .map_err(|cancelled| status_for(&cancelled))?;
//!         Ok(reply)
//!     }
//!     # type WatchStream = tokio_stream::Pending<Result<HealthCheckResponse, Status>>;
//!     # async fn watch(&self, _: Request<HealthCheckRequest>)
//!     #     -> Result<Response<Self::WatchStream>, Status> { unimplemented!() }
//! }
//! ```
//!
//! `cargo run -p fencing-tonic --example chain` runs three hops (an axum
//! front and two tonic services) and prints, per hop, the budget it
//! received and what it answered.
//!
//! # Codes
//!
//! The triggers the layers declare carry the codes in [`codes`]
//! (`deadline` for the caller's `grpc-timeout`, `budget` for the server's
//! own, `shutdown`, `client_disconnected`); ask a
//! [`Cancelled`](fencing::Cancelled) with `cancelled_by`. A
//! [`Status`](tonic::Status) made by this crate holds the `Cancelled` as its
//! source.
//!
//! # Features
//!
//! None. tonic is used without its default features (only `Status`,
//! `Code`, metadata and `GrpcMethod`); the transport (`Server`, `Channel`)
//! is yours, and so are its features.
//!
//! # Cancel safety
//!
//! A fenced handler is dropped within the poll in which a trigger fires
//! (after its grace period, if it has one, and never inside a
//! [`protect`](fencing::protect) section), as tonic's own timer would drop
//! it; a handler is as cancel safe as its own code. A call from the client
//! layer is abandoned when dropped, as tonic's would be, and tonic resets
//! its stream. When a response and a trigger are ready in the same poll,
//! the response wins.
//!
//! # Stability
//!
//! Not covered by semver: the wording of `grpc-message`s and of `Display`
//! output, and [`server::DEFAULT_MARGIN`]'s value (a minor release may
//! change it). tonic's 0.x releases are this crate's public dependency:
//! a new tonic minor version is a new minor version of this crate; it is
//! never one of `fencing-tower`, which does not depend on tonic.
//!
//! [`Routes`]: https://docs.rs/tonic/0.14/tonic/service/struct.Routes.html
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(
    no_crate_inject,
    attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))
))]

pub mod client;
pub mod server;
pub mod status;

pub use fencing_tower::codes;
pub use fencing_tower::Drain;
