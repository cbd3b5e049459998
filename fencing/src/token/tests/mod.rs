//! Loom models of the token tree (STYLE rule 19). Compiled only for
//! `RUSTFLAGS="--cfg loom" cargo test --lib`; `.ci/loom` runs them.

mod loom_tree;
