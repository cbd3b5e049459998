//! Tests of [`fencing::Token`]: first cancel wins (rule 2), children follow
//! parents (rule 13), any thread (rule 14), nothing leaks (rule 21), drop
//! guards and the `cancelled` futures.
//!
//! Futures are polled by hand where order matters; nothing sleeps. Where a
//! test must wait for another thread to register a waiter, it spins on
//! `__waiter_count` with `yield_now`, never on the clock.

use fencing::{ReasonKind, Token};
use futures_test::task::new_count_waker;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::thread;
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready};

/// Spins (yielding the thread, never sleeping) until `token` has `n`
/// registered waiters.
fn spin_until_waiters(token: &Token, n: usize) {
    while token.__waiter_count() != n {
        thread::yield_now();
    }
}

/// Yields to the runtime until `token` has `n` registered waiters.
async fn yield_until_waiters(token: &Token, n: usize) {
    while token.__waiter_count() != n {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// Rule 2: first cancel wins.
// ---------------------------------------------------------------------------

#[test]
fn first_cancel_wins_returns_true_once_and_keeps_the_first_reason() {
    let token = Token::new();
    let clone = token.clone();
    assert!(!token.is_cancelled());
    assert_eq!(token.reason(), None);

    assert!(token.cancel_with("first"), "the first cancel wins");
    assert!(!token.cancel_with("second"), "a later cancel loses");
    assert!(!clone.cancel(), "a clone shares the state, so it loses too");
    assert!(!clone.cancel_with(String::from("owned")));

    for handle in [&token, &clone] {
        let reason = handle.reason().expect("cancelled");
        assert!(handle.is_cancelled());
        assert_eq!(reason.message(), "first");
        assert_eq!(reason.kind(), ReasonKind::Token);
        assert!(reason.is_token());
        assert_eq!(reason.code(), None, "a token's reason has no code");
    }
}

#[test]
fn first_cancel_wins_with_the_default_message_and_an_owned_message() {
    let plain = Token::new();
    assert!(plain.cancel());
    assert!(!plain.cancel_with("late"));
    assert_eq!(plain.reason().unwrap().message(), "token cancelled");

    let owned = Token::default();
    let who = "alice";
    assert!(owned.cancel_with(format!("{who} logged out")));
    assert!(!owned.cancel());
    assert_eq!(owned.reason().unwrap().message(), "alice logged out");
}

#[test]
fn first_cancel_wins_across_racing_threads() {
    const THREADS: usize = 10;
    const ROUNDS: usize = 200;

    for round in 0..ROUNDS {
        let token = Token::new();
        let child = token.child();
        let barrier = Arc::new(Barrier::new(THREADS));
        let racers: Vec<_> = (0..THREADS)
            .map(|i| {
                let token = token.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    let won = token.cancel_with(format!("thread {i}"));
                    // Read right after our own cancel returned: whether we
                    // won or lost, the winner's reason is already visible.
                    let seen = token.reason().expect("cancelled").message().to_owned();
                    (i, won, seen)
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|h| h.join().unwrap()).collect();

        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, won, _)| *won)
            .map(|(i, _, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        let expected = format!("thread {}", winners[0]);
        for (i, _, seen) in &results {
            assert_eq!(
                seen, &expected,
                "round {round}: thread {i} saw another reason"
            );
        }
        assert_eq!(token.reason().unwrap().message(), expected);
        assert_eq!(child.reason().unwrap().message(), expected, "round {round}");
        assert!(!token.cancel_with("after the race"));
    }
}

// ---------------------------------------------------------------------------
// Rule 13: children follow parents, never the reverse.
// ---------------------------------------------------------------------------

#[test]
fn children_follow_parents_with_the_parents_reason() {
    let parent = Token::new();
    let child = parent.child();
    let grandchild = child.child();
    assert!(!child.is_cancelled() && !grandchild.is_cancelled());

    assert!(parent.cancel_with("shutdown"));

    let reason = parent.reason().unwrap();
    for token in [&child, &grandchild] {
        assert!(token.is_cancelled());
        assert_eq!(token.reason().as_ref(), Some(&reason));
        assert_eq!(token.reason().unwrap().message(), "shutdown");
        assert!(
            !token.cancel_with("late"),
            "a followed child cannot be re-cancelled"
        );
        assert_eq!(token.reason().unwrap().message(), "shutdown");
    }
}

#[test]
fn children_follow_parents_never_the_reverse() {
    let parent = Token::new();
    let child = parent.child();
    let sibling = parent.child();
    let grandchild = child.child();

    assert!(child.cancel_with("child only"));

    assert!(
        !parent.is_cancelled(),
        "cancelling a child never touches the parent"
    );
    assert_eq!(parent.reason(), None);
    assert!(!sibling.is_cancelled(), "nor a sibling");
    assert_eq!(grandchild.reason().unwrap().message(), "child only");

    // The parent is still fully usable, and its own cancel still wins for it.
    assert!(parent.cancel_with("parent"));
    assert_eq!(sibling.reason().unwrap().message(), "parent");
}

#[test]
fn children_follow_parents_through_grandchildren() {
    let root = Token::new();
    let middle = root.child();
    let leaves: Vec<Token> = (0..5).map(|_| middle.child()).collect();
    let great: Vec<Token> = leaves.iter().map(Token::child).collect();

    assert!(middle.cancel_with("middle"));
    assert!(!root.is_cancelled());
    for token in leaves.iter().chain(&great) {
        assert_eq!(token.reason().unwrap().message(), "middle");
    }
}

#[test]
fn children_follow_parents_a_child_created_after_the_cancel_is_born_cancelled() {
    let parent = Token::new();
    assert!(parent.cancel_with("already gone"));

    let late = parent.child();
    assert!(late.is_cancelled(), "born cancelled");
    assert_eq!(late.reason(), parent.reason(), "with the parent's reason");
    assert!(!late.cancel_with("mine"), "and its own cancel loses");

    let later = late.child();
    assert_eq!(later.reason().unwrap().message(), "already gone");

    // A born-cancelled child needs nothing from the parent.
    assert_eq!(parent.__child_count(), 0);
    assert_eq!(late.__child_count(), 0);
}

#[test]
fn children_follow_parents_after_the_parent_is_dropped() {
    let parent = Token::new();
    let child = parent.child();
    let grandchild = child.child();
    drop(parent);

    assert!(!child.is_cancelled(), "dropping a parent cancels nothing");
    assert!(!grandchild.is_cancelled());

    // The orphan still works: it makes children and can be cancelled.
    let late = child.child();
    assert_eq!(child.__child_count(), 2);
    assert!(child.cancel_with("orphan"));
    for token in [&grandchild, &late] {
        assert_eq!(token.reason().unwrap().message(), "orphan");
    }
}

#[test]
fn children_follow_parents_through_a_dropped_intermediate() {
    let grandparent = Token::new();
    let middle = grandparent.child();
    let grandchild = middle.child();
    drop(middle); // every handle of the intermediate token is gone

    assert_eq!(
        grandparent.__child_count(),
        1,
        "the intermediate stays registered while it has children"
    );
    assert!(grandparent.cancel_with("from the top"));
    assert!(grandchild.is_cancelled());
    assert_eq!(grandchild.reason().unwrap().message(), "from the top");

    drop(grandchild);
    assert_eq!(
        grandparent.__child_count(),
        0,
        "and leaves with its last child"
    );
}

#[test]
fn children_follow_parents_a_dropped_intermediate_leaves_with_its_last_child() {
    let grandparent = Token::new();
    let middle = grandparent.child();
    let a = middle.child();
    let b = middle.child();
    drop(middle);

    drop(a);
    assert_eq!(
        grandparent.__child_count(),
        1,
        "b still holds the intermediate"
    );
    drop(b);
    assert_eq!(grandparent.__child_count(), 0);
    assert!(!grandparent.is_cancelled());
}

#[test]
fn children_follow_parents_but_keep_their_own_earlier_reason() {
    let parent = Token::new();
    let early = parent.child();
    let early_kid = early.child();
    let other = parent.child();

    assert!(early.cancel_with("child first"));
    assert!(parent.cancel_with("parent later"));

    assert_eq!(early.reason().unwrap().message(), "child first");
    assert_eq!(early_kid.reason().unwrap().message(), "child first");
    assert_eq!(other.reason().unwrap().message(), "parent later");
    assert_eq!(parent.reason().unwrap().message(), "parent later");
}

#[test]
fn children_follow_parents_waking_the_childs_waiters() {
    let parent = Token::new();
    let child = parent.child();
    let grandchild = child.child();
    let mut on_child = spawn(child.cancelled());
    let mut on_grandchild = spawn(grandchild.cancelled());
    assert_pending!(on_child.poll());
    assert_pending!(on_grandchild.poll());

    parent.cancel_with("wake the family");

    assert!(on_child.is_woken());
    assert!(on_grandchild.is_woken());
    assert_eq!(assert_ready!(on_child.poll()).message(), "wake the family");
    assert_eq!(
        assert_ready!(on_grandchild.poll()).message(),
        "wake the family"
    );
}

#[test]
fn children_follow_parents_down_a_deep_chain() {
    // `cancel` walks the subtree with an explicit stack: a deep chain does
    // not overflow the stack.
    const DEPTH: usize = 100_000;
    let root = Token::new();
    let mut chain = Vec::with_capacity(DEPTH);
    chain.push(root.child());
    for i in 1..DEPTH {
        let next = chain[i - 1].child();
        chain.push(next);
    }

    assert!(root.cancel_with("deep"));
    assert_eq!(chain.last().unwrap().reason().unwrap().message(), "deep");

    // Drop leaf first: each node is freed by its own handle, one at a time.
    while let Some(token) = chain.pop() {
        drop(token);
    }
    assert_eq!(root.__child_count(), 0);
}

/// A child holds its parent strongly, so dropping the leaf of a long chain
/// whose other handles are gone frees the whole chain: the drop must unwind
/// it in a loop, not one `Arc<Node>` drop inside the next (which overflowed
/// the stack at a depth of a few thousand before it was fixed).
#[test]
fn children_follow_parents_dropping_a_deep_chain_does_not_overflow() {
    const DEPTH: usize = 100_000;
    let root = Token::new();
    let mut leaf = root.child();
    for _ in 1..DEPTH {
        leaf = leaf.child(); // the previous handle is dropped, its node lives on
    }
    assert_eq!(root.__child_count(), 1);
    drop(leaf); // frees DEPTH nodes, recursively
    assert_eq!(root.__child_count(), 0);
}

// ---------------------------------------------------------------------------
// `cancelled()` and wakers.
// ---------------------------------------------------------------------------

#[test]
fn cancelled_resolves_immediately_if_already_cancelled() {
    let token = Token::new();
    token.cancel_with("before");

    let mut borrowed = spawn(token.cancelled());
    assert_eq!(assert_ready!(borrowed.poll()).message(), "before");
    let mut owned = spawn(token.clone().cancelled_owned());
    assert_eq!(assert_ready!(owned.poll()).message(), "before");
    assert_eq!(token.__waiter_count(), 0, "a ready poll registers nothing");

    let late_child = token.child();
    let mut on_child = spawn(late_child.cancelled());
    assert_eq!(assert_ready!(on_child.poll()).message(), "before");
}

#[test]
fn cancelled_is_pending_until_cancel_then_woken_and_ready() {
    let token = Token::new();
    let mut waiting = spawn(token.cancelled());
    assert_pending!(waiting.poll());
    assert_pending!(waiting.poll(), "still pending without a cancel");
    assert!(!waiting.is_woken());

    assert!(token.cancel_with("go"));
    assert!(waiting.is_woken());
    let reason = assert_ready!(waiting.poll());
    assert_eq!(reason.message(), "go");
    assert_eq!(Some(reason), token.reason());
}

#[test]
fn cancelled_wakes_each_waker_exactly_once() {
    let token = Token::new();
    let (waker, count) = new_count_waker();
    let mut cx = Context::from_waker(&waker);

    let mut first = pin!(token.cancelled());
    let mut second = pin!(token.clone().cancelled_owned());
    // Polling the same future twice keeps one registration.
    for _ in 0..3 {
        assert!(first.as_mut().poll(&mut cx).is_pending());
    }
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert_eq!(token.__waiter_count(), 2);
    assert_eq!(count.get(), 0);

    token.cancel();
    assert_eq!(count.get(), 2, "one wake per registered future");
    token.cancel();
    token.cancel_with("again");
    assert_eq!(count.get(), 2, "a losing cancel wakes nobody");

    assert!(first.as_mut().poll(&mut cx).is_ready());
    assert!(second.as_mut().poll(&mut cx).is_ready());
    assert_eq!(count.get(), 2);
}

#[test]
fn cancelled_wakes_only_the_latest_waker() {
    let token = Token::new();
    let (old, old_count) = new_count_waker();
    let (new, new_count) = new_count_waker();
    let mut future = pin!(token.cancelled());

    assert!(future
        .as_mut()
        .poll(&mut Context::from_waker(&old))
        .is_pending());
    assert!(future
        .as_mut()
        .poll(&mut Context::from_waker(&new))
        .is_pending());
    assert_eq!(
        token.__waiter_count(),
        1,
        "the waker is replaced, not added"
    );

    token.cancel();
    assert_eq!(old_count.get(), 0, "a replaced waker is not woken");
    assert_eq!(new_count.get(), 1);
}

#[test]
fn cancelled_on_a_child_is_woken_once_by_the_parent() {
    let parent = Token::new();
    let child = parent.child();
    let (waker, count) = new_count_waker();
    let mut cx = Context::from_waker(&waker);
    let mut on_parent = pin!(parent.cancelled());
    let mut on_child = pin!(child.cancelled());
    assert!(on_parent.as_mut().poll(&mut cx).is_pending());
    assert!(on_child.as_mut().poll(&mut cx).is_pending());

    parent.cancel();
    assert_eq!(count.get(), 2);
    child.cancel();
    assert_eq!(count.get(), 2, "the child was cancelled already");
    assert!(on_child.as_mut().poll(&mut cx).is_ready());
}

// ---------------------------------------------------------------------------
// Drop guards.
// ---------------------------------------------------------------------------

#[test]
fn drop_guard_cancels_on_drop() {
    let token = Token::new();
    let guard = token.clone().drop_guard();
    assert!(!token.is_cancelled(), "not while the guard lives");
    drop(guard);
    assert!(token.is_cancelled());
    assert!(token.reason().unwrap().is_token());
}

#[test]
fn drop_guard_cancels_when_the_scope_unwinds() {
    let token = Token::new();
    let guarded = token.clone();
    let result = panic::catch_unwind(AssertUnwindSafe(move || {
        let _guard = guarded.drop_guard();
        panic!("boom");
    }));
    assert!(result.is_err());
    assert!(token.is_cancelled(), "the guard cancels during unwinding");
}

#[test]
fn drop_guard_disarm_does_not_cancel() {
    let token = Token::new();
    let child = token.child();
    let returned = token.clone().drop_guard().disarm();
    assert!(!token.is_cancelled());
    assert!(!child.is_cancelled());
    // The returned token is the guarded one.
    assert!(returned.cancel_with("via returned"));
    assert_eq!(token.reason().unwrap().message(), "via returned");
}

#[test]
fn drop_guard_keeps_an_earlier_reason() {
    let token = Token::new();
    let guard = token.clone().drop_guard();
    token.cancel_with("earlier");
    drop(guard);
    assert_eq!(token.reason().unwrap().message(), "earlier");
}

#[test]
fn drop_guard_on_a_child_leaves_the_parent() {
    let parent = Token::new();
    let child = parent.child();
    drop(child.clone().drop_guard());
    assert!(child.is_cancelled());
    assert!(!parent.is_cancelled());
}

#[test]
fn drop_guard_ref_cancels_on_drop() {
    let token = Token::new();
    let child = token.child();
    {
        let _guard = token.drop_guard_ref();
        assert!(!token.is_cancelled());
    }
    assert!(token.is_cancelled());
    assert!(child.is_cancelled(), "and the children follow");
}

#[test]
fn drop_guard_ref_disarm_does_not_cancel() {
    let token = Token::new();
    let returned = token.drop_guard_ref().disarm();
    assert!(
        std::ptr::eq(returned, &token),
        "disarm returns the borrowed token"
    );
    assert!(!token.is_cancelled());
}

// ---------------------------------------------------------------------------
// Rule 14: any thread.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn any_thread_cancel_wakes_a_task_on_a_current_thread_runtime() {
    let token = Token::new();
    let waiter = {
        let token = token.clone();
        tokio::spawn(async move { token.cancelled().await })
    };
    yield_until_waiters(&token, 1).await;

    let remote = token.clone();
    let won = thread::spawn(move || remote.cancel_with("from a plain thread"))
        .join()
        .unwrap();
    assert!(won);

    let reason = waiter.await.unwrap();
    assert_eq!(reason.message(), "from a plain thread");
    assert_eq!(token.__waiter_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_thread_cancel_wakes_a_task_on_a_multi_thread_runtime() {
    let token = Token::new();
    let child = token.child();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let child = child.clone();
            tokio::spawn(async move { child.cancelled().await })
        })
        .collect();
    yield_until_waiters(&child, 4).await;

    let remote = token.clone();
    thread::spawn(move || remote.cancel_with("from a plain thread"))
        .join()
        .unwrap();

    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().message(), "from a plain thread");
    }
}

#[test]
fn any_thread_cancel_wakes_a_task_on_a_runtime_it_is_not_part_of() {
    // The waiter lives on a runtime driven by another thread; the cancel
    // comes from this thread, which has no runtime at all.
    let token = Token::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let waiting = token.clone();
    let driver = thread::spawn(move || runtime.block_on(waiting.cancelled_owned()));
    spin_until_waiters(&token, 1);
    assert!(token.cancel_with("outside"));
    assert_eq!(driver.join().unwrap().message(), "outside");
}

#[test]
fn any_thread_wait_blocking_returns_when_another_thread_cancels() {
    let token = Token::new();
    let blocked = {
        let token = token.clone();
        thread::spawn(move || token.wait_blocking())
    };
    spin_until_waiters(&token, 1); // the thread is registered (and parked, or about to be)
    assert!(token.cancel_with("stop"));
    let reason = blocked.join().unwrap();
    assert_eq!(reason.message(), "stop");
    assert_eq!(token.__waiter_count(), 0);
}

#[test]
fn any_thread_wait_blocking_on_a_child_returns_when_the_parent_is_cancelled() {
    let parent = Token::new();
    let child = parent.child();
    let blocked = {
        let child = child.clone();
        thread::spawn(move || child.wait_blocking())
    };
    spin_until_waiters(&child, 1);
    let canceller = {
        let parent = parent.clone();
        thread::spawn(move || parent.cancel_with("parent, elsewhere"))
    };
    assert!(canceller.join().unwrap());
    assert_eq!(blocked.join().unwrap().message(), "parent, elsewhere");
    assert_eq!(parent.reason(), child.reason());
}

#[test]
fn any_thread_wait_blocking_returns_at_once_if_already_cancelled() {
    let token = Token::new();
    token.cancel_with("done");
    assert_eq!(token.wait_blocking().message(), "done");
    assert_eq!(token.__waiter_count(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn any_thread_cancelled_owned_is_static() {
    fn assert_static_send<T: Send + 'static>(value: T) -> T {
        value
    }

    let token = Token::new();
    let owned = assert_static_send(token.clone().cancelled_owned());
    let spawned = tokio::spawn(owned);
    // The owned future outlives every other handle.
    let remote = token.clone();
    drop(token);
    yield_until_waiters(&remote, 1).await;
    thread::spawn(move || remote.cancel_with("owned"))
        .join()
        .unwrap();
    assert_eq!(spawned.await.unwrap().message(), "owned");
}

#[test]
fn any_thread_cancelled_owned_can_move_to_another_thread() {
    let token = Token::new();
    let owned = token.clone().cancelled_owned();
    let waiter = thread::spawn(move || tokio_test::block_on(owned));
    spin_until_waiters(&token, 1);
    token.cancel_with("moved");
    assert_eq!(waiter.join().unwrap().message(), "moved");
}

// ---------------------------------------------------------------------------
// Rule 21 (and 13): nothing leaks.
// ---------------------------------------------------------------------------

#[test]
fn nothing_leaks_after_a_million_short_lived_children() {
    let parent = Token::new();
    let long_lived: Vec<Token> = (0..100).map(|_| parent.child()).collect();
    assert_eq!(parent.__child_count(), 100);

    for i in 0..1_000_000 {
        let child = parent.child();
        if i % 100_000 == 0 {
            assert_eq!(parent.__child_count(), 101, "the live child is counted");
            let grandchild = child.child();
            assert_eq!(child.__child_count(), 1);
            drop(grandchild);
            assert_eq!(child.__child_count(), 0);
        }
        drop(child);
    }
    assert_eq!(
        parent.__child_count(),
        100,
        "only the long-lived children remain"
    );

    drop(long_lived);
    assert_eq!(parent.__child_count(), 0);
    assert!(!parent.is_cancelled());
    // The parent still works after all that churn.
    let last = parent.child();
    parent.cancel();
    assert!(last.is_cancelled());
}

#[test]
fn nothing_leaks_when_children_churn_on_several_threads() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50_000;
    let parent = Token::new();
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let parent = parent.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut kept = Vec::new();
                for i in 0..PER_THREAD {
                    let child = parent.child();
                    if i % 1_000 == 0 {
                        kept.push(child);
                    }
                }
                assert!(parent.__child_count() >= kept.len());
                kept.len()
            })
        })
        .collect();
    let kept: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(kept, THREADS * PER_THREAD / 1_000);
    assert_eq!(
        parent.__child_count(),
        0,
        "kept children died with their threads"
    );
}

#[test]
fn nothing_leaks_when_the_parent_is_cancelled_while_children_churn() {
    let parent = Token::new();
    let kept: Vec<Token> = (0..10).map(|_| parent.child()).collect();
    parent.cancel_with("done");
    for _ in 0..10_000 {
        let child = parent.child();
        assert!(child.is_cancelled());
    }
    assert_eq!(
        parent.__child_count(),
        10,
        "born-cancelled children never register"
    );
    drop(kept);
    assert_eq!(parent.__child_count(), 0);
}

#[test]
fn nothing_leaks_from_dropped_pending_cancelled_futures() {
    let token = Token::new();
    let (waker, count) = new_count_waker();
    let mut cx = Context::from_waker(&waker);

    let mut borrowed: Vec<_> = (0..8).map(|_| Box::pin(token.cancelled())).collect();
    let mut owned: Vec<_> = (0..8)
        .map(|_| Box::pin(token.clone().cancelled_owned()))
        .collect();
    for future in &mut borrowed {
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
    }
    for future in &mut owned {
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
    }
    assert_eq!(token.__waiter_count(), 16, "one registration per future");

    borrowed.truncate(3);
    owned.truncate(3);
    assert_eq!(token.__waiter_count(), 6);
    drop(borrowed);
    drop(owned);
    assert_eq!(token.__waiter_count(), 0);

    // Nothing registered is left to wake.
    token.cancel();
    assert_eq!(count.get(), 0);
}

#[test]
fn nothing_leaks_from_dropped_tokio_test_tasks() {
    let token = Token::new();
    let mut a = spawn(token.cancelled());
    let mut b = spawn(token.clone().cancelled_owned());
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_eq!(token.__waiter_count(), 2);
    drop(a);
    assert_eq!(token.__waiter_count(), 1);
    drop(b);
    assert_eq!(token.__waiter_count(), 0);
}

#[test]
fn nothing_leaks_a_cancelled_tokens_waiter_list_is_empty() {
    let parent = Token::new();
    let child = parent.child();
    let mut on_parent: Vec<_> = (0..3).map(|_| spawn(parent.cancelled())).collect();
    let mut on_child: Vec<_> = (0..3).map(|_| spawn(child.cancelled())).collect();
    for task in on_parent.iter_mut().chain(&mut on_child) {
        assert_pending!(task.poll());
    }
    assert_eq!(parent.__waiter_count(), 3);
    assert_eq!(child.__waiter_count(), 3);

    parent.cancel();
    assert_eq!(parent.__waiter_count(), 0, "cancel drains the waiters");
    assert_eq!(child.__waiter_count(), 0, "the child's too");

    // Ready futures, old or new, register nothing; dropping them is fine.
    for task in on_parent.iter_mut().chain(&mut on_child) {
        assert!(task.is_woken());
        assert_ready!(task.poll());
    }
    let mut late = spawn(parent.cancelled());
    assert_ready!(late.poll());
    assert_eq!(parent.wait_blocking().message(), "token cancelled");
    drop((on_parent, on_child, late));
    assert_eq!(parent.__waiter_count(), 0);
    assert_eq!(child.__waiter_count(), 0);
}

#[test]
fn nothing_leaks_when_a_future_is_dropped_while_cancel_runs_on_another_thread() {
    // Dropping a pending future races the drain in `cancel`: whichever
    // comes first, the list ends up empty and nothing panics.
    for _ in 0..200 {
        let token = Token::new();
        let (waker, _count) = new_count_waker();
        let mut future = Box::pin(token.clone().cancelled_owned());
        assert!(future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let barrier = Arc::new(Barrier::new(2));
        let canceller = {
            let token = token.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                token.cancel()
            })
        };
        barrier.wait();
        drop(future);
        assert!(canceller.join().unwrap());
        assert_eq!(token.__waiter_count(), 0);
    }
}

/// A waker that owns a pending wait on the same token: dropping it
/// deregisters from the token's waiter list.
struct OwnsAWait {
    _wait: std::sync::Mutex<Option<Pin<Box<fencing::WaitForCancellationFutureOwned>>>>,
}

impl std::task::Wake for OwnsAWait {
    fn wake(self: Arc<Self>) {}
}

/// Replacing a registered waker must not drop the old one under the waiter
/// lock: here the old waker's drop deregisters another wait on the same
/// token, which would relock it. A deadlock fails the test through the
/// watchdog; a pass returns at once.
#[test]
fn any_thread_replacing_a_waker_does_not_drop_it_under_the_lock() {
    let worker = Token::new();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let noop = futures_test::task::noop_waker();
        let mut first = Box::pin(worker.clone().cancelled_owned());
        assert!(first
            .as_mut()
            .poll(&mut Context::from_waker(&noop))
            .is_pending());
        let owning = Waker::from(Arc::new(OwnsAWait {
            _wait: std::sync::Mutex::new(Some(first)),
        }));
        let mut second = Box::pin(worker.cancelled());
        assert!(second
            .as_mut()
            .poll(&mut Context::from_waker(&owning))
            .is_pending());
        drop(owning); // the waiter list now holds the last clone
        assert!(second
            .as_mut()
            .poll(&mut Context::from_waker(&noop))
            .is_pending());
        assert_eq!(
            worker.__waiter_count(),
            1,
            "the first wait left with its waker"
        );
        done_tx.send(()).unwrap();
    });
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_ok(),
        "deadlock: a waker was dropped under the waiter lock"
    );
}
