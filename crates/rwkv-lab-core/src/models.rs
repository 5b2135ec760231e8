//! The two models of a study, built from one spec with matched sizes.

use gpt_baseline::{Transformer, TransformerConfig};
use rwkv::{Rwkv, RwkvConfig, WkvBackend};

use crate::spec::ScalingSpec;

/// Both models of a study on one device.
pub struct Models<B: WkvBackend> {
    /// RWKV-4 with randomised parameters (timing does not depend on the values, but zero
    /// matrices from the RWKV-4 init could hit special cases, so every value is random).
    pub rwkv: Rwkv<B>,
    /// The GPT-style baseline, same V, C, L; 4C MLP; learned positions up to `max_positions`.
    pub transformer: Transformer<B>,
}

impl<B: WkvBackend> Models<B> {
    /// Builds both; the transformer's positional table covers `max_positions`.
    pub fn build(
        spec: &ScalingSpec,
        max_positions: usize,
        device: &B::Device,
    ) -> Result<Self, String> {
        let m = &spec.model;
        let (v, c, l) = (m.vocab.get(), m.d_model.get(), m.n_layers.get());
        let rwkv = RwkvConfig::rwkv4(v, c, l)
            .init_randomized::<B>(device, spec.seed)
            .map_err(|e| e.to_string())?;
        let tcfg = TransformerConfig::new(v, c, l, m.n_heads.get(), 4 * c, max_positions);
        let transformer = tcfg
            .init_with_seed::<B>(device, spec.seed)
            .map_err(|e| e.to_string())?;
        Ok(Self { rwkv, transformer })
    }
}
