//! tokio-util interop both ways, and the `FenceExt` methods.

use fencing::{FenceExt, Fencing, Token};
use std::time::Duration;

#[cfg(feature = "tokio-util")]
mod tokio_util_interop {
    use fencing::{Fencing, Token};
    use std::future::pending;
    use tokio_test::{assert_pending, assert_ready, task};
    use tokio_util::sync::CancellationToken;

    #[tokio::test(start_paused = true)]
    async fn tokio_util_interop_a_cancellation_token_is_a_trigger() {
        let legacy = CancellationToken::new();
        let mut fenced = task::spawn(
            Fencing::new()
                .cancellation_token(&legacy.child_token())
                .code("legacy")
                .run(pending::<()>()),
        );
        assert_pending!(fenced.poll());
        legacy.cancel();
        assert!(fenced.is_woken());
        let err = assert_ready!(fenced.poll()).unwrap_err();
        assert!(err.cancelled_by("legacy"));
        assert!(err.is_token());
        assert_eq!(err.reason().message(), "cancellation token cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_util_interop_a_token_hands_out_a_cancellation_token() {
        let parent = Token::new();
        let token = parent.child();
        let legacy = token.to_cancellation_token();
        let waiting = tokio::spawn(legacy.clone().cancelled_owned());
        tokio::task::yield_now().await;
        assert!(!legacy.is_cancelled());

        parent.cancel_with("shutdown");
        assert!(
            legacy.is_cancelled(),
            "cancelled through the parent, at once"
        );
        waiting.await.unwrap();

        // One way only: cancelling the tokio-util side leaves ours alone.
        let ours = Token::new();
        let theirs = ours.to_cancellation_token();
        theirs.cancel();
        assert!(!ours.is_cancelled());

        // Handed out after the cancel: born cancelled.
        assert!(token.to_cancellation_token().is_cancelled());
    }

    #[test]
    fn tokio_util_interop_a_dropped_token_releases_its_bridge() {
        let token = Token::new();
        let legacy = token.to_cancellation_token();
        assert_eq!(token.__waiter_count(), 1, "the bridge is one hook");
        drop(token);
        assert!(!legacy.is_cancelled(), "dropping is not cancelling");
    }
}

#[tokio::test(start_paused = true)]
async fn future_ext_timeout_with_a_code() {
    let err = tokio::time::sleep(Duration::from_secs(10))
        .fenced_timeout(Duration::from_secs(5), "db")
        .await
        .unwrap_err();
    assert!(err.cancelled_by("db"));
    assert_eq!(err.reason().message(), "timed out after 5s");

    let fast = async { 7 }
        .fenced_timeout(Duration::from_secs(5), "db")
        .await;
    assert_eq!(fast.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn future_ext_fenced_delegates_to_run() {
    let stop = Token::new();
    stop.cancel();
    let fenced = async { 1 }.fenced(
        Fencing::new()
            .timeout(Duration::from_secs(1))
            .token(&stop)
            .code("stop"),
    );
    assert!(
        fenced.is_cancelled(),
        "the same Fenced as Fencing::run returns"
    );
    assert!(fenced.await.unwrap_err().cancelled_by("stop"));
}
