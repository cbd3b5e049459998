//! [`FenceExt`]: fencing as methods on any future.

use crate::fence::Fenced;
use crate::fencing::{on_timeout, Fencing};
use crate::reason::Code;
use std::future::IntoFuture;
use std::time::Duration;

/// Fencing as methods on any future, so call sites read naturally. Every
/// method only delegates to the inherent API ([`Fencing::run`]).
///
/// # Examples
///
/// ```
/// use fencing::{on_timeout, FenceExt};
/// use std::time::Duration;
///
/// # async fn fetch() -> u32 { tokio::time::sleep(Duration::from_secs(9)).await; 1 }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let err = fetch().timeout(Duration::from_secs(5), "db").await.unwrap_err();
/// assert!(err.cancelled_by("db"));
///
/// let budget = on_timeout(Duration::from_secs(30)).code("budget");
/// assert_eq!(async { 2 }.fenced(budget).await.unwrap(), 2);
/// # }
/// ```
pub trait FenceExt: IntoFuture + Sized {
    /// Runs this future inside a fence of `fencing`: `fencing.run(self)`.
    fn fenced(self, fencing: Fencing) -> Fenced<Self::IntoFuture> {
        fencing.run(self)
    }

    /// Runs this future under a one-off timeout with `code`:
    /// `on_timeout(after).code(code).run(self)`.
    fn timeout(self, after: Duration, code: impl Into<Code>) -> Fenced<Self::IntoFuture> {
        on_timeout(after).code(code).run(self)
    }
}

impl<F: IntoFuture> FenceExt for F {}
