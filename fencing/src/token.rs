//! [`Token`], the manual trigger, and its futures and guards.

mod guard;
mod hook;
#[cfg(all(test, loom))]
mod tests;
pub(crate) mod tree;

pub use guard::{DropGuard, DropGuardRef};
pub use hook::OnCancel;

use crate::reason::{Message, Reason};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use tree::Node;

/// The manual trigger: cancel it, with a reason, from any thread.
///
/// A `Token` is a cheap handle: clones share one cancellation state. The
/// first cancel wins and records its reason; later cancels return `false` and
/// change nothing. Tokens form a tree: a [child](Self::child) is cancelled
/// with its parent's reason, cancelling a child never touches its parent, and
/// a dropped child leaves its parent at once.
///
/// Declare a token as a trigger with [`Fencing::token`](crate::Fencing::token).
///
/// # Examples
///
/// ```
/// use fencing::Token;
///
/// let shutdown = Token::new();
/// let request = shutdown.child();
///
/// assert!(shutdown.cancel_with("SIGTERM"));
/// assert!(!shutdown.cancel_with("too late"), "the first cancel wins");
///
/// assert!(request.is_cancelled());
/// assert_eq!(request.reason().unwrap().message(), "SIGTERM");
/// ```
#[derive(Clone)]
pub struct Token {
    node: Arc<Node>,
}

impl Token {
    /// Creates a token that is not cancelled and has no parent.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// assert!(!token.is_cancelled());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self { node: Node::new() }
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Creates a child token.
    ///
    /// The child is cancelled, with the parent's reason, when the parent is;
    /// cancelling the child never affects the parent. A child created after
    /// its parent was cancelled is born cancelled with the parent's reason.
    /// Dropping every handle of the child removes it from its parent, so a
    /// long-lived parent does not accumulate short-lived children.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Token;
    ///
    /// let parent = Token::new();
    /// let child = parent.child();
    /// child.cancel();
    /// assert!(!parent.is_cancelled());
    ///
    /// parent.cancel_with("shutdown");
    /// let late = parent.child();
    /// assert_eq!(late.reason().unwrap().message(), "shutdown");
    /// ```
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            node: self.node.child(),
        }
    }

    /// Cancels the token and its children with the message `"token
    /// cancelled"`. Returns `true` if this call cancelled it, `false` if it
    /// was already cancelled (the first reason stays).
    ///
    /// Synchronous and callable from any thread, inside or outside a runtime.
    /// Every task waiting on the token, on any executor, is woken.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// assert!(token.cancel());
    /// assert!(!token.cancel());
    /// assert_eq!(token.reason().unwrap().message(), "token cancelled");
    /// ```
    pub fn cancel(&self) -> bool {
        self.cancel_with("token cancelled")
    }

    /// Cancels the token and its children with `message` as the reason.
    /// Returns `true` if this call cancelled it, `false` if it was already
    /// cancelled, in which case nothing changes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::thread;
    ///
    /// let token = fencing::Token::new();
    /// let remote = token.clone();
    /// thread::spawn(move || remote.cancel_with("disk full")).join().unwrap();
    /// assert_eq!(token.reason().unwrap().message(), "disk full");
    /// ```
    pub fn cancel_with(&self, message: impl Into<Message>) -> bool {
        self.node.cancel(Reason::token(message))
    }

    /// Returns `true` if the token is cancelled. One atomic load.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// assert!(!token.is_cancelled());
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.node.is_cancelled()
    }

    /// The reason the token was cancelled with (Go's `context.Cause`), or
    /// `None` while it is not cancelled. A token reached through its parent
    /// carries the parent's reason.
    ///
    /// The reason's kind is [`ReasonKind::Token`](crate::ReasonKind::Token)
    /// and it has no code: codes are given where a token is declared as a
    /// trigger, so one token can be reported under several codes.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// assert!(token.reason().is_none());
    /// token.cancel_with("quota exceeded");
    /// assert_eq!(token.reason().unwrap().message(), "quota exceeded");
    /// ```
    #[must_use]
    pub fn reason(&self) -> Option<Reason> {
        self.node.reason().cloned()
    }

    /// Waits until the token is cancelled and returns the reason.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn cancelled(&self) -> Reason;
    /// ```
    ///
    /// Waiting allocates nothing per wait once the token's waiter list has
    /// grown to the number of concurrent waiters.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = fencing::Token::new();
    /// let remote = token.clone();
    /// tokio::spawn(async move { remote.cancel_with("done") });
    /// assert_eq!(token.cancelled().await.message(), "done");
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: dropping the future removes its waker and
    /// loses nothing.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        WaitForCancellationFuture {
            node: &self.node,
            key: None,
        }
    }

    /// Like [`cancelled`](Self::cancelled), but the future owns a clone of
    /// the token, so it is `'static` and can be spawned or stored.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn cancelled_owned(self) -> Reason;
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = fencing::Token::new();
    /// let waiter = tokio::spawn(token.clone().cancelled_owned());
    /// token.cancel();
    /// assert!(waiter.await.unwrap().is_token());
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub fn cancelled_owned(self) -> WaitForCancellationFutureOwned {
        WaitForCancellationFutureOwned {
            token: self,
            key: None,
        }
    }

    /// Blocks the current thread until the token is cancelled and returns
    /// the reason. For plain threads and `spawn_blocking` closures; calling it
    /// on an async worker thread blocks that worker.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::thread;
    ///
    /// let token = fencing::Token::new();
    /// let worker = {
    ///     let token = token.clone();
    ///     thread::spawn(move || token.wait_blocking().message().to_owned())
    /// };
    /// token.cancel_with("stop");
    /// assert_eq!(worker.join().unwrap(), "stop");
    /// ```
    pub fn wait_blocking(&self) -> Reason {
        struct Unpark(Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
            fn wake_by_ref(self: &Arc<Self>) {
                self.0.unpark();
            }
        }

        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut key = None;
        loop {
            if let Poll::Ready(reason) = self.node.poll_cancelled(&mut key, &waker) {
                self.node.deregister(&mut key);
                return reason;
            }
            // Spurious unparks are fine: the loop polls again.
            std::thread::park();
        }
    }

    /// Registers `hook` to run once, synchronously, when the token is
    /// cancelled (Go's `context.AfterFunc`, .NET's `Register`).
    ///
    /// The hook runs on the thread that cancels, after the reason is set and
    /// never under an internal lock, so it may cancel tokens (this one
    /// included: that returns `false`), register hooks or wake tasks. If the
    /// token is cancelled already, it runs at once, before `on_cancel`
    /// returns. Dropping the returned [`OnCancel`] first removes it, and then
    /// it never runs. Keep hooks short: they run inside `cancel`. A hook that
    /// panics does not stop the others or the cancellation of children; its
    /// panic is resumed from `cancel` once the whole tree is cancelled. (A
    /// [policy](crate::Fencing::policy) that panics is caught instead: it
    /// runs inside a fence, where accepting the reason is a safe answer; a
    /// hook runs outside every fence, and its panic reaches the code that
    /// cancelled, not the fences waiting on the token.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// let token = fencing::Token::new();
    /// let (tx, rx) = mpsc::channel();
    /// let _hook = token.on_cancel(move |reason| tx.send(reason.message().to_owned()).unwrap());
    /// token.cancel_with("disk full");
    /// assert_eq!(rx.try_recv().unwrap(), "disk full");
    /// ```
    pub fn on_cancel<F>(&self, hook: F) -> OnCancel
    where
        F: FnOnce(&Reason) + Send + 'static,
    {
        let key = self.node.add_hook(Box::new(hook));
        OnCancel::new(Arc::clone(&self.node), key)
    }

    /// Returns a guard that cancels the token when dropped, unless
    /// [disarmed](DropGuard::disarm).
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// {
    ///     let _guard = token.clone().drop_guard();
    /// }
    /// assert!(token.is_cancelled());
    /// ```
    pub fn drop_guard(self) -> DropGuard {
        DropGuard::dropped(self)
    }

    /// Like [`drop_guard`](Self::drop_guard), cancelling with `message`
    /// instead of `"drop guard dropped"`.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// {
    ///     let _connection = token.clone().drop_guard_with("client disconnected");
    /// }
    /// assert_eq!(token.reason().unwrap().message(), "client disconnected");
    /// ```
    pub fn drop_guard_with(self, message: impl Into<Message>) -> DropGuard {
        DropGuard::new(self, message.into())
    }

    /// Like [`drop_guard`](Self::drop_guard), borrowing the token.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// let guard = token.drop_guard_ref();
    /// guard.disarm();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn drop_guard_ref(&self) -> DropGuardRef<'_> {
        DropGuardRef::dropped(self)
    }

    /// Like [`drop_guard_ref`](Self::drop_guard_ref), cancelling with
    /// `message` instead of `"drop guard dropped"`.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// {
    ///     let _request = token.drop_guard_ref_with("handler returned early");
    /// }
    /// assert_eq!(token.reason().unwrap().message(), "handler returned early");
    /// ```
    pub fn drop_guard_ref_with(&self, message: impl Into<Message>) -> DropGuardRef<'_> {
        DropGuardRef::new(self, message.into())
    }

    /// A tokio-util [`CancellationToken`](tokio_util::sync::CancellationToken)
    /// that is cancelled when this token is (at once if it is already), for
    /// handing to code written against tokio-util. Cancelling the
    /// `CancellationToken` does not cancel this token: the bridge goes one
    /// way, like a child.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// let legacy = token.to_cancellation_token();
    /// assert!(!legacy.is_cancelled());
    /// token.cancel();
    /// assert!(legacy.is_cancelled());
    /// ```
    #[cfg(feature = "tokio-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
    #[must_use]
    pub fn to_cancellation_token(&self) -> tokio_util::sync::CancellationToken {
        let bridge = tokio_util::sync::CancellationToken::new();
        let cancel = bridge.clone();
        self.on_cancel(move |_| cancel.cancel()).detach();
        bridge
    }

    /// Test and debugging aid, not covered by semver: the number of live
    /// children registered with this token.
    #[doc(hidden)]
    pub fn __child_count(&self) -> usize {
        self.node.child_count()
    }

    /// Test and debugging aid, not covered by semver: the number of wakers
    /// registered with this token.
    #[doc(hidden)]
    pub fn __waiter_count(&self) -> usize {
        self.node.waiter_count()
    }
}

impl Default for Token {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("reason", &self.node.reason())
            .finish()
    }
}

/// The future returned by [`Token::cancelled`]: resolves with the reason once
/// the token is cancelled.
///
/// # Examples
///
/// ```
/// use fencing::{Token, WaitForCancellationFuture};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let token = Token::new();
/// token.cancel_with("stop");
/// let wait: WaitForCancellationFuture<'_> = token.cancelled();
/// assert_eq!(wait.await.message(), "stop");
/// # }
/// ```
///
/// # Cancel safety
///
/// Dropping it removes its waker and loses nothing.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitForCancellationFuture<'a> {
    node: &'a Arc<Node>,
    key: Option<usize>,
}

impl Future for WaitForCancellationFuture<'_> {
    type Output = Reason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reason> {
        let this = self.get_mut();
        this.node.poll_cancelled(&mut this.key, cx.waker())
    }
}

impl Drop for WaitForCancellationFuture<'_> {
    fn drop(&mut self) {
        self.node.deregister(&mut self.key);
    }
}

impl fmt::Debug for WaitForCancellationFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellationFuture")
            .field("is_cancelled", &self.node.is_cancelled())
            .finish()
    }
}

/// The future returned by [`Token::cancelled_owned`]: like
/// [`WaitForCancellationFuture`], but `'static`.
///
/// # Examples
///
/// ```
/// use fencing::{Token, WaitForCancellationFutureOwned};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let token = Token::new();
/// let wait: WaitForCancellationFutureOwned = token.clone().cancelled_owned();
/// let waiter = tokio::spawn(wait);
/// token.cancel_with("stop");
/// assert_eq!(waiter.await.unwrap().message(), "stop");
/// # }
/// ```
///
/// # Cancel safety
///
/// Dropping it removes its waker and loses nothing.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitForCancellationFutureOwned {
    token: Token,
    key: Option<usize>,
}

impl Future for WaitForCancellationFutureOwned {
    type Output = Reason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reason> {
        let this = self.get_mut();
        this.token.node.poll_cancelled(&mut this.key, cx.waker())
    }
}

impl Drop for WaitForCancellationFutureOwned {
    fn drop(&mut self) {
        self.token.node.deregister(&mut self.key);
    }
}

impl fmt::Debug for WaitForCancellationFutureOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellationFutureOwned")
            .field("token", &self.token)
            .finish()
    }
}
