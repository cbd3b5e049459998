//! Any future as a trigger: it fires when the future completes.
//!
//! One future is shared by every fence of a `Fencing` (and its clones), on
//! any thread. At most one fence polls it at a time; the others must still
//! learn of everything that happens to it, whoever polls.
//!
//! # Invariants
//!
//! 1. `state` says who may touch the future: nobody is polling it (`IDLE`),
//!    one fence is (`POLLING`), one fence is and the future or another fence
//!    asked for a poll meanwhile (`NOTIFIED`), or it will never be polled
//!    again (`DONE`: it completed and the node is cancelled, or it panicked).
//! 2. Only the fence that moved `state` from `IDLE` to `POLLING` takes the
//!    future out of `future`, and it puts it back before leaving `POLLING` or
//!    `NOTIFIED`. So the lock on `future` is never contended, and it is never
//!    held while the future is polled or dropped: the future runs user code
//!    (a condition's predicate, say) with no lock of the crate held.
//! 3. The future is polled with a waker that marks `NOTIFIED` (if a fence
//!    is polling) and then wakes every fence registered on the node.
//!
//! # Lost wakeups
//!
//! A fence registers its waker on the node before it drives the future.
//! When it finds the future being polled (`POLLING`), it moves `state` to
//! `NOTIFIED` and returns; the poller, on its way out, finds `NOTIFIED`
//! instead of `POLLING`, goes back to `IDLE` and wakes every registered
//! fence, which poll again. The future's own wake during a poll does the
//! same. So an event that happens while fence A polls, and that fence B
//! hears of while A still holds the future, is never lost when A then
//! leaves (its body completed): A's way out wakes B. Outside a poll, the
//! future's wake reaches every registered fence directly, and one of them
//! takes the future. The CAS on `state` orders B's registration (under the
//! node's lock) before A's wake-all (which takes that lock).
//!
//! The loom model `trigger::tests::loom_future` explores this.

use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use crate::reason::{Message, Reason};
use crate::token::tree::Node;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};

/// A trigger future: it resolves with the reason the trigger fires with.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Reason> + Send>>;

/// Any future as a trigger, with the message `"trigger future completed"`.
pub(crate) fn future<F>(future: F) -> BoxFuture
where
    F: Future + Send + 'static,
{
    Box::pin(async move {
        future.await;
        Reason::future(None)
    })
}

/// Any future as a trigger, with `message` of the user's.
pub(crate) fn future_with<F>(future: F, message: Message) -> BoxFuture
where
    F: Future + Send + 'static,
{
    Box::pin(async move {
        future.await;
        Reason::future_with(message)
    })
}

const IDLE: usize = 0;
const POLLING: usize = 1;
const NOTIFIED: usize = 2;
const DONE: usize = 3;

/// A future shared by every fence of a `Fencing` (and its clones); see the
/// module docs.
pub(crate) struct FutureSource {
    node: Arc<Node>,
    state: AtomicUsize,
    /// `None` while a fence polls it, and once it completed.
    future: Mutex<Option<BoxFuture>>,
    waker: Waker,
}

/// The waker the shared future is polled with.
struct FanOut(Weak<FutureSource>);

impl Wake for FanOut {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        if let Some(source) = self.0.upgrade() {
            // Woken during a poll: the poller wakes everyone on its way out
            // too, after it has put the future back.
            let _ = source.state.compare_exchange(
                POLLING,
                NOTIFIED,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            source.node.wake_all();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FutureSource {
    pub(crate) fn new(future: BoxFuture) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self {
            node: Node::new(),
            state: AtomicUsize::new(IDLE),
            future: Mutex::new(Some(future)),
            waker: Waker::from(std::sync::Arc::new(FanOut(weak.clone()))),
        })
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Polls the future once, unless another fence is polling it right now:
    /// then that fence wakes every registered fence once it is done (so
    /// register before driving). Returns `true` if it has completed.
    ///
    /// A future that panics propagates the panic to the fence that polled
    /// it, and never fires afterwards.
    pub(crate) fn drive(&self) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (from, to) = match current {
                IDLE => (IDLE, POLLING),
                // Leave word with the fence polling it.
                POLLING => (POLLING, NOTIFIED),
                NOTIFIED => return false,
                _ => return self.node.is_cancelled(),
            };
            match self
                .state
                .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if from == IDLE => break,
                Ok(_) => return false,
                Err(actual) => current = actual,
            }
        }
        // Ours until `state` leaves POLLING or NOTIFIED (invariant 2).
        let mut future = lock(&self.future)
            .take()
            .expect("the future is there while the state is not DONE");
        let mut cx = Context::from_waker(&self.waker);
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        match polled {
            Ok(Poll::Ready(reason)) => {
                self.state.store(DONE, Ordering::Release);
                drop(future);
                // Cancelling the node wakes every fence waiting on it.
                self.node.cancel(reason);
                true
            }
            Ok(Poll::Pending) => {
                *lock(&self.future) = Some(future);
                if self
                    .state
                    .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // NOTIFIED: someone needs another poll.
                    self.state.store(IDLE, Ordering::Release);
                    self.node.wake_all();
                }
                false
            }
            Err(payload) => {
                // Kept, never polled again; dropped with the source.
                *lock(&self.future) = Some(future);
                self.state.store(DONE, Ordering::Release);
                resume_unwind(payload)
            }
        }
    }
}
