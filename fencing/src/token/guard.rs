//! Guards that cancel a token when they go out of scope.

use super::Token;

/// Cancels its token when dropped, unless [disarmed](Self::disarm).
///
/// Created by [`Token::drop_guard`]. Useful to tie a token to a scope: when
/// the scope unwinds or returns early, everything fenced by the token stops.
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
}

impl DropGuard {
    pub(super) fn new(token: Token) -> Self {
        Self { token: Some(token) }
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
            token.cancel_with("drop guard dropped");
        }
    }
}

/// Cancels the token it borrows when dropped, unless
/// [disarmed](Self::disarm).
///
/// Created by [`Token::drop_guard_ref`].
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
}

impl<'a> DropGuardRef<'a> {
    pub(super) fn new(token: &'a Token) -> Self {
        Self { token: Some(token) }
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
            token.cancel_with("drop guard dropped");
        }
    }
}
