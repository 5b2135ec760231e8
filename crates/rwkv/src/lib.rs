//! RWKV-4 ("RWKV: Reinventing RNNs for the Transformer Era", Peng et al., 2023) on Burn.
//!
//! Everything here is generic over the backend `B`; no concrete backend is named except
//! in [`wkv::scan`], where the fused scan kernel is registered for each backend (the
//! orphan rule puts those `impl`s next to the trait that defines the kernel).
//!
//! * [`RwkvConfig`] → [`RwkvConfig::init`] (RWKV-LM v4 initialisation) or
//!   [`RwkvConfig::init_randomized`] (every parameter random, for equivalence tests).
//! * [`Rwkv::forward`] runs a whole sequence ("GPT mode") with any [`WkvMode`];
//!   [`Rwkv::step`] runs one token with a carried [`RwkvState`] ("RNN mode").
//! * [`wkv`] holds the four formulations of the WKV operator (paper eq. 14–16).

pub mod config;
pub mod error;
pub mod generate;
pub mod init;
pub mod model;
pub mod state;
pub mod verify;
pub mod wkv;

/// Creation options that pin the backend's own float type.
///
/// Burn 0.21 keys a device's default dtype by device *type*: `NdArray<f32>` and
/// `NdArray<f64>` share `NdArrayDevice`, so whichever touches it first decides what
/// `Tensor::zeros` or `from_data` produce for both. Every tensor this crate creates goes
/// through this function so that `NdArray<f64>` really computes in f64 (and `f32` in f32),
/// whatever else the process has run.
pub fn float_opts<B: burn::tensor::backend::Backend>(
    device: &B::Device,
) -> burn::tensor::TensorCreationOptions<B> {
    use burn::tensor::Element;
    burn::tensor::TensorCreationOptions::new(device.clone())
        .with_dtype(<B::FloatElem as Element>::dtype())
}

pub use config::{Activation, Bonus, Decay, EmbeddingInit, RwkvConfig, Variant};
pub use error::RwkvError;
pub use model::{Block, ChannelMix, ParamShape, ParamSource, Rwkv, TimeMix, split_block_key};
pub use state::{LayerState, RwkvState};
pub use wkv::{WkvBackend, WkvMode, WkvState};
