//! The parallel formulation: the exact per-channel softmax over the `[T, T]` logits
//! `ℓ_{t,i} = k_i + (t-1-i)w` (i < t), `ℓ_{t,t} = u + k_t`, plus one logit for the carried
//! state: the "transformer" form of the paper (eq. 16 for every t at once; docs/design.md §6). It is one
//! block of [`super::block`] spanning the whole sequence.
//!
//! Cost: O(T²·C) time and memory, like attention, without the `d × d` head structure.

use burn::tensor::{Tensor, backend::Backend};

use super::{WkvState, block};

/// Whole sequence at once.
///
/// # Shapes
/// - `w`, `u`: `[C]`; `k`, `v`: `[B, T, C]`; `state`: `[B, C]` each
/// - returns `y`: `[B, T, C]` and the final state
pub fn forward<B: Backend>(
    w: Tensor<B, 1>,
    u: Tensor<B, 1>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    state: WkvState<B>,
) -> (Tensor<B, 3>, WkvState<B>) {
    let [batch, time, channels] = k.dims();
    let k = k.reshape([batch, 1, time, channels]);
    let v = v.reshape([batch, 1, time, channels]);
    let WkvState { aa, bb, pp } = state;
    let y = block::blocks(
        &w,
        &u,
        k.clone(),
        v.clone(),
        aa.clone().unsqueeze_dim(1),
        bb.clone().unsqueeze_dim(1),
        pp.clone().unsqueeze_dim(1),
    );
    let (a, b, p) = block::summarize(&w, k, v);
    let (aa, bb, pp) = block::combine(
        &w,
        time,
        (aa, bb, pp),
        (
            a.reshape([batch, channels]),
            b.reshape([batch, channels]),
            p.reshape([batch, channels]),
        ),
    );
    (y.reshape([batch, time, channels]), WkvState { aa, bb, pp })
}
