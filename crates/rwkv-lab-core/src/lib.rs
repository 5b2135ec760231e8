//! Experiments of rwkv-lab: YAML specs, the scaling study (time and peak memory versus
//! sequence length for RWKV-4 and a matched transformer), the WKV operator benchmark,
//! memory metering, the one timing loop and memory estimate they share, the
//! equivalence verifier behind `rwkv-lab verify` ([`verify`]), and generation behind
//! `rwkv-lab generate` ([`generate`]: prompt, tokenizer, memory plan, streaming).
//!
//! Measuring never plots: studies write `records.csv` and `meta.json` through
//! `lab-records`, and the `rwkv-report` crate renders plots and summaries from those files
//! alone.

pub mod ablation;
pub mod bench;
pub mod compare;
pub mod cpu_bench;
pub mod estimate;
pub mod generate;
pub mod meter;
pub mod models;
pub mod scaling;
pub mod spec;
pub mod timing;
pub mod verify;

pub use spec::{ScalingSpec, SpecError};
