//! The scan as a device kernel for the CubeCL backends (wgpu, cuda): the forward over the
//! whole sequence in one launch and its backward in one more, so `scan` on those backends
//! never leaves the device (docs/design.md §16).
//!
//! Like the official RWKV-4 CUDA kernel, one unit (GPU thread) owns one `(batch, channel)`
//! pair and walks the sequence in order with the stable max-tracking recurrence of
//! [`super::host`]; the `B·C` units run in parallel. Consecutive units own consecutive
//! channels, so every load and store of a time step is coalesced.
//!
//! The backward first reruns the forward, storing the state before every step in a device
//! scratch buffer `[B, T, 3, C]` (the host kernel keeps the same trace per task), then walks
//! the sequence backwards with exactly the host kernel's formulas. The per-`(b, c)`
//! gradients of `w` and `u` are summed over the batch afterwards (`[B, C] → [C]`).
//!
//! [`WkvBackend`] is implemented for `CubeBackend` (the kernels) and for `Fusion<B>` (each
//! call becomes one custom operation in the fusion stream that runs the inner backend's
//! kernel), which covers `burn::backend::{Wgpu, Cuda}` with or without fusion.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::WkvBackend;

/// `(e^{x−m}, e^{y−m})` with `m = max(x, y)`, as the host's `pair`: the larger exponent
/// gets exactly 1, the other `exp` of a non-positive number.
#[cube]
fn pair<F: Float>(x: F, y: F) -> (F, F) {
    let mut ex = F::new(1.0);
    let mut ey = F::new(1.0);
    if x >= y {
        ey = F::exp(y - x);
    } else {
        ex = F::exp(x - y);
    }
    (ex, ey)
}

/// The state after one token: `(aa, bb, pp) → (f1·aa + f2·v, f1·bb + f2, max(pp + w, k))`
/// with `(f1, f2)` from `pair(pp + w, k)` (§4).
#[cube]
fn advance<F: Float>(aa: F, bb: F, pp: F, w: F, k: F, v: F) -> (F, F, F) {
    let pw = pp + w;
    let (f1, f2) = pair::<F>(pw, k);
    (f1 * aa + f2 * v, f1 * bb + f2, F::max(pw, k))
}

/// Forward: `w`, `u` `[C]`; `k`, `v` `[B, T, C]`; `s0` `[B, 3, C]` → `out` `[B, T + 3, C]`
/// (outputs, then the final aa, bb, pp). All contiguous.
#[cube(launch)]
fn wkv_forward_kernel<F: Float>(
    w: &Tensor<F>,
    u: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    s0: &Tensor<F>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let batch = k.shape(0);
    let time = k.shape(1);
    let channels = k.shape(2);
    if ABSOLUTE_POS >= batch * channels {
        terminate!();
    }
    let b = ABSOLUTE_POS / channels;
    let c = ABSOLUTE_POS % channels;
    let s_base = b * 3 * channels + c;
    let in_base = b * time * channels + c;
    let out_base = b * (time + 3) * channels + c;
    let wc = w[c];
    let uc = u[c];
    let mut aa = s0[s_base];
    let mut bb = s0[s_base + channels];
    let mut pp = s0[s_base + 2 * channels];
    for t in 0..time {
        let kt = k[in_base + t * channels];
        let vt = v[in_base + t * channels];
        let (e1, e2) = pair::<F>(pp, uc + kt);
        out[out_base + t * channels] = (e1 * aa + e2 * vt) / (e1 * bb + e2);
        let (a2, b2, p2) = advance::<F>(aa, bb, pp, wc, kt, vt);
        aa = a2;
        bb = b2;
        pp = p2;
    }
    out[out_base + time * channels] = aa;
    out[out_base + (time + 1) * channels] = bb;
    out[out_base + (time + 2) * channels] = pp;
}

/// Backward: inputs as the forward plus `grad` `[B, T + 3, C]`; writes `gk`, `gv`
/// `[B, T, C]`, `gs` `[B, 3, C]`, and the per-batch `gw`, `gu` `[B, C]`. `trace`
/// `[B, T, 3, C]` is scratch.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn wkv_backward_kernel<F: Float>(
    w: &Tensor<F>,
    u: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    s0: &Tensor<F>,
    grad: &Tensor<F>,
    trace: &mut Tensor<F>,
    gk: &mut Tensor<F>,
    gv: &mut Tensor<F>,
    gs: &mut Tensor<F>,
    gw: &mut Tensor<F>,
    gu: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let batch = k.shape(0);
    let time = k.shape(1);
    let channels = k.shape(2);
    if ABSOLUTE_POS >= batch * channels {
        terminate!();
    }
    let b = ABSOLUTE_POS / channels;
    let c = ABSOLUTE_POS % channels;
    let s_base = b * 3 * channels + c;
    let in_base = b * time * channels + c;
    let g_base = b * (time + 3) * channels + c;
    let tr_base = b * time * 3 * channels + c;
    let wc = w[c];
    let uc = u[c];

    // Rerun the forward, keeping the state before each step.
    let mut aa = s0[s_base];
    let mut bb = s0[s_base + channels];
    let mut pp = s0[s_base + 2 * channels];
    for t in 0..time {
        let at = tr_base + t * 3 * channels;
        trace[at] = aa;
        trace[at + channels] = bb;
        trace[at + 2 * channels] = pp;
        let (a2, b2, p2) = advance::<F>(
            aa,
            bb,
            pp,
            wc,
            k[in_base + t * channels],
            v[in_base + t * channels],
        );
        aa = a2;
        bb = b2;
        pp = p2;
    }

    let mut ga = grad[g_base + time * channels];
    let mut gb = grad[g_base + (time + 1) * channels];
    let mut gp = grad[g_base + (time + 2) * channels];
    let mut sum_w = F::new(0.0);
    let mut sum_u = F::new(0.0);
    for i in 0..time {
        let t = time - 1 - i;
        let at = tr_base + t * 3 * channels;
        let a = trace[at];
        let bv = trace[at + channels];
        let p = trace[at + 2 * channels];
        let kt = k[in_base + t * channels];
        let vt = v[in_base + t * channels];
        let gy = grad[g_base + t * channels];
        let (e1, e2) = pair::<F>(p, uc + kt);
        let den = e1 * bv + e2;
        let yv = (e1 * a + e2 * vt) / den;
        let gy_den = gy / den;
        let pw = p + wc;
        let (f1, f2) = pair::<F>(pw, kt);
        let a2 = f1 * a + f2 * vt;
        let b2 = f1 * bv + f2;
        let gq2 = gp - ga * a2 - gb * b2;
        let through_decay = (ga * a + gb * bv) * f1;
        let mut to_pw = F::new(0.0);
        let mut to_k = F::new(0.0);
        if pw >= kt {
            to_pw = gq2;
        } else {
            to_k = gq2;
        }
        let g_uk = gy_den * e2 * (vt - yv);
        gk[in_base + t * channels] = g_uk + (ga * vt + gb) * f2 + to_k;
        gv[in_base + t * channels] = gy_den * e2 + ga * f2;
        sum_u += g_uk;
        sum_w += through_decay + to_pw;
        let ga_next = gy_den * e1 + ga * f1;
        let gb_next = gb * f1 - gy_den * yv * e1;
        gp = gy_den * e1 * (a - yv * bv) + through_decay + to_pw;
        ga = ga_next;
        gb = gb_next;
    }
    gs[s_base] = ga;
    gs[s_base + channels] = gb;
    gs[s_base + 2 * channels] = gp;
    gw[ABSOLUTE_POS] = sum_w;
    gu[ABSOLUTE_POS] = sum_u;
}

fn dims3<R: CubeRuntime>(t: &CubeTensor<R>) -> [usize; 3] {
    t.shape().dims::<3>()
}

fn launch_geometry<R: CubeRuntime>(t: &CubeTensor<R>, units: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, units);
    (calculate_cube_count_elemwise(&t.client, units, dim), dim)
}

fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Vec<usize>) -> CubeTensor<R> {
    empty_device_dtype::<R>(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape),
        like.dtype,
    )
}

/// The device forward (shapes as in [`WkvBackend::wkv_scan`]).
pub fn forward<R: CubeRuntime>(
    w: CubeTensor<R>,
    u: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    state: CubeTensor<R>,
) -> CubeTensor<R> {
    let [batch, time, channels] = dims3(&k);
    let out = empty_like(&k, vec![batch, time + 3, channels]);
    let units = batch * channels;
    if units == 0 {
        return out;
    }
    let (count, dim) = launch_geometry(&k, units);
    let dtype = k.dtype;
    let client = k.client.clone();
    wkv_forward_kernel::launch::<R>(
        &client,
        count,
        dim,
        into_contiguous(w).into_tensor_arg(),
        into_contiguous(u).into_tensor_arg(),
        into_contiguous(k).into_tensor_arg(),
        into_contiguous(v).into_tensor_arg(),
        into_contiguous(state).into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dtype.into(),
    );
    out
}

/// The device backward: `[gw, gu, gk, gv, gstate]` with `gw`, `gu` still per batch row
/// (`[B, C]`; the caller sums them).
pub fn backward_rows<R: CubeRuntime>(
    w: CubeTensor<R>,
    u: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    state: CubeTensor<R>,
    grad: CubeTensor<R>,
) -> [CubeTensor<R>; 5] {
    let [batch, time, channels] = dims3(&k);
    let gk = empty_like(&k, vec![batch, time, channels]);
    let gv = empty_like(&k, vec![batch, time, channels]);
    let gs = empty_like(&k, vec![batch, 3, channels]);
    let gw = empty_like(&k, vec![batch, channels]);
    let gu = empty_like(&k, vec![batch, channels]);
    let units = batch * channels;
    if units == 0 {
        return [gw, gu, gk, gv, gs];
    }
    let trace = empty_like(&k, vec![batch, time.max(1), 3, channels]);
    let (count, dim) = launch_geometry(&k, units);
    let dtype = k.dtype;
    let client = k.client.clone();
    wkv_backward_kernel::launch::<R>(
        &client,
        count,
        dim,
        into_contiguous(w).into_tensor_arg(),
        into_contiguous(u).into_tensor_arg(),
        into_contiguous(k).into_tensor_arg(),
        into_contiguous(v).into_tensor_arg(),
        into_contiguous(state).into_tensor_arg(),
        into_contiguous(grad).into_tensor_arg(),
        trace.into_tensor_arg(),
        gk.clone().into_tensor_arg(),
        gv.clone().into_tensor_arg(),
        gs.clone().into_tensor_arg(),
        gw.clone().into_tensor_arg(),
        gu.clone().into_tensor_arg(),
        dtype.into(),
    );
    [gw, gu, gk, gv, gs]
}

impl<R, F, I, BT> WkvBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn wkv_scan(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        forward(w, u, k, v, state)
    }

    fn wkv_scan_backward(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 5] {
        use burn::tensor::ops::FloatTensorOps;
        let channels = w.shape()[0];
        let [gw, gu, gk, gv, gs] = backward_rows(w, u, k, v, state, grad);
        let per_channel = |g: CubeTensor<R>| {
            let summed = <Self as FloatTensorOps<Self>>::float_sum_dim(g, 0);
            <Self as FloatTensorOps<Self>>::float_reshape(summed, Shape::from(vec![channels]))
        };
        [per_channel(gw), per_channel(gu), gk, gv, gs]
    }

    fn linear_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        use crate::matmul::{cube, route_to_f32_kernels};
        if route_to_f32_kernels(cube::uses_tf32(&lhs.client)) {
            cube::f32_matmul(lhs, rhs)
        } else {
            <Self as burn::tensor::ops::FloatTensorOps<Self>>::float_matmul(lhs, rhs)
        }
    }

    fn reduced_precision_matmul(device: &Self::Device) -> bool {
        crate::matmul::cube::uses_tf32(&R::client(device))
    }
}

mod fusion {
    use core::marker::PhantomData;

    use burn::tensor::Shape;
    use burn::tensor::ops::FloatTensor;
    use burn_fusion::stream::{Operation, OperationStreams};
    use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
    use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

    use super::super::WkvBackend;

    /// One fusion-stream operation that runs the inner backend's scan kernel.
    #[derive(Clone, Debug)]
    struct ScanOp<B> {
        desc: CustomOpIr,
        _backend: PhantomData<B>,
    }

    impl<B: FusionBackend + WkvBackend> Operation<B::FusionRuntime> for ScanOp<B> {
        fn execute(
            &self,
            handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
        ) {
            let ([w, u, k, v, s], [out]) = self.desc.as_fixed();
            let result = B::wkv_scan(
                handles.get_float_tensor::<B>(w),
                handles.get_float_tensor::<B>(u),
                handles.get_float_tensor::<B>(k),
                handles.get_float_tensor::<B>(v),
                handles.get_float_tensor::<B>(s),
            );
            handles.register_float_tensor::<B>(&out.id, result);
        }
    }

    /// The backward as one fusion-stream operation.
    #[derive(Clone, Debug)]
    struct ScanBackwardOp<B> {
        desc: CustomOpIr,
        _backend: PhantomData<B>,
    }

    impl<B: FusionBackend + WkvBackend> Operation<B::FusionRuntime> for ScanBackwardOp<B> {
        fn execute(
            &self,
            handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
        ) {
            let ([w, u, k, v, s, g], outs) = self.desc.as_fixed::<6, 5>();
            let grads = B::wkv_scan_backward(
                handles.get_float_tensor::<B>(w),
                handles.get_float_tensor::<B>(u),
                handles.get_float_tensor::<B>(k),
                handles.get_float_tensor::<B>(v),
                handles.get_float_tensor::<B>(s),
                handles.get_float_tensor::<B>(g),
            );
            for (out, grad) in outs.iter().zip(grads) {
                handles.register_float_tensor::<B>(&out.id, grad);
            }
        }
    }

    impl<B: FusionBackend + WkvBackend> WkvBackend for Fusion<B> {
        fn wkv_scan(
            w: FloatTensor<Self>,
            u: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            state: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let client = k.client.clone();
            let [batch, time, channels] = [k.shape[0], k.shape[1], k.shape[2]];
            let streams = OperationStreams::with_inputs([&w, &u, &k, &v, &state]);
            let out = TensorIr::uninit(
                client.create_empty_handle(),
                Shape::from(vec![batch, time + 3, channels]),
                k.dtype,
            );
            let desc = CustomOpIr::new(
                "rwkv_wkv_scan",
                &[
                    w.into_ir(),
                    u.into_ir(),
                    k.into_ir(),
                    v.into_ir(),
                    state.into_ir(),
                ],
                &[out],
            );
            client
                .register(
                    streams,
                    OperationIr::Custom(desc.clone()),
                    ScanOp::<B> {
                        desc,
                        _backend: PhantomData,
                    },
                )
                .output()
        }

        fn wkv_scan_backward(
            w: FloatTensor<Self>,
            u: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            state: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> [FloatTensor<Self>; 5] {
            let client = k.client.clone();
            let dtype = k.dtype;
            let shapes = [
                w.shape.clone(),
                u.shape.clone(),
                k.shape.clone(),
                v.shape.clone(),
                state.shape.clone(),
            ];
            let streams = OperationStreams::with_inputs([&w, &u, &k, &v, &state, &grad]);
            let outs = shapes.map(|s| TensorIr::uninit(client.create_empty_handle(), s, dtype));
            let desc = CustomOpIr::new(
                "rwkv_wkv_scan_backward",
                &[
                    w.into_ir(),
                    u.into_ir(),
                    k.into_ir(),
                    v.into_ir(),
                    state.into_ir(),
                    grad.into_ir(),
                ],
                &outs,
            );
            let grads = client.register(
                streams,
                OperationIr::Custom(desc.clone()),
                ScanBackwardOp::<B> {
                    desc,
                    _backend: PhantomData,
                },
            );
            grads
                .try_into()
                .expect("the backward registers five outputs")
        }

        fn linear_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
            let device = lhs.client.device().clone();
            if !crate::matmul::route_to_f32_kernels(B::reduced_precision_matmul(&device)) {
                // the fusion stream's own matmul (fused with its neighbours)
                return <Self as burn::tensor::ops::FloatTensorOps<Self>>::float_matmul(lhs, rhs);
            }
            let client = lhs.client.clone();
            let rank = lhs.shape.num_dims();
            let mut dims: Vec<usize> = (0..rank).map(|d| lhs.shape[d]).collect();
            dims[rank - 1] = rhs.shape[rank - 1];
            let streams = OperationStreams::with_inputs([&lhs, &rhs]);
            let out = TensorIr::uninit(client.create_empty_handle(), Shape::from(dims), lhs.dtype);
            let desc = CustomOpIr::new("rwkv_f32_matmul", &[lhs.into_ir(), rhs.into_ir()], &[out]);
            client
                .register(
                    streams,
                    OperationIr::Custom(desc.clone()),
                    MatmulOp::<B> {
                        desc,
                        _backend: PhantomData,
                    },
                )
                .output()
        }

        fn reduced_precision_matmul(device: &Self::Device) -> bool {
            B::reduced_precision_matmul(device)
        }
    }

    /// The full-f32 product of the inner backend as one fusion-stream operation.
    #[derive(Clone, Debug)]
    struct MatmulOp<B> {
        desc: CustomOpIr,
        _backend: PhantomData<B>,
    }

    impl<B: FusionBackend + WkvBackend> Operation<B::FusionRuntime> for MatmulOp<B> {
        fn execute(
            &self,
            handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
        ) {
            let ([lhs, rhs], [out]) = self.desc.as_fixed();
            // the inner backend decides again under the precision in force now: the stream
            // runs this op before any host read that follows it, and the precision only
            // changes between whole runs (the CLI once; compare-backends between backends)
            let result = B::linear_matmul(
                handles.get_float_tensor::<B>(lhs),
                handles.get_float_tensor::<B>(rhs),
            );
            handles.register_float_tensor::<B>(&out.id, result);
        }
    }
}
