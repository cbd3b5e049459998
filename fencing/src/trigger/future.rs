//! Any future as a trigger: it fires when the future completes.

use crate::reason::Reason;
use crate::token::tree::Node;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, TryLockError, Weak};
use std::task::{Context, Poll, Wake, Waker};

/// A trigger future: it resolves with the reason the trigger fires with.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Reason> + Send>>;

/// A future shared by every fence of a `Fencing` (and its clones). Whichever
/// fence polls first drives it; the waker it is driven with wakes every fence
/// waiting on the node, so the future keeps being driven while any of them
/// lives, and each sees it fire.
pub(crate) struct FutureSource {
    node: Arc<Node>,
    /// `None` once the future completed (or panicked).
    future: Mutex<Option<BoxFuture>>,
    waker: Waker,
}

/// Wakes every fence waiting on the source's node.
struct FanOut(Weak<FutureSource>);

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(source) = self.0.upgrade() {
            source.node.wake_all();
        }
    }
}

impl FutureSource {
    pub(crate) fn new(future: BoxFuture) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self {
            node: Node::new(),
            future: Mutex::new(Some(future)),
            waker: Waker::from(Arc::new(FanOut(weak.clone()))),
        })
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Polls the future once unless another fence is polling it right now.
    /// Returns `true` if it has completed.
    ///
    /// A future that panics propagates the panic to the fence that polled
    /// it, and never fires afterwards.
    pub(crate) fn drive(&self) -> bool {
        let mut slot = match self.future.try_lock() {
            Ok(slot) => slot,
            // Another fence is polling it, with the fan-out waker: if it
            // makes progress we are woken.
            Err(TryLockError::WouldBlock) => return false,
            Err(TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().take();
                self.future.clear_poison();
                return false;
            }
        };
        let Some(future) = slot.as_mut() else {
            return self.node.is_cancelled();
        };
        let mut cx = Context::from_waker(&self.waker);
        let Poll::Ready(reason) = future.as_mut().poll(&mut cx) else {
            return false;
        };
        *slot = None;
        drop(slot);
        // Cancelling the node wakes every other fence waiting on it.
        self.node.cancel(reason);
        true
    }
}
