//! Guards that cancel a token when they go out of scope.

use super::Token;
use crate::reason::Message;

/// The message a guard cancels with unless it was given one.
const DROPPED: &str = "drop guard dropped";

/// Cancels its token when dropped, unless [disarmed](Self::disarm).
///
/// Created by [`Token::drop_guard`], which cancels with the message `"drop
/// guard dropped"`, or [`Token::drop_guard_with`], which cancels with a
/// message of your own. Useful to tie a token to a scope: when the scope
/// unwinds or returns early, everything fenced by the token stops.
///
/// # Examples
///
/// ```
/// let token = fencing::Token::new();
/// let guard = token.clone().drop_guard();
/// drop(guard);
/// assert_eq!(token.reason().unwrap().message(), "drop guard dropped");
/// ```
#[derive(Debug)]
#[must_use = "the token is cancelled as soon as the guard is dropped"]
pub struct DropGuard {
    token: Option<Token>,
    message: Message,
}

impl DropGuard {
    pub(super) fn new(token: Token, message: Message) -> Self {
        Self {
            token: Some(token),
            message,
        }
    }

    /// Returns the token without cancelling it.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new().drop_guard().disarm();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn disarm(mut self) -> Token {
        self.token.take().expect("a guard is disarmed once")
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            token.cancel_with(self.message.clone());
        }
    }
}

/// Cancels the token it borrows when dropped, unless
/// [disarmed](Self::disarm).
///
/// Created by [`Token::drop_guard_ref`] or, with a message of your own,
/// [`Token::drop_guard_ref_with`].
///
/// # Examples
///
/// ```
/// let token = fencing::Token::new();
/// {
///     let _guard = token.drop_guard_ref();
/// }
/// assert!(token.is_cancelled());
/// ```
#[derive(Debug)]
#[must_use = "the token is cancelled as soon as the guard is dropped"]
pub struct DropGuardRef<'a> {
    token: Option<&'a Token>,
    message: Message,
}

impl<'a> DropGuardRef<'a> {
    pub(super) fn new(token: &'a Token, message: Message) -> Self {
        Self {
            token: Some(token),
            message,
        }
    }

    /// Returns the borrowed token without cancelling it.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = fencing::Token::new();
    /// token.drop_guard_ref().disarm();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn disarm(mut self) -> &'a Token {
        self.token.take().expect("a guard is disarmed once")
    }
}

impl Drop for DropGuardRef<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token {
            token.cancel_with(self.message.clone());
        }
    }
}

impl DropGuard {
    pub(super) fn dropped(token: Token) -> Self {
        Self::new(token, Message::from(DROPPED))
    }
}

impl<'a> DropGuardRef<'a> {
    pub(super) fn dropped(token: &'a Token) -> Self {
        Self::new(token, Message::from(DROPPED))
    }
}
