//! The scan for any backend without a kernel of its own: copy the tensors to the host, run
//! the host kernel ([`super::host`]), copy the results back. Correct everywhere; on a GPU
//! it pays a device↔host round trip per call.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorData, TensorMetadata, backend::Backend};

use super::host::{self, Dims, Real};

fn read<B: Backend, F: Real>(p: FloatTensor<B>) -> Vec<F> {
    super::tensor::<B, 3>(p)
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
        let out = host::forward_slices(d, &w, &u, &k, &v, &s);
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
        let [gw, gu, gk, gv, gs] = host::backward_slices(d, [&w, &u, &k, &v, &s], &grad);
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
