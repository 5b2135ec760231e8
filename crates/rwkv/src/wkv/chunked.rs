//! The chunked formulation: blocks of `len` tokens, the exact softmax form inside each
//! block (O(len²·C) per block), and the WKV state carried from one block to the next.
//!
//! 1. Split the first `N·len` tokens into `N` blocks (`[B, N, len, C]`); a shorter tail
//!    block, if any, is handled the same way afterwards.
//! 2. Summarise each block as if it started empty ([`block::summarize`]: `(A, Bs, P)`).
//! 3. Walk the `N` block boundaries sequentially: state_{n+1} = combine(state_n, summary_n)
//!    ([`block::combine`]: decay by `len·w`, then add). These are `N` small `[B, C]` steps.
//! 4. Compute all blocks' outputs at once, block `n` starting from state_n ([`block::blocks`]).
//!
//! Cost O(T·len·C). Exact for any `len ≥ 1`: `len = 1` is the recurrence (each block holds
//! only the diagonal logit `u + k_t` and the state logit `pp`), `len ≥ T` the parallel form.

use burn::tensor::{Tensor, backend::Backend};

use super::{WkvState, block, parallel};

/// Whole sequence in blocks of `len` (`len ≥ 1`, checked by [`super::wkv`]).
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
    len: usize,
) -> (Tensor<B, 3>, WkvState<B>) {
    let [batch, time, channels] = k.dims();
    let len = len.clamp(1, time);
    let n_blocks = time / len;
    let main = n_blocks * len;
    let mut ys = Vec::with_capacity(2);
    let WkvState {
        mut aa,
        mut bb,
        mut pp,
    } = state;

    let km = k
        .clone()
        .slice([0..batch, 0..main, 0..channels])
        .reshape([batch, n_blocks, len, channels]);
    let vm = v
        .clone()
        .slice([0..batch, 0..main, 0..channels])
        .reshape([batch, n_blocks, len, channels]);
    let (sa, sb, sp) = block::summarize(&w, km.clone(), vm.clone());
    let (mut starts_a, mut starts_b, mut starts_p) = (
        Vec::with_capacity(n_blocks),
        Vec::with_capacity(n_blocks),
        Vec::with_capacity(n_blocks),
    );
    let at = |x: &Tensor<B, 3>, n: usize| {
        x.clone()
            .slice([0..batch, n..n + 1, 0..channels])
            .reshape([batch, channels])
    };
    for n in 0..n_blocks {
        starts_a.push(aa.clone());
        starts_b.push(bb.clone());
        starts_p.push(pp.clone());
        (aa, bb, pp) = block::combine(&w, len, (aa, bb, pp), (at(&sa, n), at(&sb, n), at(&sp, n)));
    }
    let y = block::blocks(
        &w,
        &u,
        km,
        vm,
        Tensor::stack(starts_a, 1),
        Tensor::stack(starts_b, 1),
        Tensor::stack(starts_p, 1),
    );
    ys.push(y.reshape([batch, main, channels]));

    let mut state = WkvState { aa, bb, pp };
    if main < time {
        let kt = k.slice([0..batch, main..time, 0..channels]);
        let vt = v.slice([0..batch, main..time, 0..channels]);
        let (y, next) = parallel::forward(w, u, kt, vt, state);
        ys.push(y);
        state = next;
    }
    (Tensor::cat(ys, 1), state)
}
