//! The scan formulation: one fused pass over the sequence, like the official RWKV-4 CUDA
//! kernel: parallel over `B·C` (each channel's recurrence is independent), serial over T,
//! with the stable recurrence of [`super::recurrent`] and its own hand-written backward.
//!
//! The kernel is a backend extension ([`WkvBackend`]), the pattern Burn uses for custom
//! kernels. The default methods run on the host over the tensor data (plain Rust, threads
//! over batch rows and channel blocks); [`Autodiff`] gets a custom backward node, so the
//! scan trains without materialising T steps of autodiff graph. A GPU backend can override
//! the two methods with a device kernel; until then it runs the host code (correct, and it
//! pays a device↔host copy).
//!
//! Packed layout (one tensor in, one out, as an autodiff node has one output):
//! - state in: `[B, 3, C]` = (aa, bb, pp)
//! - output: `[B, T + 3, C]` = rows `0..T` the outputs y, then the final aa, bb, pp.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{
    DType, Element, Tensor, TensorData, TensorMetadata, TensorPrimitive, backend::Backend,
};

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
        host::forward::<Self>(w, u, k, v, state)
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
        host::backward::<Self>(w, u, k, v, state, grad)
    }
}

/// ndarray: the host kernels read the arrays in place (the generic path's `into_data`
/// copies a shared array element by element, which costs more than the scan itself).
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
        let out = ndarray_host::forward::<f32>(ins).or_else(|| ndarray_host::forward::<f64>(ins));
        match out {
            Some(out) => out,
            None => host::forward::<Self>(w, u, k, v, state),
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
        let out = ndarray_host::backward::<f32>(ins, &grad)
            .or_else(|| ndarray_host::backward::<f64>(ins, &grad));
        match out {
            Some(out) => out,
            None => host::backward::<Self>(w, u, k, v, state, grad),
        }
    }
}

/// Zero-copy access to ndarray tensors for the host kernels.
mod ndarray_host {
    use std::borrow::Cow;

    use burn::backend::ndarray::NdArrayTensor;
    use burn::tensor::{TensorData, TensorMetadata};

    use super::host::{self, Dims, Real};

    /// An element type the ndarray primitive can hold.
    pub trait NdElem: Real {
        /// The tensor's elements in row-major order, borrowed when contiguous.
        fn cow(t: &NdArrayTensor) -> Option<Cow<'_, [Self]>>;
    }

    macro_rules! nd_elem {
        ($ty:ty, $variant:ident) => {
            impl NdElem for $ty {
                fn cow(t: &NdArrayTensor) -> Option<Cow<'_, [Self]>> {
                    match t {
                        NdArrayTensor::$variant(storage) => {
                            let view = storage.view();
                            Some(match view.to_slice() {
                                Some(slice) => Cow::Borrowed(slice),
                                None => Cow::Owned(view.iter().copied().collect()),
                            })
                        }
                        _ => None,
                    }
                }
            }
        };
    }
    nd_elem!(f32, F32);
    nd_elem!(f64, F64);

    fn slices<F: NdElem>(ins: [&NdArrayTensor; 5]) -> Option<[Cow<'_, [F]>; 5]> {
        let [w, u, k, v, s] = ins;
        Some([F::cow(w)?, F::cow(u)?, F::cow(k)?, F::cow(v)?, F::cow(s)?])
    }

    fn dims(k: &NdArrayTensor) -> Dims {
        let s = k.shape();
        Dims {
            batch: s[0],
            time: s[1],
            channels: s[2],
        }
    }

    fn tensor<F: Real>(values: Vec<F>, shape: Vec<usize>) -> NdArrayTensor {
        NdArrayTensor::from_data(TensorData::new(values, shape))
    }

    pub fn forward<F: NdElem>(ins: [&NdArrayTensor; 5]) -> Option<NdArrayTensor> {
        let d = dims(ins[2]);
        let [w, u, k, v, s] = slices::<F>(ins)?;
        let out = host::forward_slices(d, &w, &u, &k, &v, &s);
        Some(tensor(out, vec![d.batch, d.time + 3, d.channels]))
    }

    pub fn backward<F: NdElem>(
        ins: [&NdArrayTensor; 5],
        grad: &NdArrayTensor,
    ) -> Option<[NdArrayTensor; 5]> {
        let d = dims(ins[2]);
        let [w, u, k, v, s] = slices::<F>(ins)?;
        let grad = F::cow(grad)?;
        let [gw, gu, gk, gv, gs] = host::backward_slices(d, [&w, &u, &k, &v, &s], &grad);
        let (b, t, c) = (d.batch, d.time, d.channels);
        Some([
            tensor(gw, vec![c]),
            tensor(gu, vec![c]),
            tensor(gk, vec![b, t, c]),
            tensor(gv, vec![b, t, c]),
            tensor(gs, vec![b, 3, c]),
        ])
    }
}

#[cfg(feature = "flex")]
impl WkvBackend for burn::backend::Flex {}

#[cfg(feature = "wgpu")]
impl WkvBackend for burn::backend::Wgpu {}

#[cfg(feature = "cuda")]
impl WkvBackend for burn::backend::Cuda {}

impl<B: WkvBackend, C: CheckpointStrategy> WkvBackend for Autodiff<B, C> {
    fn wkv_scan(
        w: FloatTensor<Self>,
        u: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        state: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ScanBackward;

        impl<B: WkvBackend> Backward<B, 5> for ScanBackward {
            type State = [FloatTensor<B>; 5];

            fn backward(
                self,
                ops: Ops<Self::State, 5>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
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

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
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
    (out.slice([0..batch, 0..time, 0..channels]), state)
}

/// Plain-Rust kernels over host copies of the tensors.
pub mod host {
    use super::*;
    use core::ops::{Add, Div, Mul, Neg, Sub};

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
    fn pair<F: Real>(x: F, y: F) -> (F, F, F) {
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

    /// Sizes of one call.
    #[derive(Debug, Clone, Copy)]
    pub struct Dims {
        /// Batch B.
        pub batch: usize,
        /// Time T.
        pub time: usize,
        /// Channels C.
        pub channels: usize,
    }

    /// One unit of work: batch row `b`, channels `c0..c0 + width`.
    #[derive(Debug, Clone, Copy)]
    struct Task {
        b: usize,
        c0: usize,
        width: usize,
    }

    /// Splits `B × C` into tasks for the available cores (one task for small problems,
    /// where starting threads costs more than it saves).
    fn tasks(d: Dims) -> (Vec<Task>, usize) {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let work = d.batch * d.time * d.channels;
        let threads = if work < (1 << 16) { 1 } else { threads };
        let per_batch = threads.div_ceil(d.batch).max(1);
        let width = d.channels.div_ceil(per_batch).max(1);
        let mut out = Vec::new();
        for b in 0..d.batch {
            let mut c0 = 0;
            while c0 < d.channels {
                let w = width.min(d.channels - c0);
                out.push(Task { b, c0, width: w });
                c0 += w;
            }
        }
        (out, threads)
    }

    /// Runs `f` on every task, on up to `threads` scoped threads; results in task order.
    fn run<R: Send>(tasks: &[Task], threads: usize, f: impl Fn(Task) -> R + Sync) -> Vec<R> {
        if threads <= 1 || tasks.len() <= 1 {
            return tasks.iter().map(|&t| f(t)).collect();
        }
        let groups = threads.min(tasks.len());
        let per = tasks.len().div_ceil(groups);
        std::thread::scope(|scope| {
            let handles: Vec<_> = tasks
                .chunks(per)
                .map(|chunk| {
                    let f = &f;
                    scope.spawn(move || chunk.iter().map(|&t| f(t)).collect::<Vec<R>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("WKV scan worker panicked"))
                .collect()
        })
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

    /// Where a task writes its output rows: row `r` starts at `ptr + r·stride` and is
    /// `width` long. Tasks cover disjoint `(batch row, channel range)` pairs, so their row
    /// segments never overlap, which is what makes sharing the pointer sound.
    #[derive(Clone, Copy)]
    struct Rows<F> {
        ptr: *mut F,
        stride: usize,
        width: usize,
    }

    // SAFETY: see the type's docs; each task writes only its own disjoint segments, and the
    // buffer outlives the scoped threads.
    unsafe impl<F: Send> Send for Rows<F> {}
    unsafe impl<F: Send> Sync for Rows<F> {}

    impl<F> Rows<F> {
        /// The same rows shifted by `offset` elements, `width` wide.
        ///
        /// # Safety
        /// `ptr + offset` must stay inside the buffer.
        #[inline(always)]
        unsafe fn offset(self, offset: usize, width: usize) -> Self {
            // SAFETY: guaranteed by the caller.
            Self {
                ptr: unsafe { self.ptr.add(offset) },
                stride: self.stride,
                width,
            }
        }

        /// # Safety
        /// `ptr + r·stride + width` must lie in the buffer, and no other live reference may
        /// cover this segment.
        #[inline(always)]
        #[allow(clippy::mut_from_ref)]
        unsafe fn row(&self, r: usize) -> &mut [F] {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.width) }
        }
    }

    /// The read-only inputs of one task.
    #[derive(Clone, Copy)]
    struct Inputs<'a, F> {
        d: Dims,
        t: Task,
        w: &'a [F],
        u: &'a [F],
        k: &'a [F],
        v: &'a [F],
    }

    #[inline(always)]
    fn steps_generic<F: Real>(
        x: Inputs<'_, F>,
        y: Rows<F>,
        state: &mut [Vec<F>; 3],
        mut trace: Option<&mut [F]>,
    ) {
        let Inputs { d, t, w, u, k, v } = x;
        let (c, cw, c0) = (d.channels, t.width, t.c0);
        let seq = t.b * d.time * c;
        let (w, u) = (&w[c0..c0 + cw], &u[c0..c0 + cw]);
        let [aa, bb, pp] = state;
        for step in 0..d.time {
            if let Some(tr) = trace.as_deref_mut() {
                let base = step * 3 * cw;
                tr[base..base + cw].copy_from_slice(aa);
                tr[base + cw..base + 2 * cw].copy_from_slice(bb);
                tr[base + 2 * cw..base + 3 * cw].copy_from_slice(pp);
            }
            let row = seq + step * c + c0;
            // SAFETY: `Rows` invariant, upheld by `forward_task`'s callers.
            let out = unsafe { y.row(step) };
            step_lanes(w, u, &k[row..row + cw], &v[row..row + cw], out, aa, bb, pp);
        }
    }

    /// The same loop compiled for AVX2 + FMA (8 f32 lanes); chosen at run time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn steps_avx2<F: Real>(
        x: Inputs<'_, F>,
        y: Rows<F>,
        state: &mut [Vec<F>; 3],
        trace: Option<&mut [F]>,
    ) {
        steps_generic(x, y, state, trace)
    }

    /// The same loop compiled for AVX-512 (16 f32 lanes); chosen at run time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
    fn steps_avx512<F: Real>(
        x: Inputs<'_, F>,
        y: Rows<F>,
        state: &mut [Vec<F>; 3],
        trace: Option<&mut [F]>,
    ) {
        steps_generic(x, y, state, trace)
    }

    /// The recurrence over one task's channels: writes the outputs to `y.row(0..T)` and
    /// returns the final state `[aa, bb, pp]`; with `trace`, also records the state before
    /// every step (`[T, 3, width]`).
    #[allow(clippy::too_many_arguments)]
    fn forward_task<F: Real>(
        d: Dims,
        t: Task,
        w: &[F],
        u: &[F],
        k: &[F],
        v: &[F],
        s0: &[F],
        y: Rows<F>,
        trace: Option<&mut [F]>,
    ) -> [Vec<F>; 3] {
        let (c, cw, c0) = (d.channels, t.width, t.c0);
        let st = t.b * 3 * c;
        let mut state = [0, 1, 2].map(|r| s0[st + r * c + c0..st + r * c + c0 + cw].to_vec());
        let x = Inputs { d, t, w, u, k, v };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU supports the features `steps_avx512` is compiled for.
            unsafe { steps_avx512(x, y, &mut state, trace) };
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features `steps_avx2` is compiled for.
            unsafe { steps_avx2(x, y, &mut state, trace) };
        } else {
            steps_generic(x, y, &mut state, trace);
        }
        #[cfg(not(target_arch = "x86_64"))]
        steps_generic(x, y, &mut state, trace);
        state
    }

    /// Forward over whole host arrays; returns the packed `[B, T + 3, C]` output.
    pub fn forward_slices<F: Real>(
        d: Dims,
        w: &[F],
        u: &[F],
        k: &[F],
        v: &[F],
        s0: &[F],
    ) -> Vec<F> {
        let (tasks, threads) = tasks(d);
        let (c, rows) = (d.channels, d.time + 3);
        let mut out = vec![F::ZERO; d.batch * rows * c];
        let whole = Rows {
            ptr: out.as_mut_ptr(),
            stride: c,
            width: 0,
        };
        // SAFETY: (batch t.b, row 0, channel t.c0) lies inside `out`.
        let at = |t: Task| unsafe { whole.offset(t.b * rows * c + t.c0, t.width) };
        let states = run(&tasks, threads, |t| {
            forward_task(d, t, w, u, k, v, s0, at(t), None)
        });
        for (&t, state) in tasks.iter().zip(states) {
            for (r, s) in state.iter().enumerate() {
                let o = t.b * rows * c + (d.time + r) * c + t.c0;
                out[o..o + t.width].copy_from_slice(s);
            }
        }
        out
    }

    /// Gradients of one task: `(gk, gv)` as `[T, width]`, `(gw, gu)` as `[width]` summed
    /// over time, `gs0` as `[3, width]`.
    #[allow(clippy::type_complexity)]
    fn backward_task<F: Real>(
        d: Dims,
        t: Task,
        ins: [&[F]; 5],
        grad: &[F],
    ) -> (Vec<F>, Vec<F>, Vec<F>, Vec<F>, Vec<F>) {
        let [w, u, k, v, s0] = ins;
        let (c, cw, c0, time) = (d.channels, t.width, t.c0, d.time);
        let mut scratch = vec![F::ZERO; cw]; // outputs are recomputed below; one row suffices
        let mut trace = vec![F::ZERO; time * 3 * cw];
        let rows = Rows {
            ptr: scratch.as_mut_ptr(),
            stride: 0,
            width: cw,
        };
        forward_task(d, t, w, u, k, v, s0, rows, Some(&mut trace));

        let rows = time + 3;
        let g = t.b * rows * c + c0;
        let mut ga = grad[g + time * c..g + time * c + cw].to_vec();
        let mut gb = grad[g + (time + 1) * c..g + (time + 1) * c + cw].to_vec();
        let mut gp = grad[g + (time + 2) * c..g + (time + 2) * c + cw].to_vec();
        let (mut gk, mut gv) = (vec![F::ZERO; time * cw], vec![F::ZERO; time * cw]);
        let (mut gw, mut gu) = (vec![F::ZERO; cw], vec![F::ZERO; cw]);
        let (w, u) = (&w[c0..c0 + cw], &u[c0..c0 + cw]);
        let seq = t.b * time * c;
        for step in (0..time).rev() {
            let base = step * 3 * cw;
            let row = seq + step * c + c0;
            for j in 0..cw {
                let (a, b, p) = (
                    trace[base + j],
                    trace[base + cw + j],
                    trace[base + 2 * cw + j],
                );
                let (kt, vt) = (k[row + j], v[row + j]);
                let gy = grad[g + step * c + j];
                // output y = (e1 a + e2 v) / den; y does not depend on the shift q.
                let uk = u[j] + kt;
                let (e1, e2, _) = pair(p, uk);
                let den = e1 * b + e2;
                let yv = (e1 * a + e2 * vt) / den;
                let gy_den = gy / den;
                // update a' = f1 a + f2 v, b' = f1 b + f2, p' = q2 = max(p + w, k)
                let pw = p + w[j];
                let (f1, f2, _) = pair(pw, kt);
                let a2 = f1 * a + f2 * vt;
                let b2 = f1 * b + f2;
                let (ga2, gb2, gp2) = (ga[j], gb[j], gp[j]);
                // d/dq2 of (a', b', p') with f1, f2 depending on q2: a' → -a', b' → -b', p' → 1
                let gq2 = gp2 - ga2 * a2 - gb2 * b2;
                let through_decay = (ga2 * a + gb2 * b) * f1; // d(a',b')/d(p+w) with q2 fixed
                let (to_pw, to_k) = if pw >= kt {
                    (gq2, F::ZERO)
                } else {
                    (F::ZERO, gq2)
                };
                let g_uk = gy_den * e2 * (vt - yv);
                gk[step * cw + j] = g_uk + (ga2 * vt + gb2) * f2 + to_k;
                gv[step * cw + j] = gy_den * e2 + ga2 * f2;
                gu[j] = gu[j] + g_uk;
                gw[j] = gw[j] + through_decay + to_pw;
                ga[j] = gy_den * e1 + ga2 * f1;
                gb[j] = -(gy_den * yv * e1) + gb2 * f1;
                gp[j] = gy_den * e1 * (a - yv * b) + through_decay + to_pw;
            }
        }
        let mut gs = ga;
        gs.extend_from_slice(&gb);
        gs.extend_from_slice(&gp);
        (gk, gv, gw, gu, gs)
    }

    /// Backward over whole host arrays: `[gw, gu, gk, gv, gstate]`.
    pub fn backward_slices<F: Real>(d: Dims, ins: [&[F]; 5], grad: &[F]) -> [Vec<F>; 5] {
        let (tasks, threads) = tasks(d);
        let parts = run(&tasks, threads, |t| backward_task(d, t, ins, grad));
        let (c, time) = (d.channels, d.time);
        let mut gk = vec![F::ZERO; d.batch * time * c];
        let mut gv = vec![F::ZERO; d.batch * time * c];
        let mut gw = vec![F::ZERO; c];
        let mut gu = vec![F::ZERO; c];
        let mut gs = vec![F::ZERO; d.batch * 3 * c];
        for (t, (lk, lv, lw, lu, ls)) in tasks.iter().zip(parts) {
            let cw = t.width;
            for r in 0..time {
                let o = t.b * time * c + r * c + t.c0;
                gk[o..o + cw].copy_from_slice(&lk[r * cw..(r + 1) * cw]);
                gv[o..o + cw].copy_from_slice(&lv[r * cw..(r + 1) * cw]);
            }
            for j in 0..cw {
                gw[t.c0 + j] = gw[t.c0 + j] + lw[j];
                gu[t.c0 + j] = gu[t.c0 + j] + lu[j];
            }
            for r in 0..3 {
                let o = t.b * 3 * c + r * c + t.c0;
                gs[o..o + cw].copy_from_slice(&ls[r * cw..(r + 1) * cw]);
            }
        }
        [gw, gu, gk, gv, gs]
    }

    fn read<B: Backend, F: Real>(p: FloatTensor<B>) -> Vec<F> {
        tensor::<B, 3>(p)
            .into_data()
            .convert::<F>()
            .into_vec::<F>()
            .expect("converted tensor data has the requested element type")
    }

    fn write<B: Backend, F: Real>(
        values: Vec<F>,
        shape: Vec<usize>,
        dtype: DType,
        device: &B::Device,
    ) -> FloatTensor<B> {
        B::float_from_data(TensorData::new(values, shape).convert_dtype(dtype), device)
    }

    fn dims<B: Backend>(k: &FloatTensor<B>) -> Dims {
        let s = k.shape();
        Dims {
            batch: s[0],
            time: s[1],
            channels: s[2],
        }
    }

    /// Host forward for any backend; computes in f64 for f64 tensors, else in f32.
    pub fn forward<B: Backend>(
        w: FloatTensor<B>,
        u: FloatTensor<B>,
        k: FloatTensor<B>,
        v: FloatTensor<B>,
        state: FloatTensor<B>,
    ) -> FloatTensor<B> {
        fn go<B: Backend, F: Real>(ins: [FloatTensor<B>; 5]) -> FloatTensor<B> {
            let d = dims::<B>(&ins[2]);
            let dtype = ins[2].dtype();
            let device = B::float_device(&ins[2]);
            let [w, u, k, v, s] = ins.map(read::<B, F>);
            let out = forward_slices(d, &w, &u, &k, &v, &s);
            write::<B, F>(out, vec![d.batch, d.time + 3, d.channels], dtype, &device)
        }
        if k.dtype() == DType::F64 {
            go::<B, f64>([w, u, k, v, state])
        } else {
            go::<B, f32>([w, u, k, v, state])
        }
    }

    /// Host backward for any backend.
    pub fn backward<B: Backend>(
        w: FloatTensor<B>,
        u: FloatTensor<B>,
        k: FloatTensor<B>,
        v: FloatTensor<B>,
        state: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> [FloatTensor<B>; 5] {
        fn go<B: Backend, F: Real>(
            ins: [FloatTensor<B>; 5],
            grad: FloatTensor<B>,
        ) -> [FloatTensor<B>; 5] {
            let d = dims::<B>(&ins[2]);
            let dtype = ins[2].dtype();
            let device = B::float_device(&ins[2]);
            let [w, u, k, v, s] = ins.map(read::<B, F>);
            let grad = read::<B, F>(grad);
            let [gw, gu, gk, gv, gs] = backward_slices(d, [&w, &u, &k, &v, &s], &grad);
            let (b, t, c) = (d.batch, d.time, d.channels);
            [
                write::<B, F>(gw, vec![c], dtype, &device),
                write::<B, F>(gu, vec![c], dtype, &device),
                write::<B, F>(gk, vec![b, t, c], dtype, &device),
                write::<B, F>(gv, vec![b, t, c], dtype, &device),
                write::<B, F>(gs, vec![b, 3, c], dtype, &device),
            ]
        }
        if k.dtype() == DType::F64 {
            go::<B, f64>([w, u, k, v, state], grad)
        } else {
            go::<B, f32>([w, u, k, v, state], grad)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use lab_util::SplitMix64;

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

        /// Loss = Σ r·out over the packed output; compares the analytic backward with
        /// central differences in f64.
        #[test]
        fn backward_matches_finite_differences() {
            let d = Dims {
                batch: 2,
                time: 5,
                channels: 3,
            };
            let mut rng = SplitMix64::new(11);
            let n = d.batch * d.time * d.channels;
            let w: Vec<f64> = rng.fill(3, |r| -r.range(0.05, 3.0));
            let u = rng.fill(3, |r| r.range(-2.0, 2.0));
            let k = rng.fill(n, |r| r.range(-3.0, 3.0));
            let v = rng.fill(n, |r| r.range(-2.0, 2.0));
            let mut s0 = Vec::new();
            for _ in 0..d.batch {
                s0.extend(rng.fill(3, |r| r.range(-1.0, 1.0)));
                s0.extend(rng.fill(3, |r| r.range(0.5, 2.0)));
                s0.extend(rng.fill(3, |r| r.range(-1.0, 1.0)));
            }
            let r = rng.fill(d.batch * (d.time + 3) * d.channels, |r| r.range(-1.0, 1.0));
            let loss = |ins: &[Vec<f64>; 5]| -> f64 {
                let out = forward_slices(d, &ins[0], &ins[1], &ins[2], &ins[3], &ins[4]);
                out.iter().zip(&r).map(|(a, b)| a * b).sum()
            };
            let ins = [w, u, k, v, s0];
            let grads = backward_slices(d, [&ins[0], &ins[1], &ins[2], &ins[3], &ins[4]], &r);
            for which in 0..5 {
                for idx in 0..ins[which].len() {
                    let h = 1e-6;
                    let mut plus = ins.clone();
                    plus[which][idx] += h;
                    let mut minus = ins.clone();
                    minus[which][idx] -= h;
                    let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                    let an = grads[which][idx];
                    assert!(
                        (fd - an).abs() <= 1e-6 * (1.0 + fd.abs()),
                        "input {which}[{idx}]: fd {fd} vs analytic {an}"
                    );
                }
            }
        }
    }
}
