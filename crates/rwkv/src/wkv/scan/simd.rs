//! The inner loop of the forward scan: one token of the max-tracking recurrence of
//! [`crate::wkv::recurrent`] (paper eq. 16) over a block of channels, written so that the
//! compiler vectorises it, and compiled for AVX2 and AVX-512 with the choice made at run
//! time.
//!
//! Vectorising needs a branch-free body: `e^x` is the polynomial [`exp_f32`] instead of a
//! libm call, and the max-tracking is done with selects ([`pair`]). Neither changes the
//! arithmetic between the scalar and the vector code (Rust never contracts `a·b + c` into
//! an FMA on its own), so every instruction set gives the same bits.

use core::ops::{Add, Div, Mul, Neg, Sub};

use burn::tensor::Element;

use super::rows::RowsMut;

/// Floating-point element the host kernels compute in (f32 or f64).
pub trait Real:
    Element
    + Copy
    + Send
    + Sync
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// `e^x` for `x ≤ 0` (the only arguments the kernels produce), as a branch-free
    /// function the compiler can vectorise.
    fn exp_nonpos(self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn exp_nonpos(self) -> Self {
        exp_f32(self)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn exp_nonpos(self) -> Self {
        f64::exp(self)
    }
}

/// `e^x` in f32, within 2 ulp for `x ∈ [-87, 0]`, 0 below (e^-87 ≈ 1.6e-38). Cody–Waite
/// range reduction `x = n ln 2 + r`, a degree-6 minimax polynomial for `e^r` (Cephes
/// `expf`), and `2^n` assembled from bits. Branch-free so that loops over channels
/// vectorise (libm's `expf` is a call the compiler cannot vectorise).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    if x < -87.0 { 0.0 } else { er * scale }
}

/// `(e^{x-m}, e^{y-m}, m)` with `m = max(x, y)`: one of the two is `e^0 = 1`, so a
/// single exponential `e^{-|x-y|}` serves both (ties go to `x`).
#[inline(always)]
pub(super) fn pair<F: Real>(x: F, y: F) -> (F, F, F) {
    let d = x - y;
    let first = d >= F::ZERO;
    // one exponential, computed unconditionally; the rest are selects
    let e = (if first { -d } else { d }).exp_nonpos();
    if first {
        (F::ONE, e, x)
    } else {
        (e, F::ONE, y)
    }
}

/// One token of the recurrence for `n` channels: reads the state `(aa, bb, pp)`, writes
/// `y` and the new state. The body is branch-free so the loop vectorises.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step_lanes<F: Real>(
    w: &[F],
    u: &[F],
    k: &[F],
    v: &[F],
    y: &mut [F],
    aa: &mut [F],
    bb: &mut [F],
    pp: &mut [F],
) {
    let n = y.len();
    let (w, u, k, v) = (&w[..n], &u[..n], &k[..n], &v[..n]);
    let (aa, bb, pp) = (&mut aa[..n], &mut bb[..n], &mut pp[..n]);
    for j in 0..n {
        let (a, b, p, kt, vt) = (aa[j], bb[j], pp[j], k[j], v[j]);
        // output: q = max(pp, u + k); y = (e^{pp-q} aa + e^{u+k-q} v) / (e^{pp-q} bb + e^{u+k-q})
        let (e1, e2, _) = pair(p, u[j] + kt);
        y[j] = (e1 * a + e2 * vt) / (e1 * b + e2);
        // update: q' = max(pp + w, k)
        let (f1, f2, q) = pair(p + w[j], kt);
        aa[j] = f1 * a + f2 * vt;
        bb[j] = f1 * b + f2;
        pp[j] = q;
    }
}

/// The read-only inputs of one channel block of `width` channels over `time` steps.
#[derive(Clone, Copy)]
pub(super) struct Lanes<'a, F> {
    /// Decays of the block's channels, `[width]`.
    pub w: &'a [F],
    /// Bonuses of the block's channels, `[width]`.
    pub u: &'a [F],
    /// Keys from the block's first element at step 0; step `t` starts at `t·stride`.
    pub k: &'a [F],
    /// Values, laid out like `k`.
    pub v: &'a [F],
    /// Distance between consecutive steps in `k` and `v` (the channel count C).
    pub stride: usize,
    /// Number of steps T.
    pub time: usize,
}

/// Runs the recurrence over `x.time` steps: writes the outputs to `y.row(0..T)` and
/// updates `state = [aa, bb, pp]` (each `[width]`) in place; with `trace`, also records
/// the state before every step (`[T, 3, width]`).
pub(super) fn steps<F: Real>(
    x: Lanes<'_, F>,
    y: &mut RowsMut<'_, F>,
    state: &mut [Vec<F>; 3],
    trace: Option<&mut [F]>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: the CPU supports the features `steps_avx512` is compiled for.
        unsafe { steps_avx512(x, y, state, trace) };
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU supports the features `steps_avx2` is compiled for.
        unsafe { steps_avx2(x, y, state, trace) };
    } else {
        steps_generic(x, y, state, trace);
    }
    #[cfg(not(target_arch = "x86_64"))]
    steps_generic(x, y, state, trace);
}

/// The loop itself; inlined into each instruction-set variant below.
#[inline(always)]
fn steps_generic<F: Real>(
    x: Lanes<'_, F>,
    y: &mut RowsMut<'_, F>,
    state: &mut [Vec<F>; 3],
    mut trace: Option<&mut [F]>,
) {
    let Lanes {
        w,
        u,
        k,
        v,
        stride,
        time,
    } = x;
    let cw = w.len();
    let [aa, bb, pp] = state;
    for step in 0..time {
        if let Some(tr) = trace.as_deref_mut() {
            let base = step * 3 * cw;
            tr[base..base + cw].copy_from_slice(aa);
            tr[base + cw..base + 2 * cw].copy_from_slice(bb);
            tr[base + 2 * cw..base + 3 * cw].copy_from_slice(pp);
        }
        let row = step * stride;
        step_lanes(
            w,
            u,
            &k[row..row + cw],
            &v[row..row + cw],
            y.row(step),
            aa,
            bb,
            pp,
        );
    }
}

/// The same loop compiled for AVX2 + FMA (8 f32 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn steps_avx2<F: Real>(
    x: Lanes<'_, F>,
    y: &mut RowsMut<'_, F>,
    state: &mut [Vec<F>; 3],
    trace: Option<&mut [F]>,
) {
    steps_generic(x, y, state, trace)
}

/// The same loop compiled for AVX-512 (16 f32 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
fn steps_avx512<F: Real>(
    x: Lanes<'_, F>,
    y: &mut RowsMut<'_, F>,
    state: &mut [Vec<F>; 3],
    trace: Option<&mut [F]>,
) {
    steps_generic(x, y, state, trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max((got - want).abs() / want);
            x += 0.000_37;
        }
        assert!(worst < 2.5e-7, "relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-1e38), 0.0);
        assert_eq!(exp_f32(-88.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    }
}
