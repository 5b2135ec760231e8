//! The scan formulation: one fused pass over the sequence, like the official RWKV-4 CUDA
//! kernel: parallel over `B·C` (each channel's recurrence is independent), serial over T,
//! with the stable recurrence of [`super::recurrent`] and its own hand-written backward.
//!
//! The kernel is a backend extension ([`WkvBackend`]), the pattern Burn uses for custom
//! kernels. The default methods run on the host ([`fallback`]); [`Autodiff`] gets a
//! custom backward node, so the scan trains without materialising T steps of autodiff
//! graph. A GPU backend can override the two methods with a device kernel; until then it
//! runs the host code (correct, and it pays a device↔host copy).
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the [`WkvBackend`] trait, its registration for each backend, the tensor API [`forward`] |
//! | `autodiff.rs` | the backward node for [`Autodiff`] |
//! | `fallback.rs` | any backend: copy to the host, run the host kernel, copy back |
//! | `ndarray.rs` | ndarray: the host kernel on the arrays in place |
//! | `host.rs` | the host kernel over slices: task split, rayon, backward |
//! | `simd.rs` | the vectorised forward step, polynomial `exp`, AVX2/AVX-512 dispatch |
//! | `rows.rs` | disjoint strided output views (the only `unsafe` memory access) |
//!
//! Packed layout (one tensor in, one out, as an autodiff node has one output):
//! - state in: `[B, 3, C]` = (aa, bb, pp)
//! - output: `[B, T + 3, C]` = rows `0..T` the outputs y, then the final aa, bb, pp.
//!
//! [`Autodiff`]: burn::backend::Autodiff

mod autodiff;
#[cfg(feature = "device-kernel")]
pub mod cube;
pub mod fallback;
pub mod host;
mod ndarray;
mod rows;
mod simd;

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

use super::WkvState;

/// A backend that can run the fused WKV scan. Both methods have host implementations as
/// defaults; see the module docs for the packed shapes.
pub trait WkvBackend: Backend {
    /// Forward: `w`, `u` `[C]`; `k`, `v` `[B, T, C]`; `state` `[B, 3, C]` → `[B, T + 3, C]`.
    fn wkv_scan(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback::forward::<Self>(w, u, k, v, state)
    }

    /// Backward: given the gradient of the packed output `[B, T + 3, C]`, returns the
    /// gradients of `[w, u, k, v, state]` (shapes as in [`WkvBackend::wkv_scan`]).
    fn wkv_scan_backward(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 5] {
        fallback::backward::<Self>(w, u, k, v, state, grad)
    }

    /// `[m, k] × [k, n]`, the product of every projection of the model
    /// ([`crate::matmul::linear`]). The default is the backend's own `float_matmul`. The
    /// CubeCL backends override it: when [`crate::matmul::matmul_precision`] is
    /// [`MatmulPrecision::F32`](crate::matmul::MatmulPrecision) and the device would run
    /// Burn's matmul on TF32 tensor cores (CUDA on sm80+), the product runs on CubeCL's
    /// f32 kernels instead (docs/design.md §18).
    fn linear_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(lhs, rhs)
    }

    /// Whether this backend's own `float_matmul` rounds f32 operands to a shorter mantissa
    /// on `device` (TF32 tensor cores): then [`WkvBackend::linear_matmul`] differs from it
    /// in [`MatmulPrecision::F32`](crate::matmul::MatmulPrecision). False by default.
    fn reduced_precision_matmul(_device: &Self::Device) -> bool {
        false
    }

    /// Whether this backend's own `ActivationOps::sigmoid` computes `σ` in the tensor's
    /// dtype with the two-sided form of [`crate::model::sigmoid`] (`1/(1+e^{-x})` for
    /// x ≥ 0, `e^x/(1+e^x)` below, true divisions), so that the model can use it: one fused
    /// pass forward and Burn's autodiff node `g·σ·(1−σ)` backward, instead of the 14
    /// element-wise passes of the portable form (docs/design.md §14 item 2). False by
    /// default: Burn's default casts to f32 and evaluates `exp(-log(1+e^{-x}))`.
    fn native_sigmoid() -> bool {
        false
    }

    /// LayerNorm over the last dimension of `x` with `gamma`, `beta` `[C]`: the arithmetic
    /// of [`lab_util::layer_norm`], as one node with a closed-form backward under
    /// [`Autodiff`](burn::backend::Autodiff) ([`crate::norm`]).
    fn layer_norm_node(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        crate::norm::forward::<Self>(x, gamma, beta, epsilon).y
    }
}

// Registrations: every backend the crate can be built with. The `Autodiff` wrapper's
// implementation is in `autodiff.rs`.

/// ndarray: the host kernels read the arrays in place (f32 or f64; any other element type
/// takes the copying fallback).
impl<E, I, Q> WkvBackend for burn::backend::NdArray<E, I, Q>
where
    E: burn::backend::ndarray::FloatNdArrayElement,
    I: burn::backend::ndarray::IntNdArrayElement,
    Q: burn::backend::ndarray::QuantElement,
    burn::backend::ndarray::NdArrayTensor: From<burn::backend::ndarray::SharedArray<E>>,
    burn::backend::ndarray::NdArrayTensor: From<burn::backend::ndarray::SharedArray<I>>,
{
    fn wkv_scan(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let ins = [&w, &u, &k, &v, &state];
        match ndarray::forward::<f32>(ins).or_else(|| ndarray::forward::<f64>(ins)) {
            Some(out) => out,
            None => fallback::forward::<Self>(w, u, k, v, state),
        }
    }

    fn wkv_scan_backward(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 5] {
        let ins = [&w, &u, &k, &v, &state];
        let out =
            ndarray::backward::<f32>(ins, &grad).or_else(|| ndarray::backward::<f64>(ins, &grad));
        match out {
            Some(out) => out,
            None => fallback::backward::<Self>(w, u, k, v, state, grad),
        }
    }
}

/// flex: the host scan through the copying fallback; its own sigmoid (`burn-flex`'s
/// `sigmoid_f32`/`sigmoid_f64`: the two-sided form in the tensor's dtype, true divisions).
#[cfg(feature = "flex")]
impl WkvBackend for burn::backend::Flex {
    fn native_sigmoid() -> bool {
        true
    }
}

// wgpu and cuda (`Fusion<CubeBackend<..>>`, or `CubeBackend` without fusion): the device
// kernel, implemented in `cube.rs`.

/// A float tensor's primitive.
pub(crate) fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// A float primitive as a tensor of rank `D`.
pub(crate) fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// Whole sequence in one fused pass (shapes as in [`super::wkv`]).
pub fn forward<B: WkvBackend>(
    w: Tensor<B, 1>,
    u: Tensor<B, 1>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    state: WkvState<B>,
) -> (Tensor<B, 3>, WkvState<B>) {
    let [batch, time, channels] = k.dims();
    let packed_state = Tensor::stack::<3>(vec![state.aa, state.bb, state.pp], 1);
    let out: Tensor<B, 3> = tensor(B::wkv_scan(
        prim(w),
        prim(u),
        prim(k),
        prim(v),
        prim(packed_state),
    ));
    let row = |r: usize| {
        out.clone()
            .slice([0..batch, r..r + 1, 0..channels])
            .reshape([batch, channels])
    };
    let state = WkvState {
        aa: row(time),
        bb: row(time + 1),
        pp: row(time + 2),
    };
    let y = out.slice([0..batch, 0..time, 0..channels]);
    // For B > 1 the rows `0..T` of each batch are a strided view of the packed output.
    // Reshaping through `[B·T, C]` copies them into one contiguous tensor (a row-block copy
    // at memcpy speed), so that the ops that consume y (the receptance gate, the output
    // projection) and their backward read contiguous data: flex walks strided operands
    // element by element (measured: 4% of a d_model-256 training step).
    let y = if batch > 1 {
        y.reshape([batch * time, channels])
            .reshape([batch, time, channels])
    } else {
        y
    };
    (y, state)
}
