//! Bad checkpoints and reference files: one clear line naming the file and the key, a
//! typed error from the library, exit status 2 from the CLI, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use rwkv_checkpoint::{CheckpointError, load, load_reference};

use crate::checkpoint::fixture;

type Tensors = Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>;
type Edit = Box<dyn Fn(&mut Tensors)>;

fn read(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write(path: &Path, tensors: &Tensors, meta: Option<(&str, &str)>) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = meta.map(|(k, v)| std::collections::HashMap::from([(k.to_string(), v.to_string())]));
    safetensors::serialize_to_file(views, meta, path).unwrap();
}

/// The HF fixture with `edit` applied, written as a standalone file (no config.json).
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Tensors)) -> PathBuf {
    let mut t = read(&fixture("model.safetensors"));
    edit(&mut t);
    let path = dir.join(format!("{name}.safetensors"));
    write(&path, &t, None);
    path
}

fn f32_tensor(name: &str, shape: Vec<usize>) -> (String, safetensors::Dtype, Vec<usize>, Vec<u8>) {
    let n: usize = shape.iter().product();
    (
        name.to_string(),
        safetensors::Dtype::F32,
        shape,
        vec![0u8; 4 * n],
    )
}

/// Runs the CLI; returns (exit code, stderr).
fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rwkv-lab"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The library error's message names the file and contains `needle`; the CLI prints it
/// on one line and exits 2 without panicking.
fn assert_clear(path: &Path, err: CheckpointError, needle: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string())
            || msg.contains(path.file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
    assert!(msg.contains(needle), "{msg} does not mention {needle}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    let (code, stderr) = cli(&["verify", "--checkpoint", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_file() {
    let p = Path::new("/nonexistent/model.pth");
    let e = load(p).unwrap_err();
    assert!(matches!(e, CheckpointError::NotFound { .. }));
    assert_clear(p, e, "no such file");
}

#[test]
fn folder_without_model_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("config.json"), dir.path().join("config.json")).unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(matches!(e, CheckpointError::MissingFile { .. }), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(
        load(empty.path())
            .unwrap_err()
            .to_string()
            .contains("config.json not found")
    );
}

#[test]
fn truncated_or_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    for (src, name) in [
        ("model.pth", "cut.pth"),
        ("model.safetensors", "cut.safetensors"),
        ("model-legacy.pth", "cut-legacy.pth"),
    ] {
        let bytes = std::fs::read(fixture(src)).unwrap();
        for cut in [3, bytes.len() / 2, bytes.len() - 10] {
            let p = dir.path().join(format!("{cut}-{name}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = load(&p).unwrap_err();
            assert!(matches!(e, CheckpointError::Truncated { .. }), "{e}");
            assert_clear(&p, e, "truncated");
        }
    }
    // garbage in the header
    let mut bytes = std::fs::read(fixture("model.safetensors")).unwrap();
    for b in bytes.iter_mut().skip(8).take(40) {
        *b = b'#';
    }
    let p = dir.path().join("garbage.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    assert_clear(&p, load(&p).unwrap_err(), "cannot read");
    // a zip whose end record points its central directory outside the file
    let mut bytes = std::fs::read(fixture("model.pth")).unwrap();
    let end = bytes.len() - 22;
    assert_eq!(&bytes[end..end + 4], b"PK\x05\x06");
    bytes[end + 16..end + 20].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    let p = dir.path().join("bad-directory.pth");
    std::fs::write(&p, &bytes).unwrap();
    let e = load(&p).unwrap_err();
    assert!(matches!(e, CheckpointError::Read { .. }), "{e}");
    assert_clear(&p, e, "corrupt zip archive");
}

/// Lengths to cut a file of `len` bytes to: the first 32, every 1499th, the last 128.
fn cuts(len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = (1..32).chain((32..len).step_by(1499)).collect();
    c.extend(len.saturating_sub(128)..len);
    c.sort_unstable();
    c.dedup();
    c
}

/// Every cut of every shipped checkpoint file, in both containers and both PyTorch
/// formats, says "truncated" (burn-store alone says "Invalid pickle opcode" for a cut zip,
/// "header too large" or worse for a cut safetensors file, and reads the missing storages
/// of a cut legacy file as zeros, without an error).
#[test]
fn every_cut_says_truncated() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "model.pth",
        "model-bf16.pth",
        "model-legacy.pth",
        "model.safetensors",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let p = dir.path().join(format!("cut-{name}"));
        for cut in cuts(bytes.len()) {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = load(&p).unwrap_err();
            assert!(
                matches!(e, CheckpointError::Truncated { .. }),
                "{name} cut to {cut} of {} bytes: {e}",
                bytes.len()
            );
            let msg = e.to_string();
            assert!(
                msg.contains("truncated")
                    && msg.contains(&p.display().to_string())
                    && !msg.contains('\n'),
                "{msg}"
            );
        }
        // the whole file loads
        load(fixture(name)).unwrap();
    }
    // the cut the issue names, through the CLI
    let bytes = std::fs::read(fixture("model.pth")).unwrap();
    let p = dir.path().join("last-105.pth");
    std::fs::write(&p, &bytes[..bytes.len() - 105]).unwrap();
    let e = load(&p).unwrap_err();
    assert_clear(&p, e, "truncated zip archive");
}

#[test]
fn empty_and_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.pth");
    std::fs::write(&p, b"").unwrap();
    let e = load(&p).unwrap_err();
    assert!(matches!(e, CheckpointError::EmptyFile { .. }), "{e}");
    assert_clear(&p, e, "empty file");

    let null = Path::new("/dev/null");
    if null.exists() {
        let e = load(null).unwrap_err();
        assert!(matches!(e, CheckpointError::NotRegularFile { .. }), "{e}");
        assert_clear(null, e, "not a regular file (a character device)");
    }
    // a folder whose model file is itself a folder
    let folder = dir.path().join("hf");
    std::fs::create_dir_all(folder.join("model.safetensors")).unwrap();
    std::fs::copy(fixture("config.json"), folder.join("config.json")).unwrap();
    let e = load(&folder).unwrap_err();
    assert!(
        e.to_string()
            .contains("model.safetensors: not a regular file"),
        "{e}"
    );
}

/// Files that are no checkpoint at all say what they look like, whatever their name.
#[test]
fn not_a_checkpoint_says_what_it_looks_like() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "# a spec\nseed: 0\nprefill:\n  seq_lens: [128, 256]\n";
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("spec.pth", spec.into(), "looks like YAML text"),
        ("spec.safetensors", spec.into(), "looks like YAML text"),
        ("spec", spec.into(), "looks like YAML text"),
        (
            "config.bin",
            std::fs::read(fixture("config.json")).unwrap(),
            "looks like JSON text",
        ),
        (
            "notes.pth",
            b"some notes about a model\n".to_vec(),
            "looks like plain text",
        ),
        (
            "noise.safetensors",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
                .collect(),
            "looks like binary data",
        ),
    ];
    for (name, bytes, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = load(&p).unwrap_err();
        assert!(
            matches!(e, CheckpointError::NotACheckpoint { .. }),
            "{name}: {e}"
        );
        assert_clear(&p, e, &format!("not a checkpoint ({needle}"));
    }
}

/// Token-shift mixes are `[1, 1, C]` in the shipped files; `[C]` and `[1, C]` load to the
/// same tensors, any other shape is refused.
#[test]
fn mixes_load_in_any_of_their_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let base = load(fixture("model.safetensors")).unwrap();
    for (name, shape) in [("flat", vec![32]), ("row", vec![1, 32])] {
        let p = edited(dir.path(), name, |t| {
            for (n, _, s, _) in t.iter_mut() {
                if n.contains("time_mix_") {
                    *s = shape.clone();
                }
            }
        });
        let ckpt = load(&p).unwrap();
        assert_eq!(ckpt.tensors, base.tensors, "{name}");
    }
    let p = edited(dir.path(), "column", |t| {
        for (n, _, s, _) in t.iter_mut() {
            if n == "rwkv.blocks.0.attention.time_mix_key" {
                *s = vec![32, 1];
            }
        }
    });
    assert_clear(
        &p,
        load(&p).unwrap_err(),
        "`rwkv.blocks.0.attention.time_mix_key` has shape [32, 1], expected [1, 1, 32]",
    );
}

#[test]
fn missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), "missing", |t| {
        t.retain(|(n, ..)| n != "rwkv.blocks.1.attention.time_first")
    });
    let e = load(&p).unwrap_err();
    assert!(matches!(e, CheckpointError::MissingKey { .. }), "{e}");
    assert_clear(&p, e, "missing key `rwkv.blocks.1.attention.time_first`");
}

#[test]
fn unexpected_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), "extra", |t| {
        t.push(f32_tensor("rwkv.blocks.0.attention.bonus_bias", vec![32]))
    });
    let e = load(&p).unwrap_err();
    assert!(matches!(e, CheckpointError::UnexpectedKey { .. }), "{e}");
    assert_clear(&p, e, "unexpected key `rwkv.blocks.0.attention.bonus_bias`");
}

#[test]
fn wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), "shape", |t| {
        let i = t
            .iter()
            .position(|(n, ..)| n == "rwkv.blocks.0.attention.key.weight")
            .unwrap();
        t[i] = f32_tensor("rwkv.blocks.0.attention.key.weight", vec![32, 31]);
    });
    let e = load(&p).unwrap_err();
    assert!(matches!(e, CheckpointError::Shape { .. }), "{e}");
    assert_clear(
        &p,
        e,
        "`rwkv.blocks.0.attention.key.weight` has shape [32, 31], expected [32, 32]",
    );
}

#[test]
fn inconsistent_dims_between_layers() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited(dir.path(), "layers", |t| {
        for (name, shape) in [
            ("rwkv.blocks.1.feed_forward.key.weight", vec![64, 32]),
            ("rwkv.blocks.1.feed_forward.value.weight", vec![32, 64]),
        ] {
            let i = t.iter().position(|(n, ..)| n == name).unwrap();
            t[i] = f32_tensor(name, shape);
        }
    });
    let e = load(&p).unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::Inconsistent {
                dim: "d_ffn",
                got: 64,
                expected: 128,
                ..
            }
        ),
        "{e}"
    );
    assert_clear(&p, e, "inconsistent dimensions between layers");
    let p = edited(dir.path(), "width", |t| {
        let i = t
            .iter()
            .position(|(n, ..)| n == "rwkv.blocks.1.ln2.weight")
            .unwrap();
        t[i] = f32_tensor("rwkv.blocks.1.ln2.weight", vec![48]);
    });
    let e = load(&p).unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::Inconsistent {
                dim: "d_model",
                got: 48,
                expected: 32,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn other_rwkv_versions_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (key, version) in [
        ("rwkv.blocks.0.attention.time_faaaa", "RWKV-5/6"),
        ("rwkv.blocks.1.attention.ln_x.weight", "RWKV-5/6"),
        ("blocks.0.att.time_maa_x", "RWKV-6"),
        ("blocks.3.att.w0", "RWKV-7"),
    ] {
        let p = edited(dir.path(), &key.replace('.', "_"), |t| {
            t.push(f32_tensor(key, vec![32]))
        });
        let e = load(&p).unwrap_err();
        assert!(matches!(e, CheckpointError::OtherVersion { .. }), "{e}");
        assert_clear(
            &p,
            e,
            &format!("looks like an {version} checkpoint (key `{key}`); only RWKV-4 is supported"),
        );
    }
    // a config.json that says so is caught too
    let folder = dir.path().join("v6");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        fixture("model.safetensors"),
        folder.join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(fixture("config.json"))
        .unwrap()
        .replace("\"model_type\": \"rwkv\"", "\"model_type\": \"rwkv6\"");
    std::fs::write(folder.join("config.json"), cfg).unwrap();
    assert!(load(&folder).unwrap_err().to_string().contains("RWKV-6"));
}

#[test]
fn config_json_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(fixture("config.json"))
        .unwrap()
        .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::ConfigMismatch {
                field: "num_hidden_layers",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("config.json has num_hidden_layers = 3, but the tensors imply 2"),
        "{e}"
    );
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    assert!(matches!(
        load(dir.path()).unwrap_err(),
        CheckpointError::Read {
            format: "config.json",
            ..
        }
    ));
}

#[test]
fn reference_that_does_not_fit_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let base = read(&fixture("reference.safetensors"));
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "wide-logits",
            Box::new(|t: &mut Tensors| {
                let i = t.iter().position(|(n, ..)| n == "logits_whole").unwrap();
                t[i] = (
                    t[i].0.clone(),
                    safetensors::Dtype::F64,
                    vec![2, 16, 51],
                    vec![0u8; 8 * 2 * 16 * 51],
                );
            }),
            "`logits_whole`: shape [2, 16, 51] does not match the model and tokens: expected [2, 16, 50]",
        ),
        (
            "big-token",
            Box::new(|t: &mut Tensors| {
                let i = t.iter().position(|(n, ..)| n == "tokens").unwrap();
                t[i].3[..8].copy_from_slice(&77i64.to_le_bytes());
            }),
            "`tokens`: id 77 at [0, 0] is outside the model's vocabulary of 50",
        ),
        (
            "state-layers",
            Box::new(|t: &mut Tensors| {
                let i = t.iter().position(|(n, ..)| n == "final_state_2").unwrap();
                t[i] = (
                    t[i].0.clone(),
                    safetensors::Dtype::F64,
                    vec![2, 32, 3],
                    vec![0u8; 8 * 2 * 32 * 3],
                );
            }),
            "`final_state_2`: shape [2, 32, 3]",
        ),
        (
            "no-tokens",
            Box::new(|t: &mut Tensors| t.retain(|(n, ..)| n != "tokens")),
            "`tokens`: missing",
        ),
    ];
    let model = fixture("model.pth");
    for (name, edit, needle) in cases {
        let mut t = base.clone();
        edit(&mut t);
        let p = dir.path().join(format!("{name}.safetensors"));
        write(&p, &t, Some(("split", "7")));
        let cfg = load(&model).unwrap().config;
        let e = load_reference(&p).and_then(|r| r.check(&cfg)).unwrap_err();
        assert!(e.to_string().contains(needle), "{name}: {e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        let (code, stderr) = cli(&[
            "verify",
            "--checkpoint",
            model.to_str().unwrap(),
            "--reference",
            p.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(needle) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // a reference without its split metadata cannot check logits_split
    let p = dir.path().join("nosplit.safetensors");
    write(&p, &base, None);
    let cfg = load(&model).unwrap().config;
    assert!(
        load_reference(&p)
            .unwrap()
            .check(&cfg)
            .unwrap_err()
            .to_string()
            .contains("no `split`")
    );
}

#[test]
fn cli_verify_and_generate_pass_on_the_fixture() {
    let model = fixture("model.pth");
    let reference = fixture("reference.safetensors");
    for dtype in ["f32", "f64"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rwkv-lab"))
            .args([
                "verify",
                "--checkpoint",
                model.to_str().unwrap(),
                "--reference",
                reference.to_str().unwrap(),
                "--dtype",
                dtype,
                "--json",
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["pass"], true);
        let comps = v["comparisons"].as_array().unwrap();
        assert!(
            comps
                .iter()
                .any(|c| c["b"] == "logits_exact_f64" && c["a"] == "scan")
        );
        for c in comps {
            for k in ["a", "b", "max_abs", "rel_rms"] {
                assert!(c.get(k).is_some(), "{k}");
            }
        }
    }
    // a wrong tolerance makes it fail with exit 1
    let (code, _) = cli(&[
        "verify",
        "--checkpoint",
        model.to_str().unwrap(),
        "--reference",
        reference.to_str().unwrap(),
        "--ref-tol",
        "1e-12",
    ]);
    assert_eq!(code, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_rwkv-lab"))
        .args([
            "generate",
            "--checkpoint",
            model.to_str().unwrap(),
            "--tokens",
            "1,2,3",
            "--max-new",
            "12",
            "--temperature",
            "0",
            "--check",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["generated"].as_array().unwrap().len(), 12);
    assert_eq!(v["check"]["pass"], true);
}
