//! Conversion: a checked file's tensors into host memory as f64 (exact for f16, bf16 and
//! f32), finite, token-shift mixes as `[C]`; and serving them to the model builder in the
//! model's layout.

use std::collections::BTreeMap;

use burn::tensor::{DType, TensorData};
use burn_store::TensorSnapshot;
use rwkv::{ParamSource, ParamSpec, RwkvConfig, RwkvError};

use crate::error::{CheckpointError, Result};
use crate::keys::Renamed;
use crate::layout;

/// One tensor read into host memory, as f64, with the dtype it had in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape in the file.
    pub shape: Vec<usize>,
    /// Element type in the file.
    pub dtype: DType,
    /// Values, row-major, converted to f64 (exact for f16, bf16 and f32).
    pub data: Vec<f64>,
}

impl HostTensor {
    pub(crate) fn from_snapshot(path: &str, key: &str, s: &TensorSnapshot) -> Result<Self> {
        let data = s.to_data().map_err(|e| CheckpointError::Read {
            path: path.into(),
            format: "a tensor",
            reason: format!("`{key}`: {e:?}"),
        })?;
        Self::from_data(path, key, data)
    }

    pub(crate) fn from_data(path: &str, key: &str, data: TensorData) -> Result<Self> {
        let dtype = data.dtype;
        let shape = data.shape.to_vec();
        if !matches!(dtype, DType::F64 | DType::F32 | DType::F16 | DType::BF16) {
            return Err(CheckpointError::Invalid {
                path: path.into(),
                reason: format!(
                    "`{key}` has element type {dtype:?}; expected a float tensor (f16, bf16, f32 or f64)"
                ),
            });
        }
        let values =
            data.convert::<f64>()
                .into_vec::<f64>()
                .map_err(|e| CheckpointError::Read {
                    path: path.into(),
                    format: "a tensor",
                    reason: format!("`{key}`: {e:?}"),
                })?;
        Ok(Self {
            shape,
            dtype,
            data: values,
        })
    }
}

/// Every parameter of `config` from `t` (already checked), in the file's layout except
/// that token-shift mixes become `[C]`; NaN or infinite values are refused.
pub(crate) fn to_host(t: &Renamed, config: &RwkvConfig) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    for spec in config.params() {
        let (key, snapshot) = &t.tensors[&spec.key];
        let mut host = HostTensor::from_snapshot(&t.path, key, snapshot)?;
        if host.data.iter().any(|x| !x.is_finite()) {
            return Err(CheckpointError::Invalid {
                path: t.path.clone(),
                reason: format!("`{key}` contains NaN or infinite values"),
            });
        }
        if spec.param.is_token_shift_mix() {
            host.shape = spec.shape.dims();
        }
        out.insert(spec.key, host);
    }
    Ok(out)
}

/// Serves host tensors (file layout) to [`RwkvConfig::init_from`] in the model's layout.
pub(crate) struct Source<'a> {
    pub tensors: &'a BTreeMap<String, HostTensor>,
}

impl ParamSource for Source<'_> {
    fn values(&mut self, spec: &ParamSpec) -> core::result::Result<Vec<f64>, RwkvError> {
        let t = self
            .tensors
            .get(&spec.key)
            .ok_or_else(|| RwkvError::Source {
                key: spec.key.clone(),
                reason: "not in the checkpoint".into(),
            })?;
        Ok(layout::to_model(spec, &t.data))
    }
}
