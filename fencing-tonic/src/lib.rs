//! fencing for tonic gRPC services: the caller's deadline reaches every
//! call a handler makes, shrunk by the time spent, and expiry is
//! `DEADLINE_EXCEEDED` at every hop.
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
