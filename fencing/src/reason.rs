//! Why a trigger fired: [`Reason`], its [`ReasonKind`] and its [`Code`].

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Shared, cheaply clonable text: a `&'static str` costs nothing, anything
/// else is stored once behind an `Arc`.
#[derive(Clone)]
enum Text {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
        }
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Self::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self::Shared(s.into())
    }
}

/// A short, machine-readable label chosen where a trigger is declared, such
/// as `"budget"`, `"shutdown"` or `"db"`.
///
/// Codes compare by their text. A string literal becomes a code without
/// allocating; an owned `String` is stored once and shared by every clone.
///
/// # Examples
///
/// String literals and owned strings convert with `From`:
///
/// ```
/// use fencing::Code;
///
/// let budget = Code::from("budget");
/// assert_eq!(budget, "budget");
/// assert_eq!(Code::from(String::from("db")).as_str(), "db");
/// ```
///
/// An application's own enum becomes a code by implementing `From` for it,
/// mapping each variant to a `&'static str`; it can then be passed wherever a
/// code is expected, for declaring and for asking alike:
///
/// ```
/// use fencing::{Code, Fencing, Token};
/// use std::time::Duration;
///
/// #[derive(Clone, Copy)]
/// enum Stop {
///     Budget,
///     Shutdown,
/// }
///
/// impl From<Stop> for Code {
///     fn from(stop: Stop) -> Code {
///         Code::from(match stop {
///             Stop::Budget => "budget",
///             Stop::Shutdown => "shutdown",
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = Token::new();
/// let fencing = Fencing::new()
///     .timeout(Duration::from_secs(30))
///     .code(Stop::Budget)
///     .token(&shutdown)
///     .code(Stop::Shutdown);
///
/// shutdown.cancel();
/// let cancelled = fencing.run(std::future::pending::<()>()).await.unwrap_err();
/// assert!(cancelled.cancelled_by(Stop::Shutdown));
/// assert!(!cancelled.cancelled_by(Stop::Budget));
/// # }
/// ```
#[derive(Clone)]
pub struct Code(Text);

impl Code {
    /// Returns the code's text.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fencing::Code::from("db").as_str(), "db");
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&'static str> for Code {
    fn from(s: &'static str) -> Self {
        Self(Text::from(s))
    }
}

impl From<String> for Code {
    fn from(s: String) -> Self {
        Self(Text::from(s))
    }
}

impl From<&Self> for Code {
    fn from(code: &Self) -> Self {
        code.clone()
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Code {}

impl std::hash::Hash for Code {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Borrow<str> for Code {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of trigger fired.
///
/// New trigger kinds will be added, so the enum is `#[non_exhaustive]`:
/// match with a wildcard arm.
///
/// # Examples
///
/// ```
/// use fencing::{ReasonKind, Token};
///
/// let token = Token::new();
/// token.cancel();
/// assert_eq!(token.reason().unwrap().kind(), ReasonKind::Token);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonKind {
    /// A relative timeout ran out (declared with
    /// [`Fencing::timeout`](crate::Fencing::timeout)).
    Timeout,
    /// An absolute deadline passed (declared with
    /// [`Fencing::deadline`](crate::Fencing::deadline)).
    Deadline,
    /// A [`Token`](crate::Token) was cancelled.
    Token,
    /// A future declared as a trigger completed (declared with
    /// [`Fencing::future`](crate::Fencing::future)).
    Future,
    /// An OS signal arrived.
    Signal,
    /// A polled condition became true, or could not be evaluated.
    Condition,
    /// Every part of an all-of trigger fired (declared with
    /// [`Fencing::all_of`](crate::Fencing::all_of)).
    AllOf,
}

impl ReasonKind {
    /// Returns `true` for the time kinds, [`Timeout`](Self::Timeout) and
    /// [`Deadline`](Self::Deadline).
    ///
    /// # Examples
    ///
    /// ```
    /// use fencing::ReasonKind;
    ///
    /// assert!(ReasonKind::Deadline.is_time());
    /// assert!(!ReasonKind::Token.is_time());
    /// ```
    #[must_use]
    pub fn is_time(self) -> bool {
        matches!(self, Self::Timeout | Self::Deadline)
    }
}

/// Why a trigger fired: its [kind](ReasonKind), the [code](Code) it was
/// declared with, if any, and a human-readable message.
///
/// Reasons are plain data: cheap to clone, comparable, and `Send + Sync`.
/// The message wording is meant for people and is not covered by semver.
///
/// # Examples
///
/// ```
/// use fencing::{Reason, ReasonKind, Token};
///
/// let token = Token::new();
/// token.cancel_with("client went away");
///
/// let reason: Reason = token.reason().unwrap();
/// assert_eq!(reason.kind(), ReasonKind::Token);
/// assert_eq!(reason.message(), "client went away");
/// assert_eq!(reason.code(), None);
/// assert!(reason.is_token());
/// ```
#[derive(Clone)]
pub struct Reason {
    kind: ReasonKind,
    code: Option<Code>,
    message: Text,
}

impl Reason {
    pub(crate) fn token(message: impl Into<Message>) -> Self {
        Self {
            kind: ReasonKind::Token,
            code: None,
            message: message.into().0,
        }
    }

    pub(crate) fn timeout(after: Duration, code: Option<Code>) -> Self {
        Self {
            kind: ReasonKind::Timeout,
            code,
            message: Text::from(format!("timed out after {after:?}")),
        }
    }

    pub(crate) fn deadline(code: Option<Code>) -> Self {
        Self {
            kind: ReasonKind::Deadline,
            code,
            message: Text::Static("deadline exceeded"),
        }
    }

    /// A reason of `kind` with `message`, for the trigger kinds that build
    /// their own messages.
    pub(crate) fn with_kind(kind: ReasonKind, message: impl Into<Message>) -> Self {
        Self {
            kind,
            code: None,
            message: message.into().0,
        }
    }

    pub(crate) fn future(code: Option<Code>) -> Self {
        Self {
            kind: ReasonKind::Future,
            code,
            message: Text::Static("trigger future completed"),
        }
    }

    /// A future trigger's reason with a message of the user's.
    pub(crate) fn future_with(message: Message) -> Self {
        Self {
            kind: ReasonKind::Future,
            code: None,
            message: message.0,
        }
    }

    /// The same reason, reported under the code a trigger was declared with.
    pub(crate) fn with_code(&self, code: Option<&Code>) -> Self {
        Self {
            code: code.cloned(),
            ..self.clone()
        }
    }

    /// What kind of trigger fired.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use fencing::{Fencing, ReasonKind};
    /// use std::time::Duration;
    ///
    /// let err = Fencing::new()
    ///     .timeout(Duration::from_secs(1))
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.reason().kind(), ReasonKind::Timeout);
    /// # }
    /// ```
    #[must_use]
    pub fn kind(&self) -> ReasonKind {
        self.kind
    }

    /// The code the trigger was declared with, or `None` if it was declared
    /// without one.
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
    ///     .timeout(Duration::from_secs(1))
    ///     .code("budget")
    ///     .run(std::future::pending::<()>())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.reason().code().unwrap(), "budget");
    /// # }
    /// ```
    #[must_use]
    pub fn code(&self) -> Option<&Code> {
        self.code.as_ref()
    }

    /// A human-readable message: `"timed out after 5s"`, `"deadline
    /// exceeded"`, or the message a token was cancelled with.
    ///
    /// The wording of built-in messages is not covered by semver.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// token.cancel_with("shutting down");
    /// assert_eq!(token.reason().unwrap().message(), "shutting down");
    /// ```
    #[must_use]
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// Returns `true` if this reason has the given code.
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
    ///     .timeout(Duration::ZERO)
    ///     .code("db")
    ///     .run(async {})
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.reason().has_code("db"));
    /// assert!(!err.reason().has_code("budget"));
    /// # }
    /// ```
    #[must_use]
    pub fn has_code(&self, code: impl Into<Code>) -> bool {
        self.code.as_ref() == Some(&code.into())
    }

    /// Returns `true` if a relative timeout ran out.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// token.cancel();
    /// assert!(!token.reason().unwrap().is_timeout());
    /// ```
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.kind == ReasonKind::Timeout
    }

    /// Returns `true` if an absolute deadline passed.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// token.cancel();
    /// assert!(!token.reason().unwrap().is_deadline());
    /// ```
    #[must_use]
    pub fn is_deadline(&self) -> bool {
        self.kind == ReasonKind::Deadline
    }

    /// Returns `true` if a token was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// token.cancel();
    /// assert!(token.reason().unwrap().is_token());
    /// ```
    #[must_use]
    pub fn is_token(&self) -> bool {
        self.kind == ReasonKind::Token
    }

    /// Returns `true` if an OS signal arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// token.cancel();
    /// assert!(!token.reason().unwrap().is_signal());
    /// ```
    #[must_use]
    pub fn is_signal(&self) -> bool {
        self.kind == ReasonKind::Signal
    }

    /// Returns `true` if a future declared as a trigger completed.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// token.cancel();
    /// assert!(!token.reason().unwrap().is_future());
    /// ```
    #[must_use]
    pub fn is_future(&self) -> bool {
        self.kind == ReasonKind::Future
    }
}

impl PartialEq for Reason {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.code == other.code
            && self.message.as_str() == other.message.as_str()
    }
}

impl Eq for Reason {}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reason")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message())
            .finish()
    }
}

/// `"budget: timed out after 5s"`, or just the message when there is no code.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(self.message())
    }
}

/// The message a [`Token`](crate::Token) is cancelled with, or a future
/// trigger or drop guard fires with.
///
/// Built from a `&'static str` without allocating, or from a `String`.
///
/// # Examples
///
/// ```
/// let token = fencing::Token::new();
/// let user = "alice";
/// token.cancel_with(format!("{user} logged out"));
/// assert_eq!(token.reason().unwrap().message(), "alice logged out");
/// ```
#[derive(Clone)]
pub struct Message(Text);

impl From<&'static str> for Message {
    fn from(s: &'static str) -> Self {
        Self(Text::from(s))
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self(Text::from(s))
    }
}

impl Message {
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}
