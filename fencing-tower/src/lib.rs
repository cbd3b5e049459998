//! fencing for tower HTTP services: request budgets in and out, a client
//! that hangs up as a reason the handler sees, and shutdown with grace.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(
    no_crate_inject,
    attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))
))]

pub mod client;
pub mod codec;

/// The error type of the layers' services: any error, boxed, as in tower.
///
/// A cancellation is a boxed [`fencing::Cancelled`], found with
/// `err.downcast_ref::<fencing::Cancelled>()`; an inner service's error is
/// passed through boxed as it was.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
