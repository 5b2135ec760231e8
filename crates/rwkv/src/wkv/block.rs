//! The softmax form of WKV over blocks that start from a carried state: the building block
//! of the parallel form (one block of length T) and the chunked form (blocks of length L).
//!
//! Within a block of length L starting from state `(aa, bb, pp)`, position `t` (0-based in
//! the block) sees the logits
//!
//! ```text
//! ℓ_{t,i} = k_i + (t-1-i)·w   for i < t
//! ℓ_{t,t} = u + k_t
//! s_t     = pp + t·w          (the carried state, weights aa and bb)
//! ```
//!
//! and, with `m_t = max(max_i ℓ_{t,i}, s_t)` (any shift works; the max keeps exponents ≤ 0),
//!
//! ```text
//! y_t = (Σ_i e^{ℓ_{t,i}-m_t} v_i + e^{s_t-m_t} aa) / (Σ_i e^{ℓ_{t,i}-m_t} + e^{s_t-m_t} bb)
//! ```
//!
//! Why `s_t = pp + t·w`: the state's numerator `aa·e^pp` was valid just before the block;
//! the recurrence multiplies it by `e^w` after each token, and position `t` is preceded by
//! `t` tokens of the block. The state after the block follows the same algebra with
//! `t = L`: `pp' = max(pp + L·w, P)`, where `P = max_i (k_i + (L-1-i)·w)` summarises the
//! block's own tokens ([`summarize`], [`combine`]). `pp'` equals the recurrence's running
//! maximum exactly, so every formulation returns the same triple, not only the same
//! canonical state.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// Logit of masked (future) positions: finite, so that no `inf - inf` arises anywhere.
const MASKED: f64 = -1e30;

/// The per-block constant part of the logits: `(t-1-i)·w` below the diagonal, `u` on it,
/// and [`MASKED`] above it.
///
/// # Shapes
/// - `w`, `u`: `[C]`; returns `[1, 1, C, L, L]` (channel, t, i)
fn logit_bias<B: Backend>(w: &Tensor<B, 1>, u: &Tensor<B, 1>, len: usize) -> Tensor<B, 5> {
    let [channels] = w.dims();
    let device = w.device();
    let mut dist = vec![0f64; len * len];
    let mut diag = vec![0f64; len * len];
    let mut mask = vec![0f64; len * len];
    for t in 0..len {
        for i in 0..len {
            let j = t * len + i;
            match i.cmp(&t) {
                core::cmp::Ordering::Less => dist[j] = (t - 1 - i) as f64,
                core::cmp::Ordering::Equal => diag[j] = 1.0,
                core::cmp::Ordering::Greater => mask[j] = MASKED,
            }
        }
    }
    let mat = |x: Vec<f64>| {
        Tensor::<B, 2>::from_data(
            TensorData::new(x, [len, len]),
            lab_util::float_opts::<B>(&device),
        )
        .reshape([1, 1, 1, len, len])
    };
    let w = w.clone().reshape([1, 1, channels, 1, 1]);
    let u = u.clone().reshape([1, 1, channels, 1, 1]);
    mat(dist) * w + mat(diag) * u + mat(mask)
}

/// A `[n]` float tensor of the given values (step counts that multiply `w`).
pub(crate) fn steps<B: Backend>(
    values: impl Iterator<Item = f64>,
    device: &B::Device,
) -> Tensor<B, 1> {
    let v: Vec<f64> = values.collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), lab_util::float_opts::<B>(device))
}

/// `[a, b, c, d]` → `[a, b, d, c]`: `swap_dims(2, 3)`, except where `c` or `d` is 1, where it
/// is the reshape with the same values (and the same memory order). Burn 0.21's CubeCL
/// backends get a swapped size-1 axis wrong once it is unsqueezed and reduced, at leading
/// dims ≥ 2 (`[2, 2, 1, 2]` swapped, unsqueezed at 3, summed over 4: O(1) wrong on wgpu,
/// both on lavapipe and on an H200; docs/design.md §16). `len = 1` blocks hit it.
fn swap_last<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [a, b, c, d] = x.dims();
    if c == 1 || d == 1 {
        x.reshape([a, b, d, c])
    } else {
        x.swap_dims(2, 3)
    }
}

/// Outputs of `N` independent blocks of length `L`, block `n` starting from state `n`.
///
/// # Shapes
/// - `w`, `u`: `[C]`; `k`, `v`: `[B, N, L, C]`; `aa`, `bb`, `pp`: `[B, N, C]`
/// - returns `y`: `[B, N, L, C]`
pub fn blocks<B: Backend>(
    w: &Tensor<B, 1>,
    u: &Tensor<B, 1>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    aa: Tensor<B, 3>,
    bb: Tensor<B, 3>,
    pp: Tensor<B, 3>,
) -> Tensor<B, 4> {
    let [_, _, len, channels] = k.dims();
    let device = k.device();
    // channel-major layout: reductions run over the last (contiguous) axis
    let k = swap_last(k); // [B, N, C, L]
    let v = swap_last(v);
    let logits = k.unsqueeze_dim::<5>(3) + logit_bias(w, u, len); // [B, N, C, L(t), L(i)]
    let t_w = steps::<B>((0..len).map(|t| t as f64), &device).reshape([1, 1, 1, len])
        * w.clone().reshape([1, 1, channels, 1]);
    let s = pp.unsqueeze_dim::<4>(3) + t_w; // [B, N, C, L]
    // The shift m cancels between numerator and denominator, so it carries no gradient.
    let m = logits
        .clone()
        .max_dim(4)
        .squeeze_dim::<4>(4)
        .max_pair(s.clone())
        .detach();
    let e = (logits - m.clone().unsqueeze_dim::<5>(4)).exp();
    let e_state = (s - m).exp();
    let num = (e.clone() * v.unsqueeze_dim::<5>(3))
        .sum_dim(4)
        .squeeze_dim::<4>(4)
        + e_state.clone() * aa.unsqueeze_dim::<4>(3);
    let den = e.sum_dim(4).squeeze_dim::<4>(4) + e_state * bb.unsqueeze_dim::<4>(3);
    swap_last(lab_util::div(num, den))
}

/// What a block contributes to the state at its end, as if it started empty:
/// `P = max_i (k_i + (L-1-i)·w)`, `A = Σ_i e^{k_i + (L-1-i)w - P} v_i`, `Bs` likewise without `v`.
///
/// # Shapes
/// - `k`, `v`: `[B, N, L, C]`; returns `(A, Bs, P)`, each `[B, N, C]`
pub fn summarize<B: Backend>(
    w: &Tensor<B, 1>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
    let [_, _, len, channels] = k.dims();
    let decay = steps::<B>((0..len).map(|i| (len - 1 - i) as f64), &k.device())
        .reshape([1, 1, len, 1])
        * w.clone().reshape([1, 1, 1, channels]);
    let z = k + decay;
    let p = z.clone().max_dim(2); // [B, N, 1, C]; raw output, so it keeps the max's gradient
    let e = (z - p.clone()).exp();
    let a = (e.clone() * v).sum_dim(2).squeeze_dim::<3>(2);
    let b = e.sum_dim(2).squeeze_dim::<3>(2);
    (a, b, p.squeeze_dim::<3>(2))
}

/// State after a block of `len` tokens: the incoming state decayed by `len·w`, plus the
/// block's own summary `(A, Bs, P)`.
///
/// # Shapes
/// - `w`: `[C]`; everything else `[B, C]` (or any shape ending in C)
pub fn combine<B: Backend, const D: usize>(
    w: &Tensor<B, 1>,
    len: usize,
    state: (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>),
    summary: (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>),
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    let [channels] = w.dims();
    let mut shape = [1usize; D];
    shape[D - 1] = channels;
    let (aa, bb, pp) = state;
    let (a, b, p) = summary;
    let decayed = pp + w.clone().reshape(shape) * (len as f64);
    let q = decayed.clone().max_pair(p.clone());
    let e1 = (decayed - q.clone()).exp();
    let e2 = (p - q.clone()).exp();
    (e1.clone() * aa + e2.clone() * a, e1 * bb + e2 * b, q)
}
