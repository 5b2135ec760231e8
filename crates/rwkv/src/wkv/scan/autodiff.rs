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

/// The backward node; its state is `[w, u, k, v, state]` of the inner backend.
#[derive(Debug)]
struct ScanBackward;

impl<B: WkvBackend> Backward<B, 5> for ScanBackward {
    type State = [FloatTensor<B>; 5];

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [w, u, k, v, s] = ops.state;
        let outs = B::wkv_scan_backward(w, u, k, v, s, grad);
        for (parent, g) in ops.parents.into_iter().zip(outs) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, g);
            }
        }
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
}
