//! Tokens as triggers: a [`Token`], and with the `tokio-util` feature a
//! tokio-util `CancellationToken`.

use super::Source;
use crate::token::Token;
use std::sync::Arc;

/// The slot of a token: the token's own node.
pub(crate) fn token(token: &Token) -> Source {
    Source::Token(Arc::clone(token.node()))
}

/// A tokio-util `CancellationToken` as a future trigger (it has no node of
/// ours to wait on); its reason is a `Token` one with the message
/// `"cancellation token cancelled"`, as a `CancellationToken` carries no
/// reason of its own.
#[cfg(feature = "tokio-util")]
pub(crate) fn cancellation_token(token: &tokio_util::sync::CancellationToken) -> super::BoxFuture {
    let cancelled = token.clone().cancelled_owned();
    Box::pin(async move {
        cancelled.await;
        crate::reason::Reason::token("cancellation token cancelled")
    })
}
