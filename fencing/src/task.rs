//! Spawning with the current context.
//!
//! tokio's task-locals, and so fencing's context, do not follow
//! `tokio::spawn`: these helpers carry it over explicitly.

use crate::context::{current, enter_sync};
use std::future::Future;
use tokio::task::JoinHandle;

/// Spawns `future` on the current tokio runtime with the current context
/// bound to it, so [`current`] inside the task sees the spawner's triggers.
///
/// Equivalent to `tokio::spawn(current().bind(future))`. For a `JoinSet` or a
/// `TaskTracker`, wrap the future the same way: `set.spawn(current().bind(fut))`.
///
/// # Examples
///
/// ```
/// use fencing::{current, Fencing};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let request = Fencing::new().timeout(Duration::from_secs(3));
/// let deadline = request.effective_deadline();
/// let seen = request
///     .bind(async { fencing::spawn(async { current().effective_deadline() }).await.unwrap() })
///     .await;
/// assert_eq!(seen, deadline, "the spawned task inherited the context");
///
/// // `tokio::spawn` does not carry it.
/// let lost = fencing::Fencing::new()
///     .timeout(Duration::from_secs(3))
///     .bind(async { tokio::spawn(async { current().effective_deadline() }).await.unwrap() })
///     .await;
/// assert_eq!(lost, None);
/// # }
/// ```
///
/// # Panics
///
/// Panics if called outside a tokio runtime, as [`tokio::spawn`] does.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(current().bind(future))
}

/// Runs a blocking closure on tokio's blocking pool with the current context,
/// so it can call [`current`] and poll `current().is_cancelled()` between
/// steps of its work.
///
/// # Examples
///
/// ```
/// use fencing::{current, Token};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let stop = Token::new();
/// let steps = fencing::on_token(&stop)
///     .bind(async {
///         stop.cancel();
///         fencing::spawn_blocking(|| {
///             let mut steps = 0;
///             while !current().is_cancelled() {
///                 steps += 1;
///             }
///             steps
///         })
///         .await
///         .unwrap()
///     })
///     .await;
/// assert_eq!(steps, 0);
/// # }
/// ```
///
/// # Panics
///
/// Panics if called outside a tokio runtime, as [`tokio::task::spawn_blocking`] does.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let fencing = current();
    tokio::task::spawn_blocking(move || enter_sync(fencing, f))
}
