//! Loom models of the shared future trigger built on the token tree (STYLE
//! rule 19). Compiled only for `RUSTFLAGS="--cfg loom" cargo test --lib`;
//! `.ci/loom` runs them, with those of the token tree (`token/tests/`).

mod loom_future;
