//! Helpers the integration crates' tests share (`fencing-tower`,
//! `fencing-tonic`): a real-time bound for every wait on a socket, and a
//! paused clock that stays still while sockets work. Not published.

use std::future::Future;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long any wait on a socket may take, in real time, before the test
/// fails. Far above what loopback needs, even on a loaded 2-core machine.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs `future` to completion, failing the test if it takes more than
/// `limit` of real time. The bound is kept by a watchdog thread, so it holds
/// on a paused clock too, and adds no timer that could advance it.
///
/// # Panics
///
/// If `future` is not done within `limit` of real time.
pub async fn within<F: Future>(limit: Duration, future: F) -> F::Output {
    let (expired, on_expiry) = oneshot::channel::<()>();
    let (done, on_done) = std_mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std_mpsc::RecvTimeoutError::Timeout) = on_done.recv_timeout(limit) {
            let _ = expired.send(());
        }
    });
    let output = tokio::select! {
        biased;
        output = future => output,
        _ = on_expiry => panic!("not done within {limit:?} of real time"),
    };
    drop(done);
    output
}

/// Receives the next message, failing the test after [`LIMIT`] of real time
/// or if the sender is gone.
///
/// # Panics
///
/// If no message comes within [`LIMIT`], or the sender is gone.
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    within(LIMIT, rx.recv()).await.expect("the sender is alive")
}

/// Keeps a paused clock still, even while the runtime waits on sockets,
/// until dropped.
///
/// A paused current-thread runtime moves its clock to the next timer
/// whenever it has nothing to run, and waiting on a socket is such a time;
/// but not while a blocking task runs (see tokio's `time::pause`). So one
/// blocking task waits here for the guard to drop (or for [`LIMIT`]).
#[must_use = "the clock moves again once this is dropped"]
#[derive(Debug)]
pub struct FrozenClock {
    _release: std_mpsc::Sender<()>,
}

/// See [`FrozenClock`].
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn freeze_clock() -> FrozenClock {
    let (release, on_release) = std_mpsc::channel::<()>();
    drop(tokio::task::spawn_blocking(move || {
        let _ = on_release.recv_timeout(LIMIT);
    }));
    FrozenClock { _release: release }
}

/// Sends a message when dropped: a handler holds one to tell the test it
/// was dropped.
#[derive(Debug)]
pub struct OnDrop(Option<oneshot::Sender<()>>);

/// An [`OnDrop`] and the receiver it tells.
#[must_use]
pub fn on_drop() -> (OnDrop, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    (OnDrop(Some(tx)), rx)
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}
