//! The file layout of each parameter versus the model's: projections are `[d_out, d_in]`
//! in checkpoint files and `[d_in, d_out]` in Burn's `Linear`; token-shift mixes are
//! `[1, 1, C]` in files (`[C]` and `[1, C]` are accepted too) and `[C]` in the model. Used by
//! loading (shape check and conversion) and by saving.

use rwkv::{ParamShape, ParamSpec};

/// The shape a parameter has in the files this crate writes (and names in messages).
pub(crate) fn file_shape(spec: &ParamSpec) -> Vec<usize> {
    match spec.shape {
        ParamShape::Linear { d_in, d_out } => vec![d_out, d_in],
        ParamShape::Vector(c) if spec.param.is_token_shift_mix() => vec![1, 1, c],
        ParamShape::Vector(c) => vec![c],
        ParamShape::Embedding { vocab, d_model } => vec![vocab, d_model],
    }
}

/// Whether a file may store the parameter with shape `got`.
pub(crate) fn accepts(spec: &ParamSpec, got: &[usize]) -> bool {
    match spec.shape {
        ParamShape::Vector(c) if spec.param.is_token_shift_mix() => {
            got == [c] || got == [1, c] || got == [1, 1, c]
        }
        _ => got == file_shape(spec).as_slice(),
    }
}

/// `rows × cols` row-major → `cols × rows` row-major.
fn transpose(values: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// File values (`[d_out, d_in]` for projections) → model values (`[d_in, d_out]`).
pub(crate) fn to_model(spec: &ParamSpec, values: &[f64]) -> Vec<f64> {
    match spec.shape {
        ParamShape::Linear { d_in, d_out } => transpose(values, d_out, d_in),
        _ => values.to_vec(),
    }
}

/// Model values → `(file shape, file values)`.
pub(crate) fn to_file(spec: &ParamSpec, values: Vec<f64>) -> (Vec<usize>, Vec<f64>) {
    let values = match spec.shape {
        ParamShape::Linear { d_in, d_out } => transpose(&values, d_in, d_out),
        _ => values,
    };
    (file_shape(spec), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_round_trips() {
        let spec = ParamSpec {
            param: rwkv::RwkvParam::Head,
            key: "head.weight".into(),
            shape: ParamShape::Linear { d_in: 2, d_out: 3 },
        };
        // model [d_in = 2, d_out = 3]
        let model = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let (shape, file) = to_file(&spec, model.clone());
        assert_eq!(shape, [3, 2]);
        assert_eq!(file, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(to_model(&spec, &file), model);
    }
}
