//! The parameter table of RWKV-4: every parameter's BlinkDL checkpoint key and its shape as a
//! function of the [`RwkvConfig`]. The initialisation rule of each entry is in
//! [`crate::init`] (one `match` per scheme over the same [`RwkvParam`] values).
//!
//! Everything else is derived from this table: [`RwkvConfig::params`] lists the entries of
//! a config, [`RwkvConfig::init_from`] requests their values in that order and builds the
//! modules from them, [`crate::Rwkv::named_params`] reads them back, and the checkpoint
//! crate takes its expected key set and shapes from it.

use crate::config::RwkvConfig;

/// One parameter of a block (the key is `blocks.N.` followed by [`BlockParam::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockParam {
    /// Scale of `ln0`, the extra LayerNorm after the embedding (block 0 only, when enabled).
    Ln0Weight,
    /// Shift of `ln0`.
    Ln0Bias,
    /// Scale of the LayerNorm before time mixing.
    Ln1Weight,
    /// Shift of the LayerNorm before time mixing.
    Ln1Bias,
    /// Scale of the LayerNorm before channel mixing.
    Ln2Weight,
    /// Shift of the LayerNorm before channel mixing.
    Ln2Bias,
    /// Time-mix token-shift mix of the key input, `μ_k` (paper eq. 12).
    AttMixK,
    /// Time-mix token-shift mix of the value input, `μ_v` (eq. 13).
    AttMixV,
    /// Time-mix token-shift mix of the receptance input, `μ_r` (eq. 11).
    AttMixR,
    /// Raw decay; the operator uses `w = -exp(time_decay)` (eq. 16).
    AttDecay,
    /// Bonus `u` of the current token (eq. 16).
    AttFirst,
    /// Channel-mix token-shift mix of the key input (eq. 15).
    FfnMixK,
    /// Channel-mix token-shift mix of the receptance input (eq. 14).
    FfnMixR,
    /// `W_k`, C → C.
    AttKey,
    /// `W_v`, C → C.
    AttValue,
    /// `W_r`, C → C.
    AttReceptance,
    /// `W_o`, C → C.
    AttOutput,
    /// `W_k'`, C → F.
    FfnKey,
    /// `W_r'`, C → C.
    FfnReceptance,
    /// `W_v'`, F → C.
    FfnValue,
}

/// One parameter of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RwkvParam {
    /// Token embedding `emb.weight`, `[V, C]`.
    Embedding,
    /// A parameter of block `layer`.
    Block {
        /// Block index.
        layer: usize,
        /// Which one.
        param: BlockParam,
    },
    /// Scale of the final LayerNorm, `ln_out.weight`.
    LnOutWeight,
    /// Shift of the final LayerNorm, `ln_out.bias`.
    LnOutBias,
    /// Output projection `head.weight`, C → V (untied from the embedding).
    Head,
}

/// The shape of a parameter in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamShape {
    /// A projection, values in Burn's layout `[d_in, d_out]` (checkpoints store `[d_out, d_in]`).
    Linear {
        /// Input width.
        d_in: usize,
        /// Output width.
        d_out: usize,
    },
    /// A per-channel vector (mixes, decays, bonuses, LayerNorm weight and bias).
    Vector(usize),
    /// The token embedding `[vocab, d_model]`.
    Embedding {
        /// Rows.
        vocab: usize,
        /// Columns.
        d_model: usize,
    },
}

/// One row of the table for a given config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// What it is (decides the init rule and the checkpoint layout).
    pub param: RwkvParam,
    /// Its BlinkDL checkpoint key, e.g. `blocks.3.att.time_decay`.
    pub key: String,
    /// Its shape in the model.
    pub shape: ParamShape,
}

impl BlockParam {
    /// The per-channel parameters of a block, in table order (`ln0` only in block 0).
    pub const VECTORS: [BlockParam; 13] = [
        BlockParam::Ln0Weight,
        BlockParam::Ln0Bias,
        BlockParam::Ln1Weight,
        BlockParam::Ln1Bias,
        BlockParam::Ln2Weight,
        BlockParam::Ln2Bias,
        BlockParam::AttMixK,
        BlockParam::AttMixV,
        BlockParam::AttMixR,
        BlockParam::AttDecay,
        BlockParam::AttFirst,
        BlockParam::FfnMixK,
        BlockParam::FfnMixR,
    ];

    /// The projections of a block, in table order.
    pub const PROJECTIONS: [BlockParam; 7] = [
        BlockParam::AttKey,
        BlockParam::AttValue,
        BlockParam::AttReceptance,
        BlockParam::AttOutput,
        BlockParam::FfnKey,
        BlockParam::FfnReceptance,
        BlockParam::FfnValue,
    ];

    /// Name inside `blocks.N.` (BlinkDL naming).
    pub const fn name(self) -> &'static str {
        match self {
            BlockParam::Ln0Weight => "ln0.weight",
            BlockParam::Ln0Bias => "ln0.bias",
            BlockParam::Ln1Weight => "ln1.weight",
            BlockParam::Ln1Bias => "ln1.bias",
            BlockParam::Ln2Weight => "ln2.weight",
            BlockParam::Ln2Bias => "ln2.bias",
            BlockParam::AttMixK => "att.time_mix_k",
            BlockParam::AttMixV => "att.time_mix_v",
            BlockParam::AttMixR => "att.time_mix_r",
            BlockParam::AttDecay => "att.time_decay",
            BlockParam::AttFirst => "att.time_first",
            BlockParam::FfnMixK => "ffn.time_mix_k",
            BlockParam::FfnMixR => "ffn.time_mix_r",
            BlockParam::AttKey => "att.key.weight",
            BlockParam::AttValue => "att.value.weight",
            BlockParam::AttReceptance => "att.receptance.weight",
            BlockParam::AttOutput => "att.output.weight",
            BlockParam::FfnKey => "ffn.key.weight",
            BlockParam::FfnReceptance => "ffn.receptance.weight",
            BlockParam::FfnValue => "ffn.value.weight",
        }
    }

    /// Shape for model width `c` and channel-mix width `f`.
    pub const fn shape(self, c: usize, f: usize) -> ParamShape {
        match self {
            BlockParam::AttKey
            | BlockParam::AttValue
            | BlockParam::AttReceptance
            | BlockParam::AttOutput
            | BlockParam::FfnReceptance => ParamShape::Linear { d_in: c, d_out: c },
            BlockParam::FfnKey => ParamShape::Linear { d_in: c, d_out: f },
            BlockParam::FfnValue => ParamShape::Linear { d_in: f, d_out: c },
            _ => ParamShape::Vector(c),
        }
    }

    /// A token-shift mix `μ` (checkpoints store these as `[1, 1, C]`).
    pub const fn is_token_shift_mix(self) -> bool {
        matches!(
            self,
            BlockParam::AttMixK
                | BlockParam::AttMixV
                | BlockParam::AttMixR
                | BlockParam::FfnMixK
                | BlockParam::FfnMixR
        )
    }

    /// A projection (a `Linear` weight).
    pub const fn is_projection(self) -> bool {
        matches!(self.shape(1, 1), ParamShape::Linear { .. })
    }

    /// A parameter of `ln0`.
    pub const fn is_ln0(self) -> bool {
        matches!(self, BlockParam::Ln0Weight | BlockParam::Ln0Bias)
    }
}

impl RwkvParam {
    /// The BlinkDL checkpoint key.
    pub fn key(self) -> String {
        match self {
            RwkvParam::Embedding => "emb.weight".into(),
            RwkvParam::Block { layer, param } => format!("blocks.{layer}.{}", param.name()),
            RwkvParam::LnOutWeight => "ln_out.weight".into(),
            RwkvParam::LnOutBias => "ln_out.bias".into(),
            RwkvParam::Head => "head.weight".into(),
        }
    }

    /// The shape under `config`.
    pub fn shape(self, config: &RwkvConfig) -> ParamShape {
        let (v, c, f) = (config.vocab_size, config.d_model, config.d_ffn);
        match self {
            RwkvParam::Embedding => ParamShape::Embedding {
                vocab: v,
                d_model: c,
            },
            RwkvParam::Block { param, .. } => param.shape(c, f),
            RwkvParam::LnOutWeight | RwkvParam::LnOutBias => ParamShape::Vector(c),
            RwkvParam::Head => ParamShape::Linear { d_in: c, d_out: v },
        }
    }

    /// The block it belongs to, if any.
    pub fn layer(self) -> Option<usize> {
        match self {
            RwkvParam::Block { layer, .. } => Some(layer),
            _ => None,
        }
    }

    /// A token-shift mix `μ`.
    pub fn is_token_shift_mix(self) -> bool {
        matches!(self, RwkvParam::Block { param, .. } if param.is_token_shift_mix())
    }

    /// The parameter a BlinkDL key names (whatever the config), if any.
    pub fn from_key(key: &str) -> Option<RwkvParam> {
        match key {
            "emb.weight" => return Some(RwkvParam::Embedding),
            "ln_out.weight" => return Some(RwkvParam::LnOutWeight),
            "ln_out.bias" => return Some(RwkvParam::LnOutBias),
            "head.weight" => return Some(RwkvParam::Head),
            _ => {}
        }
        let (layer, name) = split_block_key(key);
        let layer = layer?;
        BlockParam::VECTORS
            .iter()
            .chain(&BlockParam::PROJECTIONS)
            .find(|p| p.name() == name)
            .map(|&param| RwkvParam::Block { layer, param })
    }
}

impl ParamShape {
    /// Number of values.
    pub fn len(&self) -> usize {
        match *self {
            ParamShape::Linear { d_in, d_out } => d_in * d_out,
            ParamShape::Vector(n) => n,
            ParamShape::Embedding { vocab, d_model } => vocab * d_model,
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimensions in the model's layout (`Linear`: `[d_in, d_out]`).
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            ParamShape::Linear { d_in, d_out } => vec![d_in, d_out],
            ParamShape::Vector(n) => vec![n],
            ParamShape::Embedding { vocab, d_model } => vec![vocab, d_model],
        }
    }
}

impl RwkvConfig {
    /// Every parameter of this config, in table order: the embedding, the per-channel
    /// parameters of every block, `ln_out`, the projections of every block, the head.
    ///
    /// The order is the one the seeded initialisations draw their random numbers in
    /// (vectors of all blocks before any projection), so it is part of what a seed means:
    /// changing it changes every seeded model (pinned by a test in `init.rs`).
    pub fn params(&self) -> Vec<ParamSpec> {
        let ln0 = self.variant.ln0;
        let vectors = (0..self.n_layers).flat_map(|layer| {
            BlockParam::VECTORS
                .into_iter()
                .filter(move |p| !p.is_ln0() || (layer == 0 && ln0))
                .map(move |param| RwkvParam::Block { layer, param })
        });
        let projections = (0..self.n_layers).flat_map(|layer| {
            BlockParam::PROJECTIONS
                .into_iter()
                .map(move |param| RwkvParam::Block { layer, param })
        });
        std::iter::once(RwkvParam::Embedding)
            .chain(vectors)
            .chain([RwkvParam::LnOutWeight, RwkvParam::LnOutBias])
            .chain(projections)
            .chain(std::iter::once(RwkvParam::Head))
            .map(|param| ParamSpec {
                param,
                key: param.key(),
                shape: param.shape(self),
            })
            .collect()
    }
}

/// `blocks.N.rest` → `(Some(N), rest)`; anything else → `(None, key)`.
pub fn split_block_key(key: &str) -> (Option<usize>, &str) {
    if let Some(rest) = key.strip_prefix("blocks.")
        && let Some((n, rest)) = rest.split_once('.')
        && let Ok(n) = n.parse()
    {
        return (Some(n), rest);
    }
    (None, key)
}

/// Where a model's parameter values come from: an initialisation scheme
/// ([`crate::init::Rwkv4Init`], [`crate::init::RandomizedInit`]) or a checkpoint.
///
/// [`RwkvConfig::init_from`] asks for every entry of [`RwkvConfig::params`] once, in table
/// order. Values are row-major in the model's layout (see [`ParamShape`]).
pub trait ParamSource {
    /// The values of one parameter (`spec.shape.len()` of them).
    fn values(&mut self, spec: &ParamSpec) -> crate::error::Result<Vec<f64>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_and_keys() {
        for ln0 in [true, false] {
            let cfg = RwkvConfig::new(7, 4, 3, 12).with_variant(crate::Variant {
                ln0,
                ..Default::default()
            });
            let specs = cfg.params();
            let total: usize = specs.iter().map(|s| s.shape.len()).sum();
            assert_eq!(total, cfg.num_params());
            let mut keys: Vec<&String> = specs.iter().map(|s| &s.key).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), specs.len(), "keys are unique");
            for s in &specs {
                assert_eq!(RwkvParam::from_key(&s.key), Some(s.param), "{}", s.key);
            }
        }
        assert_eq!(RwkvParam::from_key("blocks.0.att.bonus"), None);
        assert_eq!(RwkvParam::from_key("blocks.x.ln1.weight"), None);
    }
}
