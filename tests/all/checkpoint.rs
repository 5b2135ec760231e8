//! Checkpoints: both formats of `tests/fixtures/reference-tiny` load to the same model,
//! every formulation and RNN mode reproduces the third-party reference arrays, saving and
//! reloading is exact, and half-precision files are accepted.

use std::path::{Path, PathBuf};

use rwkv_checkpoint::{Checkpoint, Format, load, load_reference, save_hf};
use rwkv_lab_core::verify::{Inputs, ORACLE, VerifyOptions, verify_checkpoint};

use crate::common::*;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference-tiny")
        .join(name)
}

#[test]
fn both_formats_load_to_the_same_tensors() {
    let pth = load(fixture("model.pth")).unwrap();
    let hf = load(fixture("")).unwrap(); // the folder: config.json + model.safetensors
    let st = load(fixture("model.safetensors")).unwrap();
    assert_eq!(pth.format, Format::BlinkDlPth);
    assert_eq!(hf.format, Format::HfSafetensors);
    assert_eq!(st.format, Format::HfSafetensors);
    assert!(
        hf.hf_config.is_some() && st.hf_config.is_some(),
        "config.json beside the file is used"
    );
    let c = &pth.config;
    assert_eq!(
        (c.vocab_size, c.d_model, c.n_layers, c.d_ffn),
        (50, 32, 2, 128)
    );
    assert!(c.variant.ln0);
    assert_eq!(pth.config, hf.config);
    assert_eq!(
        pth.tensors.keys().collect::<Vec<_>>(),
        hf.tensors.keys().collect::<Vec<_>>()
    );
    for (k, t) in &pth.tensors {
        assert_eq!(t.data, hf.tensors[k].data, "{k}");
        assert_eq!(t.shape, hf.tensors[k].shape, "{k}");
    }
}

/// torch.save's legacy (non-zip) format reads like the zip one.
#[test]
fn legacy_pth_loads_like_the_zip() {
    let zip = load(fixture("model.pth")).unwrap();
    let legacy = load(fixture("model-legacy.pth")).unwrap();
    assert_eq!(legacy.format, Format::BlinkDlPth);
    assert_eq!(legacy.config, zip.config);
    assert_eq!(legacy.tensors, zip.tensors);
}

/// The comparisons of `verify --checkpoint CKPT --reference` against the reference's arrays
/// (`ref_tol`: a fixed tolerance, or None for the condition-aware ones).
pub fn reference_rows<B: rwkv::WkvBackend>(
    ckpt: &Checkpoint,
    ref_tol: Option<f64>,
) -> Vec<rwkv::verify::Comparison> {
    let reference = load_reference(fixture("reference.safetensors")).unwrap();
    let opts = VerifyOptions {
        chunk_len: 5,
        ref_tol,
        ..VerifyOptions::default()
    };
    let report = verify_checkpoint::<B>(
        &Default::default(),
        ckpt,
        Inputs::Reference(&reference),
        &opts,
    )
    .unwrap();
    report
        .comparisons
        .into_iter()
        .filter(|c| c.b != "recurrent" && c.b != ORACLE)
        .collect()
}

fn check_reference<B: rwkv::WkvBackend>(file: &str) -> Vec<rwkv::verify::Comparison> {
    let ckpt = load(fixture(file)).unwrap();
    let reference = load_reference(fixture("reference.safetensors")).unwrap();
    assert_eq!(reference.split, Some(7));
    let comps = reference_rows::<B>(&ckpt, None);
    let failed: Vec<_> = comps.iter().filter(|c| !c.pass).collect();
    assert!(failed.is_empty(), "{file}: {failed:#?}");
    comps
}

#[test]
fn every_formulation_reproduces_the_reference_f64() {
    for file in ["model.pth", ""] {
        let comps = check_reference::<F64>(file);
        // 5 whole runs × (exact, whole, 2 BlinkDL, 4 state) + 5 split runs
        assert_eq!(comps.len(), 5 * 8 + 5);
        for key in [
            "logits_exact_f64",
            "logits_whole",
            "logits_split",
            "blinkdl_seq_logits0",
            "blinkdl_rnn_logits0",
            "final_state_0",
        ] {
            assert!(comps.iter().any(|c| c.b == key), "{key} compared");
        }
        // the f64 model is far closer to the exact f64 reference than the tolerance needs
        let worst = comps
            .iter()
            .filter(|c| c.b == "logits_exact_f64")
            .map(|c| c.max_abs)
            .fold(0.0, f64::max);
        assert!(worst < 1e-9, "{worst:e}");
    }
}

#[test]
fn every_formulation_reproduces_the_reference_f32() {
    for file in ["model.pth", "model.safetensors"] {
        check_reference::<F32>(file);
    }
}

#[test]
fn a_wrong_model_fails_the_reference() {
    // same file, but one decay changed: the reference comparisons must fail
    let mut ckpt = load(fixture("model.pth")).unwrap();
    ckpt.tensors
        .get_mut("blocks.1.att.time_decay")
        .unwrap()
        .data[3] += 0.05;
    let comps = reference_rows::<F64>(&ckpt, None);
    assert!(
        comps
            .iter()
            .filter(|c| c.b == "logits_exact_f64")
            .all(|c| !c.pass)
    );
}

#[test]
fn save_and_reload_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype_f64, sub) in [(true, "f64"), (false, "f32")] {
        let ckpt = load(fixture("model.pth")).unwrap();
        let out = dir.path().join(sub);
        if dtype_f64 {
            save_hf(&ckpt.to_model::<F64>(&Default::default()).unwrap(), &out).unwrap();
        } else {
            save_hf(&ckpt.to_model::<F32>(&Default::default()).unwrap(), &out).unwrap();
        }
        let back = load(&out).unwrap();
        assert_eq!(back.format, Format::HfSafetensors);
        assert_eq!(back.config, ckpt.config);
        for (k, t) in &ckpt.tensors {
            assert_eq!(back.tensors[k].data, t.data, "{sub}: {k}");
        }
        // the saved file has HF names and layouts: it matches the HF fixture key for key
        let original = std::fs::read(fixture("model.safetensors")).unwrap();
        let saved = std::fs::read(out.join("model.safetensors")).unwrap();
        let a = safetensors::SafeTensors::deserialize(&original).unwrap();
        let b = safetensors::SafeTensors::deserialize(&saved).unwrap();
        let mut ka = a.names();
        let mut kb = b.names();
        ka.sort();
        kb.sort();
        assert_eq!(ka, kb);
        for k in ka {
            assert_eq!(
                a.tensor(k).unwrap().shape(),
                b.tensor(k).unwrap().shape(),
                "{k}"
            );
            if !dtype_f64 {
                assert_eq!(
                    a.tensor(k).unwrap().data(),
                    b.tensor(k).unwrap().data(),
                    "{k}"
                );
            }
        }
    }
}

/// Rewrites the HF fixture with every tensor in `dtype` (f16 or bf16).
pub fn half_precision_copy(dir: &Path, dtype: safetensors::Dtype) -> PathBuf {
    let bytes = std::fs::read(fixture("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let vals: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let data: Vec<u8> = vals
            .iter()
            .flat_map(|x| match dtype {
                safetensors::Dtype::F16 => half_bits_f16(*x).to_le_bytes(),
                _ => (((x.to_bits() + 0x8000) >> 16) as u16).to_le_bytes(), // bf16, rounded
            })
            .collect();
        out.push((name, view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = out
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let folder = dir.join(format!("{dtype:?}"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(fixture("config.json"), folder.join("config.json")).unwrap();
    safetensors::serialize_to_file(views, None, &folder.join("model.safetensors")).unwrap();
    folder
}

/// f32 → IEEE half bits (round to nearest; the fixture's values are small and normal).
fn half_bits_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    if exp <= 0 {
        return sign; // flush tiny values to zero
    }
    let half = sign | ((exp as u16) << 10) | (mant >> 13) as u16;
    half + ((mant >> 12) & 1) as u16
}

#[test]
fn half_precision_files_are_accepted_and_converted() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [safetensors::Dtype::F16, safetensors::Dtype::BF16] {
        let folder = half_precision_copy(dir.path(), dtype);
        let ckpt = load(&folder).unwrap();
        let want = format!("{dtype:?}").to_lowercase();
        assert!(
            ckpt.dtypes().iter().all(|d| *d == want),
            "{:?}",
            ckpt.dtypes()
        );
        let full = load(fixture("model.pth")).unwrap();
        // rounding to 11 (f16) or 8 (bf16) significant bits
        let rel = if dtype == safetensors::Dtype::F16 {
            1e-3
        } else {
            8e-3
        };
        for (k, t) in &ckpt.tensors {
            let scale = full.tensors[k]
                .data
                .iter()
                .fold(0f64, |m, x| m.max(x.abs()));
            assert_close(
                k,
                &t.data,
                &full.tensors[k].data,
                rel * scale.max(1e-3) / scale.max(1.0),
            );
        }
        // and the converted model runs in f32 and f64
        let model = ckpt.to_model::<F64>(&Default::default()).unwrap();
        let toks = tokens::<F64>(&[1, 2, 3], 1, 3);
        let (logits, _) = model.forward(toks, None, rwkv::WkvMode::Scan).unwrap();
        assert!(rwkv::verify::to_f64(logits).iter().all(|x| x.is_finite()));
        ckpt.to_model::<F32>(&Default::default()).unwrap();
    }
}

/// A bf16 `.pth` (the format of BlinkDL's released RWKV-4 checkpoints), made from the
/// fixture by `tests/fixtures/reference-tiny/make_bf16_pth.py`: loads through burn-store,
/// holds the bf16-rounded values, and still reproduces the reference at bf16 accuracy.
#[test]
fn bf16_pth_loads_and_runs() {
    let ckpt = load(fixture("model-bf16.pth")).unwrap();
    assert_eq!(ckpt.format, Format::BlinkDlPth);
    assert_eq!(
        ckpt.dtypes().into_iter().collect::<Vec<_>>(),
        vec!["bf16".to_string()]
    );
    let full = load(fixture("model.pth")).unwrap();
    for (k, t) in &ckpt.tensors {
        for (a, b) in t.data.iter().zip(&full.tensors[k].data) {
            // round to nearest even on the top 16 bits of the f32 pattern
            let bits = (*b as f32).to_bits();
            let rounded = f32::from_bits(((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) << 16) as f64;
            assert_eq!(*a, rounded, "{k}");
        }
    }
    let comps = reference_rows::<F64>(&ckpt, Some(0.1));
    assert!(comps.iter().all(|c| c.pass), "{comps:#?}");
    let worst = comps
        .iter()
        .filter(|c| c.b == "logits_exact_f64")
        .map(|c| c.max_abs)
        .fold(0.0, f64::max);
    assert!(
        worst > 1e-5 && worst < 0.1,
        "bf16 weights move the logits a little: {worst:e}"
    );
}
