//! Empty: this crate holds only the wgpu test suite (`tests/wgpu_suite.rs`, cargo feature
//! `wgpu`). It is a crate of its own so that building the suite with `--features wgpu`
//! compiles the model, its device kernel, the verifier and Burn's wgpu backend, and not the
//! CLI or the CPU test suite (docs/design.md §16).
