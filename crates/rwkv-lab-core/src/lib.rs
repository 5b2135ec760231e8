//! Experiments of rwkv-lab: YAML specs, the scaling study (time and peak memory versus
//! sequence length for RWKV-4 and a matched transformer), memory metering, records, and
//! the equivalence verifier behind `rwkv-lab verify` ([`verify`]).
//!
//! Measuring never plots: studies write `records.csv` and `meta.json`, and the
//! `rwkv-report` crate renders plots and summaries from those files alone.

pub mod meter;
pub mod models;
pub mod records;
pub mod scaling;
pub mod spec;
pub mod verify;

pub use spec::{ScalingSpec, SpecError};
