//! Loom models of the token tree (STYLE rule 19). Compiled only for
//! `RUSTFLAGS="--cfg loom" cargo test --lib`; `.ci/loom` runs them, with
//! those of the shared future trigger built on it (`trigger/tests/`).

mod loom_tree;
