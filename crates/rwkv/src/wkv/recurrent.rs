//! The recurrent formulation: token by token with the numerically stable max-tracking
//! recurrence of the reference runtimes. This is the oracle every other formulation is
//! tested against. Cost: T sequential steps of O(B·C) tensor ops.
//!
//! State `(aa, bb, pp)`: numerator `aa·e^pp`, denominator `bb·e^pp`. Per token (paper
//! eq. 16, written with a running maximum so that no exponent is positive):
//!
//! ```text
//! output: q  = max(pp, u + k)
//!         y  = (e^{pp-q} aa + e^{u+k-q} v) / (e^{pp-q} bb + e^{u+k-q})
//! update: q' = max(pp + w, k)
//!         aa = e^{pp+w-q'} aa + e^{k-q'} v;  bb = e^{pp+w-q'} bb + e^{k-q'};  pp = q'
//! ```

use burn::tensor::{Tensor, backend::Backend};

use super::WkvState;

/// Whole sequence, one token at a time.
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
    let w = w.reshape([1, channels]);
    let u = u.reshape([1, channels]);
    let mut state = state;
    let mut ys = Vec::with_capacity(time);
    for t in 0..time {
        let kt = k
            .clone()
            .slice([0..batch, t..t + 1, 0..channels])
            .reshape([batch, channels]);
        let vt = v
            .clone()
            .slice([0..batch, t..t + 1, 0..channels])
            .reshape([batch, channels]);
        let (y, next) = step(&w, &u, kt, vt, state);
        ys.push(y);
        state = next;
    }
    (Tensor::stack(ys, 1), state)
}

/// One token.
///
/// # Shapes
/// - `w`, `u`: `[1, C]`; `k`, `v`: `[B, C]`; `state`: `[B, C]` each
/// - returns `y`: `[B, C]` and the state after this token
pub fn step<B: Backend>(
    w: &Tensor<B, 2>,
    u: &Tensor<B, 2>,
    k: Tensor<B, 2>,
    v: Tensor<B, 2>,
    state: WkvState<B>,
) -> (Tensor<B, 2>, WkvState<B>) {
    let WkvState { aa, bb, pp } = state;
    // output
    let uk = u.clone() + k.clone();
    let q = pp.clone().max_pair(uk.clone());
    let e1 = (pp.clone() - q.clone()).exp();
    let e2 = (uk - q).exp();
    let y = lab_util::div(
        e1.clone() * aa.clone() + e2.clone() * v.clone(),
        e1 * bb.clone() + e2,
    );
    // update
    let pw = pp + w.clone();
    let q = pw.clone().max_pair(k.clone());
    let e1 = (pw - q.clone()).exp();
    let e2 = (k - q.clone()).exp();
    let aa = e1.clone() * aa + e2.clone() * v;
    let bb = e1 * bb + e2;
    (y, WkvState { aa, bb, pp: q })
}
