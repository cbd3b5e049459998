//! Loom models of the token tree engine (`token/tree.rs`): each races two or
//! three threads over one part of a token tree and checks, in every
//! interleaving loom explores, the invariants and the lost-wakeup arguments
//! written at the top of `tree.rs`.
//!
//! Run them with `.ci/loom` (release mode, `LOOM_MAX_PREEMPTIONS=2`). Leaks
//! are checked by hand: `Arc`/`Weak` are `std`'s under loom (see
//! `src/loom.rs`), so loom's own leak check does not see nodes; the
//! counters and wakers are loom's, so it sees those.

use crate::loom::model;
use crate::token::tree::Node;
use crate::token::Token;
use loom::future::block_on;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

fn message(token: &Token) -> Option<String> {
    token.reason().map(|reason| reason.message().to_owned())
}

fn node_of(token: &Token) -> Weak<Node> {
    Arc::downgrade(token.node())
}

/// A waker that counts its wakes in a loom atomic.
struct CountingWaker(AtomicUsize);

impl CountingWaker {
    fn new() -> Arc<Self> {
        Arc::new(Self(AtomicUsize::new(0)))
    }

    fn wakes(&self) -> usize {
        self.0.load(SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A waker that uses the token it waits on when woken and when dropped, as
/// a waker whose drop drops a future that deregisters from the node would:
/// if the engine woke or dropped it under the node's `waiters` lock, loom
/// would report the thread blocked on a lock it holds.
struct ReentrantWaker {
    token: Token,
    wakes: loom::sync::Arc<AtomicUsize>,
}

impl Wake for ReentrantWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        let _ = self.token.__waiter_count();
    }
}

impl Drop for ReentrantWaker {
    fn drop(&mut self) {
        let _ = self.token.__waiter_count();
    }
}

// ---------------------------------------------------------------------------
// Cancel racing child creation (invariant 3).
// ---------------------------------------------------------------------------

/// The parent's first child is created while the parent is cancelled: the
/// child is either registered and then reached by the cancel, or born
/// cancelled; never missed. This is the race in which the creating thread
/// allocates the parent's shards while the cancel looks for them.
#[test]
fn cancel_racing_first_child_creation_never_misses_the_child() {
    model(|| {
        let parent = Token::new();
        let creator = {
            let parent = parent.clone();
            thread::spawn(move || parent.child())
        };
        assert!(parent.cancel_with("stop"));
        let child = creator.join().unwrap();
        assert_eq!(message(&child).as_deref(), Some("stop"));
        assert_eq!(block_on(child.cancelled()).message(), "stop");
    });
}

/// As above with the shards already there (a sibling, in another shard than
/// the new child's), so the lock argument alone must hold: the creator's
/// shard lock and the cancel's visit of that shard are ordered one way or
/// the other, and both ways end with the child cancelled.
#[test]
fn cancel_racing_child_creation_beside_a_sibling_never_misses_the_child() {
    model(|| {
        let parent = Token::new();
        let sibling = parent.child();
        let creator = {
            let parent = parent.clone();
            thread::spawn(move || parent.child())
        };
        assert!(parent.cancel_with("stop"));
        let child = creator.join().unwrap();
        assert_eq!(message(&child).as_deref(), Some("stop"));
        assert_eq!(message(&sibling).as_deref(), Some("stop"));
    });
}

/// Two threads create the parent's first children, racing each other to
/// allocate its shards and the cancel to find them: neither child is missed.
#[test]
fn cancel_racing_children_created_on_two_threads_misses_neither() {
    model(|| {
        let parent = Token::new();
        let create = || {
            let parent = parent.clone();
            thread::spawn(move || parent.child())
        };
        let (a, b) = (create(), create());
        assert!(parent.cancel_with("stop"));
        for creator in [a, b] {
            let child = creator.join().unwrap();
            assert_eq!(message(&child).as_deref(), Some("stop"));
        }
        assert_eq!(parent.__child_count(), 0);
    });
}

/// Grandchildren created under a child while the root is cancelled: the
/// cancel's walk visits the child with the same protocol as the root.
#[test]
fn cancel_racing_grandchild_creation_never_misses_the_grandchild() {
    model(|| {
        let root = Token::new();
        let child = root.child();
        let creator = {
            let child = child.clone();
            thread::spawn(move || child.child())
        };
        assert!(root.cancel_with("stop"));
        let grandchild = creator.join().unwrap();
        assert_eq!(message(&child).as_deref(), Some("stop"));
        assert_eq!(message(&grandchild).as_deref(), Some("stop"));
    });
}

// ---------------------------------------------------------------------------
// Cancel racing child drop (invariant 2).
// ---------------------------------------------------------------------------

/// A child's last handle is dropped while the parent is cancelled: the
/// cancel may upgrade the child's `Weak` first (and then drop the node
/// itself, outside every lock) or find it gone. Either way the node is
/// freed and leaves the parent's slab, and nothing deadlocks.
#[test]
fn cancel_racing_child_drop_frees_the_child() {
    model(|| {
        let parent = Token::new();
        let child = parent.child();
        let node = node_of(&child);
        let dropper = thread::spawn(move || drop(child));
        assert!(parent.cancel_with("stop"));
        dropper.join().unwrap();
        assert!(node.upgrade().is_none(), "the child's node leaked");
        assert_eq!(parent.__child_count(), 0);
    });
}

/// A middle node's last handle is dropped, and its child waited on, while
/// the root is cancelled: the middle stays alive and registered through its
/// own child, so the cancel still reaches and wakes the grandchild; once
/// that drops, the whole chain is freed. (Dropping the handle is a `std`
/// refcount decrement, invisible to loom: the wait is what races.)
#[test]
fn cancel_racing_middle_drop_still_wakes_the_grandchild() {
    model(|| {
        let root = Token::new();
        let middle = root.child();
        let leaf = middle.child();
        let middle_node = node_of(&middle);
        let waiter = thread::spawn(move || {
            drop(middle);
            let reason = block_on(leaf.cancelled());
            (leaf, reason.message().to_owned())
        });
        assert!(root.cancel_with("stop"));
        let (leaf, waited) = waiter.join().unwrap();
        assert_eq!(waited, "stop");
        assert_eq!(message(&leaf).as_deref(), Some("stop"));
        assert_eq!(
            root.__child_count(),
            1,
            "the middle stays while it has a child"
        );
        drop(leaf);
        assert!(middle_node.upgrade().is_none(), "the middle node leaked");
        assert_eq!(root.__child_count(), 0);
    });
}

/// The last handle of a chain (`root` <- `upper` <- `lower`, `upper`
/// already handle-less) is dropped while the root is cancelled: the drop
/// unwinds the chain in a loop, the cancel's walk may hold either node for
/// a while (and then frees it itself); both nodes are freed exactly once
/// and leave the root's slab.
#[test]
fn cancel_racing_a_chain_unwinding_frees_the_chain() {
    model(|| {
        let root = Token::new();
        let upper = root.child();
        let lower = upper.child();
        let (upper_node, lower_node) = (node_of(&upper), node_of(&lower));
        drop(upper);
        let dropper = thread::spawn(move || drop(lower));
        assert!(root.cancel_with("stop"));
        dropper.join().unwrap();
        assert!(lower_node.upgrade().is_none(), "the lower node leaked");
        assert!(upper_node.upgrade().is_none(), "the upper node leaked");
        assert_eq!(root.__child_count(), 0);
    });
}

// ---------------------------------------------------------------------------
// Cancel racing waiter registration (invariant 4).
// ---------------------------------------------------------------------------

/// A task waits while the token is cancelled: it is woken, or sees the
/// reason when it polls; never a lost wakeup (loom reports a deadlock if
/// `block_on` is left parked). The first poll uses another waker, so the
/// second registers through the replace path.
#[test]
fn cancel_racing_waiter_registration_wakes_the_waiter() {
    model(|| {
        let token = Token::new();
        let waiter = {
            let token = token.clone();
            thread::spawn(move || {
                let first = CountingWaker::new();
                let mut wait = token.cancelled();
                let polled =
                    Pin::new(&mut wait).poll(&mut Context::from_waker(&Waker::from(first.clone())));
                if let Poll::Ready(reason) = polled {
                    assert_eq!(first.wakes(), 0);
                    return reason.message().to_owned();
                }
                // Pending: registered. Waiting with another waker replaces it.
                let reason = block_on(&mut wait);
                drop(wait);
                assert!(first.wakes() <= 1);
                reason.message().to_owned()
            })
        };
        assert!(token.cancel_with("stop"));
        assert_eq!(waiter.join().unwrap(), "stop");
        assert_eq!(token.__waiter_count(), 0);
    });
}

/// A task waits on a child while the parent is cancelled: the walk wakes
/// the child's waiters with the parent's reason.
#[test]
fn cancel_racing_child_waiter_wakes_it_with_the_parents_reason() {
    model(|| {
        let parent = Token::new();
        let child = parent.child();
        let waiter = thread::spawn(move || block_on(child.cancelled()).message().to_owned());
        assert!(parent.cancel_with("stop"));
        assert_eq!(waiter.join().unwrap(), "stop");
    });
}

/// A waiter polls once and gives up (drops its future, deregistering) while
/// the token is cancelled: it is woken at most once, and nothing stays
/// registered.
#[test]
fn cancel_racing_waiter_deregistration_leaves_nothing_registered() {
    model(|| {
        let token = Token::new();
        let waiter = {
            let token = token.clone();
            thread::spawn(move || {
                let counter = CountingWaker::new();
                let mut wait = token.cancelled();
                let polled = Pin::new(&mut wait)
                    .poll(&mut Context::from_waker(&Waker::from(counter.clone())));
                drop(wait);
                (polled.is_ready(), counter)
            })
        };
        assert!(token.cancel_with("stop"));
        let (ready, counter) = waiter.join().unwrap();
        assert!(counter.wakes() <= 1);
        if ready {
            assert_eq!(counter.wakes(), 0, "woken although it never registered");
        }
        assert_eq!(token.__waiter_count(), 0);
    });
}

/// A waiter registers one waker, replaces it with another, and gives up,
/// while the token is cancelled; the wakers lock the token when woken and
/// when dropped. No lock is held while a waker is woken or dropped (the
/// replaced one, the drained ones, the deregistered one), so nothing
/// deadlocks; the last waker is woken at most once and nothing stays
/// registered.
#[test]
fn wakers_may_reenter_the_token_when_woken_or_dropped() {
    model(|| {
        let token = Token::new();
        let wakes = loom::sync::Arc::new(AtomicUsize::new(0));
        let waiter = {
            let token = token.clone();
            let wakes = wakes.clone();
            thread::spawn(move || {
                let mut wait = token.cancelled();
                for _ in 0..2 {
                    // The engine's clone is the only one left after the
                    // poll, so it is the engine that drops it.
                    let waker = Waker::from(Arc::new(ReentrantWaker {
                        token: token.clone(),
                        wakes: wakes.clone(),
                    }));
                    let polled = Pin::new(&mut wait).poll(&mut Context::from_waker(&waker));
                    drop(waker);
                    if polled.is_ready() {
                        break;
                    }
                }
            })
        };
        assert!(token.cancel_with("stop"));
        waiter.join().unwrap();
        assert!(wakes.load(SeqCst) <= 1);
        assert_eq!(token.__waiter_count(), 0);
    });
}

// ---------------------------------------------------------------------------
// Reason read and `is_cancelled` racing cancel (invariant 1).
// ---------------------------------------------------------------------------

/// A reader looks at a token and its child while the token is cancelled:
/// `is_cancelled()` true means the reason is there and is the winner's,
/// a reason seen means `is_cancelled()`, and neither goes back.
#[test]
fn reason_and_is_cancelled_racing_cancel_agree() {
    model(|| {
        let token = Token::new();
        let child = token.child();
        let reader = {
            let token = token.clone();
            thread::spawn(move || {
                for t in [&token, &child] {
                    let cancelled = t.is_cancelled();
                    let reason = message(t);
                    if cancelled {
                        assert_eq!(reason.as_deref(), Some("stop"));
                    }
                    if reason.is_some() {
                        assert!(t.is_cancelled());
                        assert_eq!(reason.as_deref(), Some("stop"));
                    }
                }
                // A child is cancelled only after its parent.
                if child.is_cancelled() {
                    assert!(token.is_cancelled());
                }
            })
        };
        assert!(token.cancel_with("stop"));
        reader.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Racing cancels (DESIGN rule 2: first cancel wins).
// ---------------------------------------------------------------------------

/// Two threads cancel one token while the main thread waits on its child:
/// exactly one cancel returns `true`; the loser, as soon as its cancel
/// returns, and the waiter, and the child all see the winner's reason.
#[test]
fn two_racing_cancels_one_wins_and_every_waiter_sees_its_reason() {
    model(|| {
        let token = Token::new();
        let child = token.child();
        let cancel = |text: &'static str| {
            let token = token.clone();
            thread::spawn(move || {
                let won = token.cancel_with(text);
                // Right after a losing cancel, the winner's reason is there.
                (won, message(&token).expect("cancelled"))
            })
        };
        let a = cancel("a");
        let b = cancel("b");
        let waited = block_on(child.cancelled()).message().to_owned();
        let (a_won, a_saw) = a.join().unwrap();
        let (b_won, b_saw) = b.join().unwrap();
        assert!(a_won != b_won, "exactly one cancel wins");
        let winner = if a_won { "a" } else { "b" };
        assert_eq!(a_saw, winner);
        assert_eq!(b_saw, winner);
        assert_eq!(waited, winner);
        assert_eq!(message(&token).as_deref(), Some(winner));
        assert_eq!(message(&child).as_deref(), Some(winner));
    });
}

/// A child is cancelled on its own while its parent is cancelled: the child
/// keeps whichever reason came first, its subtree gets the child's reason,
/// and the parent keeps its own.
#[test]
fn child_cancel_racing_parent_cancel_keeps_one_reason_per_subtree() {
    model(|| {
        let parent = Token::new();
        let child = parent.child();
        let grandchild = child.child();
        let canceller = {
            let child = child.clone();
            thread::spawn(move || child.cancel_with("child"))
        };
        assert!(parent.cancel_with("parent"));
        let child_won = canceller.join().unwrap();
        let expected = if child_won { "child" } else { "parent" };
        assert_eq!(message(&parent).as_deref(), Some("parent"));
        assert_eq!(message(&child).as_deref(), Some(expected));
        assert_eq!(message(&grandchild).as_deref(), Some(expected));
        assert_eq!(block_on(grandchild.cancelled()).message(), expected);
    });
}

// ---------------------------------------------------------------------------
// A parent dropped while children are being created (invariant 2).
// ---------------------------------------------------------------------------

/// One thread creates a child of `parent` and lets go of `parent`; the main
/// thread lets go of `parent` too and cancels the root. The handle-less
/// parent stays alive and registered exactly as long as the child does, the
/// root's cancel reaches the child through it (or the child is born
/// cancelled), and dropping the child frees the chain.
#[test]
fn parent_dropped_while_a_child_is_created_keeps_the_chain_until_the_child_drops() {
    model(|| {
        let root = Token::new();
        let parent = root.child();
        let parent_node = node_of(&parent);
        let creator = {
            let parent = parent.clone();
            thread::spawn(move || parent.child())
        };
        drop(parent);
        assert!(root.cancel_with("stop"));
        let child = creator.join().unwrap();
        assert_eq!(message(&child).as_deref(), Some("stop"));
        assert!(
            parent_node.upgrade().is_some(),
            "the child holds its parent"
        );
        assert_eq!(root.__child_count(), 1);
        drop(child);
        assert!(parent_node.upgrade().is_none(), "the parent's node leaked");
        assert_eq!(root.__child_count(), 0);
    });
}

/// Children created and dropped on two threads while the last handle of
/// their parent goes: whichever drop comes last frees the parent and
/// unregisters it from the root, exactly once.
#[test]
fn parent_dropped_while_children_come_and_go_is_freed_once() {
    model(|| {
        let root = Token::new();
        let parent = root.child();
        let parent_node = node_of(&parent);
        let creator = {
            let parent = parent.clone();
            thread::spawn(move || drop(parent.child()))
        };
        let child = parent.child();
        drop(parent);
        drop(child);
        creator.join().unwrap();
        assert!(parent_node.upgrade().is_none(), "the parent's node leaked");
        assert_eq!(root.__child_count(), 0);
    });
}

// ---------------------------------------------------------------------------
// On-cancel hooks.
// ---------------------------------------------------------------------------

/// A hook is removed while the token is cancelled: it runs at most once,
/// and it has run exactly when the removal returned `false`.
#[test]
fn hook_racing_its_removal_runs_exactly_when_removal_fails() {
    model(|| {
        let token = Token::new();
        let runs = loom::sync::Arc::new(AtomicUsize::new(0));
        let registration = {
            let runs = runs.clone();
            token.on_cancel(move |reason| {
                assert_eq!(reason.message(), "stop");
                runs.fetch_add(1, SeqCst);
            })
        };
        let remover = thread::spawn(move || registration.remove());
        assert!(token.cancel_with("stop"));
        let removed = remover.join().unwrap();
        assert_eq!(runs.load(SeqCst), usize::from(!removed));
        assert_eq!(token.__waiter_count(), 0);
    });
}

/// A hook may use the token it runs for: cancel it again (`false`), create
/// a child (born cancelled) and register a hook (run at once). It runs with
/// no lock held, so none of this deadlocks (loom reports a thread blocked
/// on a lock it holds), while a waiter races the cancel.
#[test]
fn hook_may_reenter_its_token_while_a_waiter_races() {
    model(|| {
        let token = Token::new();
        let runs = loom::sync::Arc::new(AtomicUsize::new(0));
        {
            let runs = runs.clone();
            let this = token.clone();
            token
                .on_cancel(move |reason| {
                    assert!(!this.cancel_with("again"));
                    assert_eq!(message(&this.child()).as_deref(), Some(reason.message()));
                    let inner = runs.clone();
                    this.on_cancel(move |_| {
                        inner.fetch_add(1, SeqCst);
                    })
                    .detach();
                    runs.fetch_add(1, SeqCst);
                })
                .detach();
        }
        let waiter = {
            let token = token.clone();
            thread::spawn(move || block_on(token.cancelled()).message().to_owned())
        };
        assert!(token.cancel_with("stop"));
        assert_eq!(waiter.join().unwrap(), "stop");
        assert_eq!(runs.load(SeqCst), 2);
    });
}

/// A hook is registered (on a child) while the parent is cancelled: it runs
/// exactly once, either from the cancel's walk or at once in `on_cancel`.
#[test]
fn hook_registration_racing_cancel_runs_once() {
    model(|| {
        let parent = Token::new();
        let child = parent.child();
        let runs = loom::sync::Arc::new(AtomicUsize::new(0));
        let registrar = {
            let runs = runs.clone();
            thread::spawn(move || {
                child
                    .on_cancel(move |reason| {
                        assert_eq!(reason.message(), "stop");
                        runs.fetch_add(1, SeqCst);
                    })
                    .detach();
                child
            })
        };
        assert!(parent.cancel_with("stop"));
        let child = registrar.join().unwrap();
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(child.__waiter_count(), 0);
    });
}
