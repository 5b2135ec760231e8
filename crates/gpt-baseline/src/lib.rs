//! Baseline GPT-style decoder for the scaling experiments: the "transformer of matched
//! size" against which RWKV-4's complexity claims are measured (paper Table 1: a
//! transformer's attention costs O(T²·d) time and its KV cache O(T·d) memory per layer,
//! where RWKV's state is O(d)).
//!
//! Everything is generic over the backend `B`; no concrete backend is named.
//!
//! * [`TransformerConfig`] → [`TransformerConfig::init_with_seed`] (GPT-2 initialisation,
//!   host-generated, identical on every backend) or [`TransformerConfig::init_randomized`]
//!   (every parameter random, for equivalence tests).
//! * [`Transformer::forward`] runs whole sequences; [`Transformer::prefill`] does the same
//!   and returns a [`KvCache`]; [`Transformer::step`] decodes one token per batch row from
//!   the cache (and [`Transformer::extend`] several). This mirrors `rwkv::Rwkv::forward` /
//!   `rwkv::Rwkv::step`, with the KV cache in place of RWKV's state.
//! * [`AttentionPath`] selects the attention computation at call time: the scores
//!   materialised (`Explicit`) or Burn's fused `attention` op (`Fused`).
//!
//! Architecture: token embedding + learned positional embedding, `n_layers` pre-LayerNorm
//! blocks `x += attn(ln1(x)); x += mlp(ln2(x))`, final LayerNorm, untied head without bias.
//! All Q/K/V/O and MLP projections carry a bias (GPT-2, GPT-NeoX/Pythia); the parameter
//! count is [`TransformerConfig::num_params`].
//!
//! Precision: every tensor is created with [`lab_util::float_opts`], so an `NdArray<f64>` model
//! computes in f64 whatever else the process has run; only ops that stay in the tensor's
//! dtype are used (no `activation::sigmoid`, which casts to f32; true divisions, not
//! `recip`). Explicit and Fused agree to ~1e-15 in f64.

pub mod cache;
pub mod config;
pub mod error;
pub mod model;

pub use cache::{KvCache, LayerKv};
pub use config::TransformerConfig;
pub use error::{Result, TransformerError};
pub use model::{AttentionPath, Block, CausalSelfAttention, Mlp, Transformer};
