//! Interoperation with tokio-util's `CancellationToken`.

use crate::fencing::Fencing;
use crate::reason::Reason;
use crate::token::Token;
use tokio_util::sync::CancellationToken;

impl Fencing {
    /// Adds a tokio-util [`CancellationToken`] as a trigger, so code already
    /// written against tokio-util joins in. Its reason is a
    /// [`Token`](crate::ReasonKind::Token) with the message `"cancellation
    /// token cancelled"` (a `CancellationToken` carries no reason of its own).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::Fencing;
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let legacy = CancellationToken::new();
    /// legacy.cancel();
    /// let err = Fencing::new()
    ///     .cancellation_token(&legacy)
    ///     .code("legacy")
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.cancelled_by("legacy") && err.is_token());
    /// # }
    /// ```
    #[must_use]
    pub fn cancellation_token(self, token: &CancellationToken) -> Self {
        let cancelled = token.clone().cancelled_owned();
        self.trigger(Box::pin(async move {
            cancelled.await;
            Reason::token("cancellation token cancelled")
        }))
    }
}

impl Token {
    /// A tokio-util [`CancellationToken`] that is cancelled when this token
    /// is (at once if it is already), for handing to code written against
    /// tokio-util. Cancelling the `CancellationToken` does not cancel this
    /// token: the bridge goes one way, like a child.
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
    #[must_use]
    pub fn to_cancellation_token(&self) -> CancellationToken {
        let bridge = CancellationToken::new();
        let cancel = bridge.clone();
        self.on_cancel(move |_| cancel.cancel()).detach();
        bridge
    }
}
