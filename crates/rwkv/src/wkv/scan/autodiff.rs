//! The scan under [`Autodiff`]: one graph node for the whole sequence whose backward calls
//! [`WkvBackend::wkv_scan_backward`], so training through the scan records no T steps of
//! graph. The node keeps the five inputs (not the outputs): the backward reruns the
//! forward for the intermediate states.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use super::WkvBackend;

/// A backward whose gradients of all `N` inputs come from one function of the node's state
/// and its output gradient: each is registered with its parent, where the parent is tracked.
fn backward_all<B: WkvBackend, S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    f: impl FnOnce(S, FloatTensor<B>) -> [FloatTensor<B>; N],
) {
    let grad = grads.consume::<B>(&ops.node);
    for (parent, g) in ops.parents.into_iter().zip(f(ops.state, grad)) {
        if let Some(node) = parent {
            grads.register::<B>(node.id, g);
        }
    }
}

/// The backward node; its state is `[w, u, k, v, state]` of the inner backend.
#[derive(Debug)]
struct ScanBackward;

impl<B: WkvBackend> Backward<B, 5> for ScanBackward {
    type State = [FloatTensor<B>; 5];

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_all::<B, _, 5>(ops, grads, |[w, u, k, v, s], grad| {
            B::wkv_scan_backward(w, u, k, v, s, grad)
        });
    }
}

impl<B: WkvBackend, C: CheckpointStrategy> WkvBackend for Autodiff<B, C> {
    fn wkv_scan(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            w.node.clone(),
            u.node.clone(),
            k.node.clone(),
            v.node.clone(),
            state.node.clone(),
        ];
        match ScanBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let inputs = [
                    w.primitive,
                    u.primitive,
                    k.primitive,
                    v.primitive,
                    state.primitive,
                ];
                let [iw, iu, ik, iv, is] = inputs.clone();
                prep.finish(inputs, B::wkv_scan(iw, iu, ik, iv, is))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::wkv_scan(
                w.primitive,
                u.primitive,
                k.primitive,
                v.primitive,
                state.primitive,
            )),
        }
    }

    /// Where the inner backend's full-f32 product differs from its `float_matmul` (CUDA
    /// with TF32, under `MatmulPrecision::F32`), a graph node whose forward and backward
    /// both use it; everywhere else Burn's own matmul node, unchanged.
    fn linear_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let device = B::float_device(&lhs.primitive);
        if !crate::matmul::route_to_f32_kernels(B::reduced_precision_matmul(&device)) {
            return <Self as burn::tensor::ops::FloatTensorOps<Self>>::float_matmul(lhs, rhs);
        }
        let nodes = [lhs.node.clone(), rhs.node.clone()];
        match MatmulBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = [lhs.primitive.clone(), rhs.primitive.clone()];
                prep.finish(state, B::linear_matmul(lhs.primitive, rhs.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::linear_matmul(lhs.primitive, rhs.primitive)),
        }
    }

    fn reduced_precision_matmul(device: &Self::Device) -> bool {
        B::reduced_precision_matmul(device)
    }

    /// Burn's autodiff sigmoid calls the inner backend's forward and backward.
    fn native_sigmoid() -> bool {
        B::native_sigmoid()
    }

    /// One node keeping `x̂` and `1/√(var + ε)`; its backward is [`crate::norm::backward`].
    fn layer_norm_node(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        match LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let gamma_inner = gamma.primitive.clone();
                let normed = crate::norm::forward::<B>(
                    x.primitive,
                    gamma.primitive,
                    beta.primitive,
                    epsilon,
                );
                prep.finish([normed.xhat, normed.inv, gamma_inner], normed.y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_node(
                x.primitive,
                gamma.primitive,
                beta.primitive,
                epsilon,
            )),
        }
    }
}

/// The backward of [`WkvBackend::layer_norm`]; its state is `[x̂, 1/√(var + ε), γ]`.
#[derive(Debug)]
struct LayerNormBackward;

impl<B: WkvBackend> Backward<B, 3> for LayerNormBackward {
    type State = [FloatTensor<B>; 3];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward_all::<B, _, 3>(ops, grads, |[xhat, inv, gamma], grad| {
            crate::norm::backward::<B>(grad, xhat, inv, gamma)
        });
    }
}

/// The backward of the full-f32 product: `∂lhs = g · rhsᵀ`, `∂rhs = lhsᵀ · g`, each
/// through [`WkvBackend::linear_matmul`]. 2-D operands (what `matmul::linear` passes).
#[derive(Debug)]
struct MatmulBackward;

impl<B: WkvBackend> Backward<B, 2> for MatmulBackward {
    type State = [FloatTensor<B>; 2];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [lhs, rhs] = ops.state;
        let [lhs_node, rhs_node] = ops.parents;
        if let Some(node) = lhs_node {
            let g = B::linear_matmul(grad.clone(), B::float_transpose(rhs));
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = rhs_node {
            let g = B::linear_matmul(B::float_transpose(lhs), grad);
            grads.register::<B>(node.id, g);
        }
    }
}
