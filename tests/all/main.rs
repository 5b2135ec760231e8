//! The test suite: one binary, one module per topic. Everything runs on the CPU backend
//! (ndarray) in f32 and f64. The wgpu suite is the crate `crates/rwkv-gpu-tests` (its own
//! lean build; it shares `common.rs`).

mod ablate;
mod bad_input;
mod checkpoint;
mod checkpoint_errors;
mod common;
mod compare;
mod convert;
mod decode;
mod generate_text;
mod gradients;
mod model_equiv;
mod scaling;
mod verify;
mod wkv_props;
mod wkv_vectors;
