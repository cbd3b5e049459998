//! Multi-reason cancellation for async Rust on tokio: declare every reason
//! work may be stopped for once, fence the interruptible part, and know
//! afterwards which trigger fired, by a code.
//!
//! Today a request handler that must stop on a budget, on shutdown, or when
//! the client goes away writes a `select!` and loses track of why it stopped
//! the moment it returns:
//!
//! ```
//! # use std::time::Duration;
//! # use tokio_util::sync::CancellationToken;
//! # async fn fetch() -> u32 { 1 }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! # let shutdown = CancellationToken::new();
//! let result = tokio::select! {
//!     biased;
//!     v = fetch() => Some(v),
//!     _ = shutdown.cancelled() => None,                      // why? the caller
//!     _ = tokio::time::sleep(Duration::from_secs(30)) => None, // cannot tell
//! };
//! # assert_eq!(result, Some(1));
//! # }
//! ```
//!
//! With fencing the triggers are declared once, each with a code, and the
//! fence reports every one that fired:
//!
//! ```
//! use fencing::{Fencing, Token};
//! use std::time::Duration;
//!
//! # async fn fetch() -> u32 { tokio::time::sleep(Duration::from_secs(60)).await; 1 }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let shutdown = Token::new();
//! let fencing = Fencing::new()
//!     .timeout(Duration::from_secs(30))
//!     .code("budget")
//!     .token(&shutdown)
//!     .code("shutdown");
//!
//! match fencing.run(fetch()).await {
//!     Ok(v) => println!("got {v}"),
//!     Err(cancelled) if cancelled.cancelled_by("shutdown") => println!("draining"),
//!     Err(cancelled) => {
//!         assert!(cancelled.cancelled_by("budget"));
//!         assert_eq!(cancelled.to_string(), "cancelled: budget: timed out after 30s");
//!     }
//! }
//! # }
//! ```
//!
//! The pieces:
//!
//! - [`Fencing`]: an immutable, cheap-to-clone declaration of triggers. Every
//!   builder step adds one; [`Fencing::code`] labels the one before it;
//!   [`Fencing::or`] joins two built apart.
//! - [`Fenced`]: the fence, a named future returned by [`Fencing::run`]. It
//!   resolves to `Result<T, Cancelled>`.
//! - [`Cancelled`]: the error, holding every [`Reason`] that fired, in
//!   firing order, asked with [`Cancelled::cancelled_by`] and `is_*`.
//! - [`Token`]: the manual trigger, cancelled with a message from any thread,
//!   in a tree of parents and children.
//! - The context: [`Fencing::bind`] makes a `Fencing` the context of a
//!   future without cancelling anything, and a fence binds its own to its
//!   body; [`current`] reads it from any depth, so inner code derives
//!   (`current().timeout(d).code("db")`) instead of taking tokens and
//!   deadlines as parameters. [`spawn`] and [`spawn_blocking`] carry it into
//!   new tasks (`tokio::spawn` does not); [`detach`] runs work without it.
//! - [`protect`]: a guard that defers a fence's hard cancel over a commit
//!   point; [`Fencing::grace`] and [`Fencing::grace_for`]: a two-phase
//!   cancel, fence-wide or per code; [`shield`]: work that
//!   finishes even when its caller is dropped; [`FenceHandle`]: cancel a
//!   running fence or move its deadline from outside.
//!
//! The [`guide`] says which of these to reach for; [`bad_input`] lists
//! what every odd input does; [`design`] gives the rules the crate keeps,
//! each a contract with tests named after it, and why.
//!
//! # Triggers
//!
//! | trigger | declared with | reason kind | message |
//! |---|---|---|---|
//! | relative timeout | [`Fencing::timeout`] | [`ReasonKind::Timeout`] | `timed out after 5s` |
//! | absolute deadline | [`Fencing::deadline`] | [`ReasonKind::Deadline`] | `deadline exceeded` |
//! | token | [`Fencing::token`] | [`ReasonKind::Token`] | the token's message |
//! | any future | [`Fencing::future`], [`Fencing::future_with`] | [`ReasonKind::Future`] | `trigger future completed`; the message given |
//! | a fence handle | [`Fencing::handle`] | [`ReasonKind::Token`] or a time kind | the handle's message, or as for time |
//! | OS signal (`signal`) | [`Fencing::signal`] | [`ReasonKind::Signal`] | `received SIGTERM` |
//! | polled condition | [`Fencing::condition`], [`Fencing::condition_async`] | [`ReasonKind::Condition`] | `condition met` |
//! | all of several | [`Fencing::all_of`] | [`ReasonKind::AllOf`] | `all of: …` naming each part |
//! | tokio-util token (`tokio-util`) | [`Fencing::cancellation_token`] | [`ReasonKind::Token`] | `cancellation token cancelled` |
//!
//! A [`policy`](Fencing::policy) may decline fired reasons; a [`Registry`]
//! lists running fences, with the progress their bodies report
//! ([`report_progress`]), and cancels them by id or name; [`Token::on_cancel`]
//! runs a callback when a token is cancelled.
//!
//! Time triggers merge: the tightest wins, together with its code; a
//! relative timeout is anchored when declared; an overflowing duration means
//! "no deadline" and a deadline in the past means "already fired". Other
//! triggers never merge: a token declared under two codes reports both
//! (declared twice under one code, it is one trigger). All time is tokio's,
//! so tests run on a paused clock.
//!
//! # Features
//!
//! The core depends on `tokio` (with its `time` feature) and
//! `pin-project-lite` only.
//!
//! - `rt` (default): [`spawn`], [`spawn_blocking`] and [`shield`], which
//!   carry the context into new tasks; enables `tokio/rt`.
//! - `signal`: [`Fencing::signal`] and the two-step [`Shutdown`] helper, on
//!   tokio's signal driver; enables `tokio/signal` and `rt`.
//! - `tokio-util`: [`Fencing::cancellation_token`] takes a tokio-util
//!   `CancellationToken` as a trigger, and [`Token::to_cancellation_token`]
//!   hands one out, so code written against tokio-util joins in.
//! - `tracing`: when a fence cancels its body, one `DEBUG` event per reason,
//!   with the fields `kind`, `code` and `message`, in the current span
//!   (target `fencing::fence`); a `WARN` event for each fault, user code
//!   the fence went on without ([`Fenced::faults`]), with the fields `code`
//!   and `error`; and one `DEBUG` event per [`report_progress`], its message
//!   the progress message (target `fencing::progress`). Nothing is emitted
//!   without the feature.
//! - `stream`: [`Fencing::stream`] runs a `futures_core::Stream` inside a
//!   fence ([`FencedStream`]); adds the `futures-core` dependency.
//! - `test-util`: `__live_counts()`, the process-wide numbers of live token
//!   nodes, waiters and fence timers, for leak checks (not covered by
//!   semver).
//!
//! # Cancel safety
//!
//! Dropping a [`Fenced`] future drops its body and releases every timer and
//! waiter it registered; it is as cancel safe as the body. When a trigger
//! fires while the body is pending, the fence drops the body within that
//! poll, so the body's destructors have run when the `Err` is returned.
//!
//! When the body and a trigger are ready in the same poll, the body wins:
//! it is always polled first, as in [`tokio::time::timeout`]. The trigger is
//! still recorded, and [`Fenced::is_cancelled`] tells so. Reasons found in
//! the same poll are ordered deadline first, then the other triggers in
//! declaration order. [`Token::cancelled`] is cancel safe.
//!
//! Code of yours that the crate calls runs with no lock of the crate held:
//! a [policy](Fencing::policy), a [condition](Fencing::condition)'s
//! predicate, a trigger future, an [on-cancel hook](Token::on_cancel), the
//! predicate of [`Registry::cancel_matching`], and wakers when they are
//! woken or dropped (they are only cloned under a lock). So each may use the
//! crate freely: cancel tokens, read or cancel through a registry, drop
//! fences.
//!
//! When such code fails, what happens depends on where it runs. A policy
//! that panics, and a condition check that returns `Err` or panics, run
//! inside a fence: the fence goes on without their answer (the reason is
//! accepted; the condition keeps polling, unless declared with
//! [`Fencing::condition_fail_fast`]) and counts a fault
//! ([`Fenced::faults`]), so one bug does not end the request. A trigger
//! future, a hook and a waker that panic pass the panic on, to the fence
//! that polled the future or to the code that cancelled (once the cancel
//! is complete); a body that panics does too (rule 20).
//!
//! # Stability
//!
//! Not covered by semver: the wording of `Display` output and of built-in
//! messages, and items marked `#[doc(hidden)]` whose names start with `__`
//! (test and debugging aids).
// Links to items behind a feature: to the item when it is there, else to
// the `# Features` section that says how to get it (no broken links in any
// feature set, and no blanket allow of them).
#![doc = ""]
#![cfg_attr(feature = "rt", doc = "[`spawn`]: crate::spawn")]
#![cfg_attr(not(feature = "rt"), doc = "[`spawn`]: #features")]
#![cfg_attr(feature = "rt", doc = "[`spawn_blocking`]: crate::spawn_blocking")]
#![cfg_attr(not(feature = "rt"), doc = "[`spawn_blocking`]: #features")]
#![cfg_attr(feature = "rt", doc = "[`shield`]: crate::shield")]
#![cfg_attr(not(feature = "rt"), doc = "[`shield`]: #features")]
#![cfg_attr(
    feature = "signal",
    doc = "[`Fencing::signal`]: crate::Fencing::signal"
)]
#![cfg_attr(not(feature = "signal"), doc = "[`Fencing::signal`]: #features")]
#![cfg_attr(feature = "signal", doc = "[`Shutdown`]: crate::Shutdown")]
#![cfg_attr(not(feature = "signal"), doc = "[`Shutdown`]: #features")]
#![cfg_attr(
    feature = "tokio-util",
    doc = "[`Fencing::cancellation_token`]: crate::Fencing::cancellation_token"
)]
#![cfg_attr(
    not(feature = "tokio-util"),
    doc = "[`Fencing::cancellation_token`]: #features"
)]
#![cfg_attr(
    feature = "tokio-util",
    doc = "[`Token::to_cancellation_token`]: crate::Token::to_cancellation_token"
)]
#![cfg_attr(
    not(feature = "tokio-util"),
    doc = "[`Token::to_cancellation_token`]: #features"
)]
#![cfg_attr(
    feature = "stream",
    doc = "[`Fencing::stream`]: crate::Fencing::stream"
)]
#![cfg_attr(not(feature = "stream"), doc = "[`Fencing::stream`]: #features")]
#![cfg_attr(feature = "stream", doc = "[`FencedStream`]: crate::FencedStream")]
#![cfg_attr(not(feature = "stream"), doc = "[`FencedStream`]: #features")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(
    no_crate_inject,
    attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))
))]

mod context;
mod debug;
mod declaration;
#[doc = include_str!("../docs/guide.md")]
#[doc = ""]
#[cfg_attr(feature = "rt", doc = "[shield]: crate::shield")]
#[cfg_attr(not(feature = "rt"), doc = "[shield]: crate#features")]
#[cfg_attr(feature = "rt", doc = "[spawn]: crate::spawn")]
#[cfg_attr(not(feature = "rt"), doc = "[spawn]: crate#features")]
#[cfg_attr(feature = "rt", doc = "[spawn_blocking]: crate::spawn_blocking")]
#[cfg_attr(not(feature = "rt"), doc = "[spawn_blocking]: crate#features")]
#[cfg_attr(feature = "signal", doc = "[Shutdown]: crate::Shutdown")]
#[cfg_attr(not(feature = "signal"), doc = "[Shutdown]: crate#features")]
pub mod guide {}
#[doc = include_str!("../docs/bad_input.md")]
pub mod bad_input {}
// The same file the repository's README links to, so the rules read the
// same on docs.rs and on the forge, with no address of either to go stale.
#[doc = include_str!("../docs/design.md")]
pub mod design {}
mod error;
mod ext;
mod fault;
mod fence;
mod fencing;
mod handle;
mod loom;
mod protect;
mod reason;
mod registry;
mod slab;
mod sync;
#[cfg(feature = "rt")]
mod task;
mod time;
mod token;
mod trigger;

pub use crate::context::{current, detach, report_progress, BoundFuture};
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub use crate::debug::{__live_counts, LiveCounts};
pub use crate::declaration::Fencing;
pub use crate::error::Cancelled;
pub use crate::ext::FenceExt;
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub use crate::fence::FencedStream;
pub use crate::fence::{Fenced, WaitForFencingFuture};
pub use crate::handle::FenceHandle;
pub use crate::protect::{protect, ProtectGuard};
pub use crate::reason::{Code, Message, Reason, ReasonKind};
pub use crate::registry::{OperationId, OperationInfo, Progress, Registry};
#[cfg(feature = "rt")]
#[cfg_attr(docsrs, doc(cfg(feature = "rt")))]
pub use crate::task::{shield, spawn, spawn_blocking, Shielded};
pub use crate::token::{
    DropGuard, DropGuardRef, OnCancel, Token, WaitForCancellationFuture,
    WaitForCancellationFutureOwned,
};
pub use crate::trigger::Verdict;
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub use crate::trigger::{OsSignal, Shutdown};
