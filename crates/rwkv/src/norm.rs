//! LayerNorm as one autodiff graph node (docs/design.md §14 item 14).
//!
//! The forward is [`lab_util::layer_norm`]'s arithmetic, operation for operation (mean,
//! centred variance, `x̂ = (x − μ)·(1/√(var + ε))` with a true division, `x̂·γ + β`), so
//! the values are the same. Under autodiff that composite records about a dozen nodes and
//! its backward runs roughly twice as many element-wise passes as the forward; here the
//! whole normalisation is one node ([`WkvBackend::layer_norm_node`]) that keeps `x̂` and
//! `1/√(var + ε)` and differentiates in closed form:
//!
//! - `∂β = Σ_rows g`, `∂γ = Σ_rows g·x̂`
//! - `∂x = (1/√(var + ε)) · (g·γ − mean(g·γ) − x̂ · mean(g·γ·x̂))` (means over the row)
//!
//! Only products, sums and the one true division of the forward: no `recip` (§14 item 3).

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor, TensorMetadata, backend::Backend};

use crate::wkv::WkvBackend;
use crate::wkv::scan::{prim, tensor};

/// The forward on the inner backend, with what the backward needs.
pub(crate) struct Normed<B: Backend> {
    /// `x̂·γ + β`, in the input's shape.
    pub y: FloatTensor<B>,
    /// `x̂` as `[N, C]`.
    pub xhat: FloatTensor<B>,
    /// `1/√(var + ε)` as `[N, 1]`.
    pub inv: FloatTensor<B>,
}

/// `x` as `[N, C]` (C its last dimension), and its shape.
fn rows<B: Backend>(x: FloatTensor<B>) -> (Tensor<B, 2>, Shape) {
    let shape = x.shape();
    let c = shape[shape.num_dims() - 1];
    let n = shape.num_elements() / c.max(1);
    (tensor(B::float_reshape(x, Shape::from(vec![n, c]))), shape)
}

/// Forward over the last dimension of `x` (any rank); `gamma`, `beta`: `[C]`.
pub(crate) fn forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> Normed<B> {
    let (x, shape) = rows::<B>(x);
    let [_, c] = x.dims();
    let mean = x.clone().mean_dim(1);
    let centered = x - mean;
    let var = (centered.clone() * centered.clone()).mean_dim(1);
    let denom = (var + epsilon).sqrt();
    let inv = denom.ones_like() / denom;
    let xhat = centered * inv.clone();
    let y =
        xhat.clone() * tensor::<B, 1>(gamma).reshape([1, c]) + tensor::<B, 1>(beta).reshape([1, c]);
    Normed {
        y: B::float_reshape(prim(y), shape),
        xhat: prim(xhat),
        inv: prim(inv),
    }
}

/// Gradients `[∂x, ∂γ, ∂β]` from the output gradient `grad` (input's shape).
pub(crate) fn backward<B: Backend>(
    grad: FloatTensor<B>,
    xhat: FloatTensor<B>,
    inv: FloatTensor<B>,
    gamma: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let (g, shape) = rows::<B>(grad);
    let [_, c] = g.dims();
    let (xhat, inv) = (tensor::<B, 2>(xhat), tensor::<B, 2>(inv));
    let dbeta = g.clone().sum_dim(0).reshape([c]);
    let dgamma = (g.clone() * xhat.clone()).sum_dim(0).reshape([c]);
    let gg = g * tensor::<B, 1>(gamma).reshape([1, c]);
    let m1 = gg.clone().mean_dim(1);
    let m2 = (gg.clone() * xhat.clone()).mean_dim(1);
    let dx = (gg - m1 - xhat * m2) * inv;
    [B::float_reshape(prim(dx), shape), prim(dgamma), prim(dbeta)]
}

/// Layer normalisation with `ln`'s parameters over the last dimension, through
/// [`WkvBackend::layer_norm`] (one node under autodiff); a LayerNorm without β takes
/// [`lab_util::layer_norm`].
pub fn layer_norm<B: WkvBackend, const D: usize>(
    ln: &LayerNorm<B>,
    x: Tensor<B, D>,
    epsilon: f64,
) -> Tensor<B, D> {
    let Some(beta) = &ln.beta else {
        return lab_util::layer_norm(ln, x, epsilon);
    };
    let val = |p: &Param<Tensor<B, 1>>| prim(p.val());
    tensor(B::layer_norm_node(
        prim(x),
        val(&ln.gamma),
        val(beta),
        epsilon,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, TensorData};

    type B = Autodiff<NdArray<f64>>;

    fn host<T: Backend, const D: usize>(t: Tensor<T, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
    }

    /// The node's forward is `lab_util::layer_norm`'s (the same operations on the inner
    /// backend), and its closed-form gradients equal those Burn's autodiff derives from
    /// that composite, for x, γ and β (f64, rows of mixed scale, γ and β random).
    #[test]
    fn one_node_equals_the_composite_forward_and_backward() {
        let device = Default::default();
        let mut ln = LayerNormConfig::new(24).init::<B>(&device);
        let opts = || lab_util::float_opts::<B>(&device);
        ln.gamma = Param::from_tensor(Tensor::random([24], Distribution::Normal(1.0, 0.5), opts()));
        ln.beta = Some(Param::from_tensor(Tensor::random(
            [24],
            Distribution::Normal(0.0, 0.5),
            opts(),
        )));
        // one row far from zero mean, one nearly constant
        let mut xs: Vec<f64> =
            Tensor::<B, 3>::random([2, 5, 24], Distribution::Normal(0.0, 2.0), opts())
                .into_data()
                .into_vec::<f64>()
                .unwrap();
        xs[..24].iter_mut().for_each(|v| *v += 300.0);
        xs[24..48].iter_mut().for_each(|v| *v = 1.0 + *v * 1e-6);
        let x = || {
            Tensor::<B, 3>::from_data(TensorData::new(xs.clone(), [2, 5, 24]), opts())
                .require_grad()
        };
        let w = Tensor::<B, 3>::random([2, 5, 24], Distribution::Normal(0.0, 1.0), opts());

        let (xa, xb) = (x(), x());
        let ya = layer_norm(&ln, xa.clone(), 1e-5);
        let yb = lab_util::layer_norm(&ln, xb.clone(), 1e-5);
        assert_eq!(
            host(ya.clone()),
            host(yb.clone()),
            "forward: same operations"
        );
        let ga = (ya * w.clone()).sum().backward();
        let gb = (yb * w).sum().backward();
        let close = |a: Vec<f64>, b: Vec<f64>, what: &str| {
            let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!((p - q).abs() <= 1e-12 * scale, "{what}[{i}]: {p} vs {q}");
            }
        };
        close(
            host(xa.grad(&ga).unwrap()),
            host(xb.grad(&gb).unwrap()),
            "dx",
        );
        close(
            host(ln.gamma.grad(&ga).unwrap()),
            host(ln.gamma.grad(&gb).unwrap()),
            "dgamma",
        );
        let beta = ln.beta.as_ref().unwrap();
        close(
            host(beta.grad(&ga).unwrap()),
            host(beta.grad(&gb).unwrap()),
            "dbeta",
        );
    }
}
