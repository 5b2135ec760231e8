//! The recurrent state of the whole model (RNN mode and state carrying in GPT mode).

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{Result, RwkvError, check_shape};
use crate::wkv::WkvState;

/// State of one block: 5 vectors of C per batch row.
///
/// # Shapes
/// - `att_shift`: `[B, C]`, the last LN1 output (time-mix token shift)
/// - `wkv`: `aa`, `bb`, `pp`, each `[B, C]` (see [`WkvState`])
/// - `ffn_shift`: `[B, C]`, the last LN2 output (channel-mix token shift)
#[derive(Debug, Clone)]
pub struct LayerState<B: Backend> {
    /// Time-mix token shift: previous LN1 output, `[B, C]`.
    pub att_shift: Tensor<B, 2>,
    /// WKV numerator, denominator and running max exponent.
    pub wkv: WkvState<B>,
    /// Channel-mix token shift: previous LN2 output, `[B, C]`.
    pub ffn_shift: Tensor<B, 2>,
}

/// State of an RWKV model: one [`LayerState`] per block.
///
/// The HF `RwkvForCausalLM` layout is five `[B, C, L]` tensors in the order
/// (ffn shift, att shift, aa, bb, pp).
#[derive(Debug, Clone)]
pub struct RwkvState<B: Backend> {
    /// One entry per block, in order.
    pub layers: Vec<LayerState<B>>,
}

impl<B: Backend> LayerState<B> {
    /// The state before the first token: zero shifts and an empty WKV state.
    pub fn zeros(batch: usize, d_model: usize, device: &B::Device) -> Self {
        Self {
            att_shift: Tensor::zeros([batch, d_model], lab_util::float_opts::<B>(device)),
            wkv: WkvState::zeros(batch, d_model, device),
            ffn_shift: Tensor::zeros([batch, d_model], lab_util::float_opts::<B>(device)),
        }
    }

    /// Drops autodiff history (for truncated backpropagation through time).
    pub fn detach(self) -> Self {
        Self {
            att_shift: self.att_shift.detach(),
            wkv: self.wkv.detach(),
            ffn_shift: self.ffn_shift.detach(),
        }
    }

    /// `[B, C]` of the shift state.
    pub fn dims(&self) -> [usize; 2] {
        self.att_shift.dims()
    }

    pub(crate) fn check(&self, layer: usize, batch: usize, d_model: usize) -> Result<()> {
        let want = [batch, d_model];
        check_shape(
            &format!("state.layers[{layer}].att_shift"),
            &want,
            &self.att_shift.dims(),
        )?;
        check_shape(
            &format!("state.layers[{layer}].ffn_shift"),
            &want,
            &self.ffn_shift.dims(),
        )?;
        self.wkv
            .check(&format!("state.layers[{layer}].wkv"), batch, d_model)
    }
}

impl<B: Backend> RwkvState<B> {
    /// Initial state for `n_layers` blocks.
    pub fn zeros(n_layers: usize, batch: usize, d_model: usize, device: &B::Device) -> Self {
        Self {
            layers: (0..n_layers)
                .map(|_| LayerState::zeros(batch, d_model, device))
                .collect(),
        }
    }

    /// Batch size B (0 for a state with no layers).
    pub fn batch_size(&self) -> usize {
        self.layers.first().map(|l| l.dims()[0]).unwrap_or(0)
    }

    /// Drops autodiff history.
    pub fn detach(self) -> Self {
        Self {
            layers: self.layers.into_iter().map(LayerState::detach).collect(),
        }
    }

    /// Checks the layer count and every shape against a model.
    pub fn check(&self, n_layers: usize, batch: usize, d_model: usize) -> Result<()> {
        if self.layers.len() != n_layers {
            return Err(RwkvError::StateLayers {
                expected: n_layers,
                got: self.layers.len(),
            });
        }
        for (i, l) in self.layers.iter().enumerate() {
            l.check(i, batch, d_model)?;
        }
        Ok(())
    }
}
