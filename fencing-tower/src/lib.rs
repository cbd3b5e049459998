//! fencing for tower HTTP services: request budgets in and out, a client
//! that hangs up as a reason the handler sees, and shutdown with grace.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(
    no_crate_inject,
    attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))
))]

pub mod codec;
