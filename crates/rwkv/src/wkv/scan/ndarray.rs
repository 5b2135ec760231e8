//! Zero-copy access to ndarray tensors for the host kernels: the generic path's
//! `into_data` copies a shared array element by element, which costs more than the scan
//! itself.

use std::borrow::Cow;

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::{TensorData, TensorMetadata};

use super::host::{self, Dims, Real};

/// An element type the ndarray primitive can hold.
pub(super) trait NdElem: Real {
    /// The tensor's elements in row-major order, borrowed when contiguous; `None` when
    /// the tensor holds another element type.
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

/// Forward on `[w, u, k, v, state]` held as `F`; `None` if they hold another type.
pub(super) fn forward<F: NdElem>(ins: [&NdArrayTensor; 5]) -> Option<NdArrayTensor> {
    let d = dims(ins[2]);
    let [w, u, k, v, s] = slices::<F>(ins)?;
    let out = host::forward_slices(d, &w, &u, &k, &v, &s);
    Some(tensor(out, vec![d.batch, d.time + 3, d.channels]))
}

/// Backward on `[w, u, k, v, state]` and the output gradient held as `F`; `None` if they
/// hold another type.
pub(super) fn backward<F: NdElem>(
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
