//! The model's matrix products, and the precision they run in (docs/design.md §18).
//!
//! Every projection of the model (time-mix and channel-mix keys, values, receptances,
//! outputs, the head) goes through [`linear`], which calls
//! [`WkvBackend::linear_matmul`]. On every backend but one that is the backend's own
//! `float_matmul`. The exception is CUDA on sm80+ (A100, H100, H200): there Burn 0.21's
//! matmul (`cubek-matmul` 0.2, autotuned) picks tensor-core kernels that stage f32
//! operands as TF32 (a 10-bit mantissa), which puts the 169M model's logits about 2e-3
//! from a float64 reference. Under [`MatmulPrecision::F32`], the default, those products
//! run on CubeCL's f32 kernels instead (autotuned among the ones that use no tensor
//! cores, [`cube`]); [`MatmulPrecision::Fast`] keeps Burn's choice.
//!
//! The setting is process-wide (one atomic): the CLI sets it once from `--matmul`, and
//! `compare-backends` per backend (`cuda:tf32`).

#[cfg(feature = "device-kernel")]
pub mod cube;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use burn::nn::Linear;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::wkv::WkvBackend;

/// The precision of the model's products on devices where Burn would use TF32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// Full f32 products everywhere (the default).
    #[default]
    F32,
    /// The backend's fastest products: TF32 tensor cores on CUDA sm80+, f32 elsewhere.
    Fast,
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide precision of [`linear`]'s products.
pub fn set_matmul_precision(precision: MatmulPrecision) {
    let v = match precision {
        MatmulPrecision::F32 => 0,
        MatmulPrecision::Fast => 1,
    };
    PRECISION.store(v, Ordering::Relaxed);
}

/// The process-wide precision of [`linear`]'s products ([`MatmulPrecision::F32`] unless
/// [`set_matmul_precision`] said otherwise).
pub fn matmul_precision() -> MatmulPrecision {
    match PRECISION.load(Ordering::Relaxed) {
        0 => MatmulPrecision::F32,
        _ => MatmulPrecision::Fast,
    }
}

static EVERYWHERE: AtomicBool = AtomicBool::new(false);

/// Test hook: route the products of every CubeCL backend through the f32 kernels of
/// [`cube`] under [`MatmulPrecision::F32`], also where Burn's own matmul is f32 already
/// (wgpu), so that the software-GPU suite exercises the path CUDA takes.
pub fn set_f32_kernels_everywhere(on: bool) {
    EVERYWHERE.store(on, Ordering::Relaxed);
}

/// Whether a CubeCL backend routes a product through the f32 kernels: under
/// [`MatmulPrecision::F32`] where its own matmul would use TF32 (`reduced`), or everywhere
/// after [`set_f32_kernels_everywhere`].
pub fn route_to_f32_kernels(reduced: bool) -> bool {
    matmul_precision() == MatmulPrecision::F32 && (reduced || EVERYWHERE.load(Ordering::Relaxed))
}

/// What the model's products are on `device` under the current precision: `"f32"`, or
/// `"tf32"` where the backend's own matmul uses TF32 tensor cores and the precision is
/// [`MatmulPrecision::Fast`]. For reports.
pub fn effective_matmul<B: WkvBackend>(device: &B::Device) -> &'static str {
    if B::reduced_precision_matmul(device) && matmul_precision() == MatmulPrecision::Fast {
        "tf32"
    } else {
        "f32"
    }
}

/// `[m, k] × [k, n]` through [`WkvBackend::linear_matmul`].
pub fn matmul<B: WkvBackend>(lhs: Tensor<B, 2>, rhs: Tensor<B, 2>) -> Tensor<B, 2> {
    let out = B::linear_matmul(lhs.into_primitive().tensor(), rhs.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `x · W + b` over the last dimension, as one 2-D product ([`lab_util::linear`]'s layout:
/// Burn 0.21's fused `[B ≥ 2, 1, d]` products are wrong on wgpu, docs/design.md §16),
/// through [`matmul`].
pub fn linear<B: WkvBackend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    lab_util::linear_with(layer, x, matmul::<B>)
}
