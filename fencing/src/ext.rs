//! [`FenceExt`]: fencing as methods on any future.

use crate::context::current;
use crate::declaration::Fencing;
use crate::fence::Fenced;
use crate::reason::Code;
use std::future::IntoFuture;
use std::time::Duration;

/// Fencing as methods on any future, so call sites read naturally. Every
/// method only delegates to the inherent API ([`Fencing::run`]).
///
/// # Examples
///
/// ```
/// use fencing::{FenceExt, Fencing, Token};
/// use std::time::Duration;
///
/// # async fn fetch() -> u32 { tokio::time::sleep(Duration::from_secs(9)).await; 1 }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let err = fetch().fenced_timeout(Duration::from_secs(5), "db").await.unwrap_err();
/// assert!(err.cancelled_by("db"));
///
/// let shutdown = Token::new();
/// let request = Fencing::new().token(&shutdown).code("shutdown");
/// assert_eq!(async { 2 }.fenced(request).await.unwrap(), 2);
/// # }
/// ```
pub trait FenceExt: IntoFuture + Sized {
    /// Runs this future inside a fence of `fencing`: `fencing.run(self)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{FenceExt, Fencing, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// shutdown.cancel();
    /// let err = async { 1 }
    ///     .fenced(Fencing::new().token(&shutdown).code("shutdown"))
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.cancelled_by("shutdown"));
    /// # }
    /// ```
    fn fenced(self, fencing: Fencing) -> Fenced<Self::IntoFuture> {
        fencing.run(self)
    }

    /// Runs this future inside a fence of the current context plus a
    /// timeout with `code`: `current().timeout(after).code(code).run(self)`.
    ///
    /// Like every derivation it keeps the caller's triggers, so inner code
    /// that uses it still stops on the caller's budget and shutdown, and
    /// sees them first (DESIGN rule 12). Named apart from tokio-util's
    /// `FutureExt::timeout`, which a `use` of both would otherwise clash with.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{FenceExt, Fencing, Token};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// shutdown.cancel_with("SIGTERM");
    /// let request = Fencing::new().token(&shutdown).code("shutdown");
    /// let err = request
    ///     .bind(async {
    ///         // Called inside the binding, so it derives from it.
    ///         async { 7 }.fenced_timeout(Duration::from_secs(5), "db").await
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.cancelled_by("shutdown"), "the caller's shutdown still applies");
    /// # }
    /// ```
    fn fenced_timeout(self, after: Duration, code: impl Into<Code>) -> Fenced<Self::IntoFuture> {
        current().timeout(after).code(code).run(self)
    }
}

impl<F: IntoFuture> FenceExt for F {}
