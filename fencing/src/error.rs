//! The error a fence returns when it interrupts its body.

use crate::reason::{Code, Reason, ReasonKind};
use std::fmt;
use std::io;

/// A fence interrupted its body: the body was dropped, and these are the
/// reasons that fired, in firing order.
///
/// `Cancelled` is opaque: ask it with [`cancelled_by`](Self::cancelled_by),
/// the `is_*` predicates, or read [`reasons`](Self::reasons). It always holds
/// at least one reason. Its `Display` names every reason; the wording is for
/// people and is not covered by semver.
///
/// # Examples
///
/// ```
/// use fencing::{Fencing, Token};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// let fencing = Fencing::new()
///     .timeout(Duration::from_secs(30))
///     .code("budget")
///     .token(&shutdown)
///     .code("shutdown");
///
/// shutdown.cancel_with("SIGTERM");
/// let cancelled = fencing.run(std::future::pending::<()>()).await.unwrap_err();
///
/// assert!(cancelled.cancelled_by("shutdown"));
/// assert!(cancelled.is_token());
/// assert!(!cancelled.is_timeout());
/// assert_eq!(cancelled.reasons().len(), 1);
/// assert_eq!(cancelled.to_string(), "cancelled: shutdown: SIGTERM");
/// # }
/// ```
///
/// It is `Clone`, so that it can travel where a copy is needed, such as the
/// extensions of an HTTP response.
#[derive(Clone)]
pub struct Cancelled {
    // Boxed so that `Result<T, Cancelled>` stays one pointer wider than `T`.
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    /// Never empty.
    reasons: Vec<Reason>,
}

impl Cancelled {
    /// `reasons` must not be empty.
    pub(crate) fn new(reasons: Vec<Reason>) -> Self {
        debug_assert!(!reasons.is_empty(), "a cancellation has a reason");
        Self {
            inner: Box::new(Inner { reasons }),
        }
    }

    /// Every reason that fired, in firing order. Never empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use fencing::{Fencing, Token};
    ///
    /// let (a, b) = (Token::new(), Token::new());
    /// a.cancel();
    /// b.cancel();
    /// let err = Fencing::new()
    ///     .token(&a)
    ///     .code("a")
    ///     .token(&b)
    ///     .code("b")
    ///     .run(async {})
    ///     .await
    ///     .unwrap_err();
    /// let codes: Vec<_> = err.reasons().iter().map(|r| r.code().unwrap().as_str()).collect();
    /// assert_eq!(codes, ["a", "b"]);
    /// # }
    /// ```
    #[must_use]
    pub fn reasons(&self) -> &[Reason] {
        &self.inner.reasons
    }

    /// The first reason that fired.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// let err = Fencing::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.reason().message(), "timed out after 5s");
    /// # }
    /// ```
    #[must_use]
    pub fn reason(&self) -> &Reason {
        &self.inner.reasons[0]
    }

    /// The reason to act on by a priority of codes: the one declared with
    /// the first of `codes` that fired, whatever the firing order; if none
    /// of them fired, the first reason that fired, as [`reason`](Self::reason).
    ///
    /// Several reasons fire together when they are found in the same poll
    /// (a deadline and a token both past), or when one fires during
    /// another's grace period. The first to fire is the one that stopped the
    /// work, and it is what fencing-tower's and fencing-tonic's status
    /// tables read. To answer by what matters most instead (say "shutting
    /// down" over "out of budget", so a client retries elsewhere), rank the
    /// codes. Reasons declared without a code are found only by the
    /// fallback.
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::{Fencing, Reason, Token};
    /// use tokio::time::Instant;
    ///
    /// fn status(reason: &Reason) -> u16 {
    ///     match reason.code().map(|code| code.as_str()) {
    ///         Some("shutdown") => 503,
    ///         _ if reason.kind().is_time() => 504,
    ///         _ => 500,
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let shutdown = Token::new();
    /// shutdown.cancel_with("SIGTERM");
    /// let err = Fencing::new()
    ///     .deadline(Instant::now())
    ///     .code("budget")
    ///     .token(&shutdown)
    ///     .code("shutdown")
    ///     .run(async {})
    ///     .await
    ///     .unwrap_err();
    /// // Both had fired: the deadline comes first in firing order.
    /// assert_eq!(status(err.reason()), 504);
    /// // By priority, the shutdown wins.
    /// assert_eq!(status(err.reason_by_priority(["shutdown", "budget"])), 503);
    /// // Nothing listed fired: the first to fire.
    /// assert!(err.reason_by_priority(["db"]).has_code("budget"));
    /// # }
    /// ```
    #[must_use]
    pub fn reason_by_priority<C>(&self, codes: impl IntoIterator<Item = C>) -> &Reason
    where
        C: Into<Code>,
    {
        codes
            .into_iter()
            .find_map(|code| {
                let code = code.into();
                self.reasons().iter().find(|r| r.code() == Some(&code))
            })
            .unwrap_or_else(|| self.reason())
    }

    /// Returns `true` if any reason that fired was declared with `code`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use fencing::Fencing;
    /// use std::time::Duration;
    ///
    /// let err = Fencing::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .code("budget")
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.cancelled_by("budget"));
    /// assert!(!err.cancelled_by("shutdown"));
    /// # }
    /// ```
    #[must_use]
    pub fn cancelled_by(&self, code: impl Into<Code>) -> bool {
        let code = code.into();
        self.reasons().iter().any(|r| r.code() == Some(&code))
    }

    fn any(&self, kind: ReasonKind) -> bool {
        self.reasons().iter().any(|r| r.kind() == kind)
    }

    /// Returns `true` if a relative timeout was among the reasons.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let err = fencing::Fencing::new()
    ///     .timeout(Duration::ZERO)
    ///     .run(async {})
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// assert!(!err.is_deadline());
    /// # }
    /// ```
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.any(ReasonKind::Timeout)
    }

    /// Returns `true` if an absolute deadline was among the reasons.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use tokio::time::Instant;
    ///
    /// let err = fencing::Fencing::new()
    ///     .deadline(Instant::now())
    ///     .run(async {})
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_deadline());
    /// # }
    /// ```
    #[must_use]
    pub fn is_deadline(&self) -> bool {
        self.any(ReasonKind::Deadline)
    }

    /// Returns `true` if a token was among the reasons.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = fencing::Token::new();
    /// token.cancel();
    /// let err = fencing::Fencing::new().token(&token).run(async {}).await.unwrap_err();
    /// assert!(err.is_token());
    /// # }
    /// ```
    #[must_use]
    pub fn is_token(&self) -> bool {
        self.any(ReasonKind::Token)
    }

    /// Returns `true` if an OS signal was among the reasons.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let token = fencing::Token::new();
    /// token.cancel();
    /// let err = fencing::Fencing::new().token(&token).run(async {}).await.unwrap_err();
    /// assert!(!err.is_signal());
    /// # }
    /// ```
    #[must_use]
    pub fn is_signal(&self) -> bool {
        self.any(ReasonKind::Signal)
    }

    /// Returns `true` if a future declared as a trigger was among the reasons.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let err = fencing::Fencing::new()
    ///     .future(async {})
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_future());
    /// # }
    /// ```
    #[must_use]
    pub fn is_future(&self) -> bool {
        self.any(ReasonKind::Future)
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("reasons", &self.inner.reasons)
            .finish()
    }
}

/// `"cancelled: budget: timed out after 5s; shutdown: SIGTERM"`.
impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled: ")?;
        for (i, reason) in self.reasons().iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            fmt::Display::fmt(reason, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Cancelled {}

/// Maps to [`io::ErrorKind::TimedOut`] when the first reason is a timeout or
/// a deadline, and to [`io::ErrorKind::Other`] otherwise (not `Interrupted`,
/// which retry loops treat as "try again"). The `Cancelled` stays reachable
/// through [`io::Error::get_ref`] and `downcast`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::io;
/// use std::time::Duration;
///
/// let err = fencing::Fencing::new()
///     .timeout(Duration::ZERO)
///     .run(async {})
///     .await
///     .unwrap_err();
/// let io: io::Error = err.into();
/// assert_eq!(io.kind(), io::ErrorKind::TimedOut);
/// assert!(io.get_ref().unwrap().is::<fencing::Cancelled>());
/// # }
/// ```
impl From<Cancelled> for io::Error {
    fn from(cancelled: Cancelled) -> Self {
        let kind = if cancelled.reason().kind().is_time() {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::Other
        };
        Self::new(kind, cancelled)
    }
}
