//! On-cancel hooks: synchronous callbacks run when a token is cancelled.

use super::tree::Node;
use std::fmt;
use std::sync::Arc;

/// The registration of an on-cancel hook, returned by
/// [`Token::on_cancel`](super::Token::on_cancel).
///
/// Dropping it before the token is cancelled removes the hook, which then
/// never runs. [`detach`](Self::detach) keeps the hook registered without
/// keeping the registration.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let token = fencing::Token::new();
/// let ran = Arc::new(AtomicBool::new(false));
/// let flag = ran.clone();
/// let registration = token.on_cancel(move |_| flag.store(true, Ordering::SeqCst));
/// drop(registration); // removed: it will never run
/// token.cancel();
/// assert!(!ran.load(Ordering::SeqCst));
/// ```
#[must_use = "dropping the registration removes the hook; call `detach` to keep it"]
pub struct OnCancel {
    node: Arc<Node>,
    /// `None` once run (registered after the cancel), removed or detached.
    key: Option<usize>,
}

impl OnCancel {
    pub(super) fn new(node: Arc<Node>, key: Option<usize>) -> Self {
        Self { node, key }
    }

    /// Removes the hook. Returns `true` if it was removed before it ran
    /// (Go's `stop()`), `false` if it has run or is running. Dropping the
    /// registration removes it too, without telling.
    ///
    /// (A guard's [`disarm`](crate::DropGuard::disarm) hands back what it
    /// guarded; this removes a registration and reports, hence the other
    /// name.)
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// let registration = token.on_cancel(|_| {});
    /// assert!(registration.remove());
    ///
    /// let late = token.on_cancel(|_| {});
    /// token.cancel();
    /// assert!(!late.remove(), "it ran with the cancel");
    /// ```
    pub fn remove(mut self) -> bool {
        self.key
            .take()
            .is_some_and(|key| self.node.remove_hook(key))
    }

    /// Keeps the hook registered for as long as the token lives, without
    /// keeping a registration to remove it by.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let token = fencing::Token::new();
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = ran.clone();
    /// token.on_cancel(move |_| flag.store(true, Ordering::SeqCst)).detach();
    /// token.cancel();
    /// assert!(ran.load(Ordering::SeqCst));
    /// ```
    pub fn detach(mut self) {
        self.key = None;
    }
}

impl Drop for OnCancel {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.node.remove_hook(key);
        }
    }
}

impl fmt::Debug for OnCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnCancel")
            .field("registered", &self.key.is_some())
            .finish()
    }
}
