//! RWKV-4 ("RWKV: Reinventing RNNs for the Transformer Era", Peng et al., 2023) on Burn.
//!
//! Everything here is generic over the backend `B`; no concrete backend is named except
//! in [`wkv::scan`], where the fused scan kernel is registered for each backend (the
//! orphan rule puts those `impl`s next to the trait that defines the kernel).
//!
//! * [`RwkvConfig`] → [`RwkvConfig::init`] (RWKV-LM v4 initialisation) or
//!   [`RwkvConfig::init_randomized`] (every parameter random, for equivalence tests); the
//!   parameters themselves (keys, shapes, order) are the table of [`params`].
//! * [`Rwkv::forward`] runs a whole sequence ("GPT mode") with any [`WkvMode`];
//!   [`Rwkv::step`] runs one token with a carried [`RwkvState`] ("RNN mode").
//! * [`wkv`] holds the four formulations of the WKV operator (paper eq. 16).
//! * [`decode::CpuDecoder`] is a dedicated CPU engine for RNN-mode decoding (weights laid
//!   out once for matrix–vector products), equal to [`Rwkv::step`] to f32 rounding.

pub mod config;
pub mod decode;
pub mod error;
pub mod generate;
pub mod init;
pub mod matmul;
pub mod model;
pub mod norm;
pub mod params;
pub mod state;
pub mod verify;
pub mod wkv;

pub use config::{Activation, Bonus, Decay, EmbeddingInit, RwkvConfig, Variant};
pub use decode::{CpuDecoder, DecoderState};
pub use error::RwkvError;
pub use init::{RandomizedInit, Rwkv4Init};
pub use matmul::{MatmulPrecision, matmul_precision, set_matmul_precision};
pub use model::{Block, ChannelMix, Rwkv, TimeMix};
pub use params::{BlockParam, ParamShape, ParamSource, ParamSpec, RwkvParam, split_block_key};
pub use state::{LayerState, RwkvState};
pub use wkv::{WkvBackend, WkvMode, WkvState};
