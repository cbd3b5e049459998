//! AND composition: a trigger that fires once all of its parts have fired.

use super::BoxFuture;
use crate::error::Cancelled;
use crate::reason::{Reason, ReasonKind};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

/// A trigger that fires once every one of `waits` has resolved, each being
/// what one part `Fencing` fired with. Every part is armed at once, so each
/// part's time counts from the first poll, not from when the parts before it
/// fired. See [`Fencing::all_of`](crate::Fencing::all_of).
pub(crate) fn all_of<W>(mut waits: Vec<W>) -> BoxFuture
where
    W: Future<Output = Cancelled> + Unpin + Send + 'static,
{
    let mut fired: Vec<Option<String>> = vec![None; waits.len()];
    Box::pin(async move {
        poll_fn(|cx| {
            let mut pending = false;
            for (wait, fired) in waits.iter_mut().zip(&mut fired) {
                if fired.is_some() {
                    continue;
                }
                match Pin::new(&mut *wait).poll(cx) {
                    Poll::Ready(cancelled) => {
                        let reasons: Vec<String> = cancelled
                            .reasons()
                            .iter()
                            .map(ToString::to_string)
                            .collect();
                        *fired = Some(reasons.join(", "));
                    }
                    Poll::Pending => pending = true,
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let fired: Vec<String> = fired.into_iter().flatten().collect();
        Reason::with_kind(ReasonKind::AllOf, format!("all of: {}", fired.join("; ")))
    })
}
