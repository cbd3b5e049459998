//! Loom models of the token tree and of the shared future trigger built on
//! it (STYLE rule 19). Compiled only for `RUSTFLAGS="--cfg loom" cargo test
//! --lib`; `.ci/loom` runs them.

mod loom_future;
mod loom_tree;
