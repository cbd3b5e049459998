//! Spawning with the current context.
//!
//! tokio's task-locals, and so fencing's context, do not follow
//! `tokio::spawn`: these helpers carry it over explicitly.

use crate::context::{current, enter_sync};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;

/// Spawns `future` on the current tokio runtime with the current context
/// bound to it, so [`current`] inside the task sees the spawner's triggers.
///
/// Equivalent to `tokio::spawn(current().bind(future))`. For a `JoinSet` or a
/// `TaskTracker`, wrap the future the same way: `set.spawn(current().bind(fut))`.
///
/// The task is a tokio task like any other: when the runtime shuts down (when
/// `main` returns), it is dropped wherever it is. Work that must be waited
/// for at exit is tracked, `fencing::spawn(tracker.track_future(fut))`, as
/// [`shield`] shows.
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
#[cfg_attr(docsrs, doc(cfg(feature = "rt")))]
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
/// let steps = fencing::Fencing::new()
///     .token(&stop)
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
#[cfg_attr(docsrs, doc(cfg(feature = "rt")))]
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let fencing = current();
    tokio::task::spawn_blocking(move || enter_sync(fencing, f))
}

/// Runs `future` to completion even if the code awaiting it is dropped: it
/// is spawned as a task of its own, so a fence around the caller that drops
/// the caller does not drop the shielded work. The task runs with the current
/// context, so inner code still sees the deadline and the triggers (a fence
/// derived inside it fires as usual); shield a [`detach`](crate::detach)ed
/// future to keep nothing of them.
///
/// The returned [`Shielded`] resolves to the output. If the caller was
/// dropped first, the output has nowhere to go: it is dropped in the task
/// when the work finishes, and nothing is reported. Work whose result must
/// not be lost sends it somewhere itself (a channel, a store), as below.
///
/// # At exit
///
/// Shielded work is safe from the fence around its caller, not from the
/// process's exit: its task, like any tokio task, is dropped wherever it is
/// when the runtime shuts down, which is when `main` returns. A client that
/// hangs up, then a SIGTERM a moment later, loses an audit write shielded
/// in between unless the exit waits for it. So track the work, with
/// tokio-util's [`TaskTracker`](https://docs.rs/tokio-util/latest/tokio_util/task/task_tracker/struct.TaskTracker.html):
/// `shield(tracker.track_future(work))`, and at exit close the tracker and
/// wait for it, bounded (a timeout, or the hard token of a
/// `Shutdown`): what is still running when the bound is reached is
/// `tracker.len()`, to log, and is dropped when `main` returns. In a server
/// behind fencing-tower, `shield(drain.track_future(work))` makes the
/// server's `Drain` wait for it, within its grace period.
///
/// # Examples
///
/// ```
/// use fencing::{shield, Fencing, Token};
/// use std::time::Duration;
/// use tokio::sync::oneshot;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// let (audit_tx, audit_rx) = oneshot::channel();
/// let request = tokio::spawn(Fencing::new().token(&shutdown).run(async move {
///     shield(async move {
///         tokio::time::sleep(Duration::from_secs(1)).await; // the commit
///         let _ = audit_tx.send("committed");
///     })
///     .await;
/// }));
/// tokio::task::yield_now().await;
/// shutdown.cancel(); // drops the request...
/// assert!(request.await.unwrap().is_err());
/// assert_eq!(audit_rx.await.unwrap(), "committed"); // ...not the commit
/// # }
/// ```
///
/// Tracked, so that the exit waits for it, for at most 5 s:
///
/// ```
/// use fencing::{shield, Fencing, Token};
/// use std::time::Duration;
/// use tokio::time::{sleep, timeout};
/// use tokio_util::task::TaskTracker;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let tracker = TaskTracker::new();
/// let shutdown = Token::new();
/// let (audit_tx, mut audit_rx) = tokio::sync::mpsc::unbounded_channel();
/// let request = Fencing::new().token(&shutdown).code("shutdown");
/// let handler = tokio::spawn(request.run({
///     let tracker = tracker.clone();
///     async move {
///         shield(tracker.track_future(async move {
///             sleep(Duration::from_secs(1)).await; // the audit write
///             audit_tx.send("audited").unwrap();
///         }))
///         .await;
///     }
/// }));
/// tokio::task::yield_now().await;
/// shutdown.cancel_with("SIGTERM"); // the handler is dropped
/// assert!(handler.await.unwrap().is_err());
///
/// // At the end of `main`:
/// tracker.close();
/// if timeout(Duration::from_secs(5), tracker.wait()).await.is_err() {
///     eprintln!("{} shielded tasks dropped at exit", tracker.len());
/// }
/// assert_eq!(audit_rx.try_recv().unwrap(), "audited", "written before exit");
/// # }
/// ```
///
/// # Panics
///
/// Panics if called outside a tokio runtime, as [`tokio::spawn`] does. A
/// panic in the shielded work is resumed in the caller awaiting it. Awaiting
/// it panics too if the runtime running the work shut down before the work
/// completed (there is no value to return).
#[cfg_attr(docsrs, doc(cfg(feature = "rt")))]
#[track_caller]
pub fn shield<F>(future: F) -> Shielded<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Shielded {
        task: spawn(future),
    }
}

/// The future returned by [`shield`]: resolves to the shielded work's output.
///
/// # Examples
///
/// ```
/// use fencing::{shield, Shielded};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let work: Shielded<u32> = shield(async { 7 });
/// assert_eq!(work.await, 7);
/// # }
/// ```
///
/// # Cancel safety
///
/// Dropping it does not stop the shielded work; see [`shield`].
#[cfg_attr(docsrs, doc(cfg(feature = "rt")))]
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Shielded<T> {
    task: JoinHandle<T>,
}

impl<T> Future for Shielded<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match Pin::new(&mut self.task).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(output)) => Poll::Ready(output),
            Poll::Ready(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Only a runtime shutting down cancels the task; a caller still
            // awaiting it then is on another runtime, and cannot get a value.
            Poll::Ready(Err(err)) => panic!("shielded work did not complete: {err}"),
        }
    }
}
