//! The fence and its bodies, as the fence and context benches both run them.
// The token bench includes `support` too and uses none of this.
#![allow(dead_code)]

use fencing::{Cancelled, Token};
use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

/// The request budget every bench declares.
pub(crate) const BUDGET: Duration = Duration::from_secs(30);

pub(crate) async fn ready_body() -> u64 {
    black_box(1)
}

pub(crate) async fn pending_once_body() -> u64 {
    tokio::task::yield_now().await;
    black_box(1)
}

/// The fence, declared per iteration as a user would.
pub(crate) async fn fenced<F: Future<Output = u64>>(
    shutdown: &Token,
    body: F,
) -> Result<u64, Cancelled> {
    fencing::Fencing::new()
        .timeout(BUDGET)
        .code("budget")
        .token(shutdown)
        .code("shutdown")
        .run(body)
        .await
}
