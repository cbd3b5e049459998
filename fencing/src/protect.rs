//! Protected sections: [`protect`] defers the hard cancel of every fence
//! whose body is being polled where it is taken. The stack of those fences'
//! protection scopes lives in the context's thread-local (a fence pushes its
//! own while its body is polled); here are the guards that count themselves
//! in it.

use crate::context::{self, Scope};
use std::sync::Arc;

/// Takes a protection guard: until it is dropped, no enclosing fence drops
/// its body. Triggers that fire meanwhile are recorded; the fence drops the
/// body at its first poll after the last guard is released, unless the body
/// has completed by then (then the fence returns its value and still reports
/// the triggers as fired).
///
/// This is the commit point that drop-cancellation otherwise lacks, and
/// Rust's answer to cancel safety in `select!`: take a guard around a section
/// that must not be cut in half, such as a transaction that has begun
/// committing, or a streaming proxy draining the final usage frame. Guards
/// nest, may be held across `.await`s and are `Send`. The section should be
/// short: while it runs, the fence's triggers wait.
///
/// A guard protects every fence whose body is being polled where it is
/// taken, the innermost and all around it, since an outer fence dropping its
/// body would cut the section just the same. Outside any fence, and in a task
/// spawned from a fenced body, it protects nothing: such a task is not
/// dropped by the fence.
///
/// # Examples
///
/// ```
/// use fencing::{protect, Fencing, Token};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// let fencing = Fencing::new().token(&shutdown).code("shutdown");
///
/// let outcome = fencing
///     .run(async {
///         let commit = protect();
///         shutdown.cancel(); // fires mid-commit...
///         tokio::time::sleep(Duration::from_millis(5)).await;
///         drop(commit); // ...and is honoured only here
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         "never reached"
///     })
///     .await;
/// assert!(outcome.unwrap_err().cancelled_by("shutdown"));
/// # }
/// ```
#[must_use = "the section is protected only while the guard is alive"]
pub fn protect() -> ProtectGuard {
    ProtectGuard {
        scopes: context::guard_fences(),
    }
}

/// Defers the hard cancel of the enclosing fences while alive. Created by
/// [`protect`].
///
/// # Examples
///
/// A body that finishes while protected returns its value, and the fence
/// still reports what fired meanwhile:
///
/// ```
/// use fencing::{protect, Fencing, ProtectGuard, Token};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// let mut fenced = std::pin::pin!(Fencing::new().token(&shutdown).code("shutdown").run(async {
///     let _commit: ProtectGuard = protect();
///     shutdown.cancel();
///     tokio::time::sleep(Duration::from_millis(10)).await; // not cut here
///     "committed"
/// }));
/// assert_eq!((&mut fenced).await.unwrap(), "committed");
/// assert!(fenced.cancelled_by("shutdown"));
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the section is protected only while the guard is alive"]
pub struct ProtectGuard {
    scopes: Vec<Arc<Scope>>,
}

impl ProtectGuard {
    /// Returns `true` if the guard protects at least one fence, that is, if
    /// it was taken inside a fenced body.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(!fencing::protect().is_protecting(), "no fence here");
    /// let inside = fencing::Fencing::new()
    ///     .run(async { fencing::protect().is_protecting() })
    ///     .await
    ///     .unwrap();
    /// assert!(inside);
    /// # }
    /// ```
    #[must_use]
    pub fn is_protecting(&self) -> bool {
        !self.scopes.is_empty()
    }
}

impl Drop for ProtectGuard {
    fn drop(&mut self) {
        for scope in &self.scopes {
            scope.release();
        }
    }
}
