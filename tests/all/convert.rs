//! `convert` and the BlinkDL safetensors writer: BlinkDL ↔ Hugging Face round trips give
//! the same tensors and bit-identical logits, nothing is ever overwritten, and bad
//! destinations get one clear line.

use std::path::Path;

use rwkv::RwkvConfig;
use rwkv_checkpoint::{CheckpointError, Format, load, save_blinkdl_safetensors};

use crate::checkpoint::fixture;
use crate::common::F32;
use crate::generate_text::{cli, text_fixture};

fn same_tensors(a: &Path, b: &Path) {
    let (a, b) = (load(a).unwrap(), load(b).unwrap());
    assert_eq!(a.config, b.config);
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (k, t) in &a.tensors {
        let u = &b.tensors[k];
        assert_eq!(t.shape, u.shape, "{k}");
        assert!(
            t.data
                .iter()
                .zip(&u.data)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{k}"
        );
    }
}

#[test]
fn blinkdl_pth_to_hf_folder_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    let pth = fixture("model.pth");
    let (code, stdout, stderr) = cli(&[
        "convert",
        "--checkpoint",
        pth.to_str().unwrap(),
        "--out",
        hf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("bit-identical"), "{stdout}");
    assert!(hf.join("config.json").is_file() && hf.join("model.safetensors").is_file());
    assert_eq!(load(&hf).unwrap().format, Format::HfSafetensors);
    same_tensors(&pth, &hf);

    // and back to BlinkDL names, in safetensors
    let back = dir.path().join("back.safetensors");
    let (code, stdout, stderr) = cli(&[
        "convert",
        "--checkpoint",
        hf.to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("bit-identical"), "{stdout}");
    assert_eq!(load(&back).unwrap().format, Format::BlinkDlSafetensors);
    same_tensors(&pth, &back);

    // again: refused, and the files are untouched
    let before = std::fs::read(hf.join("model.safetensors")).unwrap();
    let (code, _, stderr) = cli(&[
        "convert",
        "--checkpoint",
        pth.to_str().unwrap(),
        "--out",
        hf.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("exists; refusing to overwrite"), "{stderr}");
    assert_eq!(std::fs::read(hf.join("model.safetensors")).unwrap(), before);
    let (code, _, stderr) = cli(&[
        "convert",
        "--checkpoint",
        hf.to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
}

#[test]
fn bf16_widens_to_f32_exactly_and_the_tokenizer_travels_to_the_hf_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bf16-hf");
    let (code, stdout, stderr) = cli(&[
        "convert",
        "--checkpoint",
        fixture("model-bf16.pth").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("bf16") && stdout.contains("f32"),
        "{stdout}"
    );
    same_tensors(&fixture("model-bf16.pth"), &out);

    // the text fixture → BlinkDL file (tokenizer stays, said) → HF folder with the tokenizer
    // copied from beside the BlinkDL file → generate reads text from it
    let flat = dir.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    let st = flat.join("model.safetensors");
    let (code, stdout, stderr) = cli(&[
        "convert",
        "--checkpoint",
        text_fixture("").to_str().unwrap(),
        "--out",
        st.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("--tokenizer"), "{stdout}");
    std::fs::copy(text_fixture("tokenizer.json"), flat.join("tokenizer.json")).unwrap();
    let hf = dir.path().join("hf");
    let (code, _, stderr) = cli(&[
        "convert",
        "--checkpoint",
        st.to_str().unwrap(),
        "--out",
        hf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read(hf.join("tokenizer.json")).unwrap(),
        std::fs::read(text_fixture("tokenizer.json")).unwrap()
    );
    same_tensors(&text_fixture(""), &hf);
    let (code, stdout, stderr) = cli(&[
        "generate",
        "--checkpoint",
        hf.to_str().unwrap(),
        "--prompt",
        "To be",
        "--max-new",
        "4",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("To be"), "{stdout}");
}

#[test]
fn bad_destinations_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let pth = fixture("model.pth");
    let hf = text_fixture("");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for (input, out, extra, want) in [
        (&pth, file.clone(), vec![], "is not a folder"),
        (&hf, dir.path().to_path_buf(), vec![], "is a folder"),
        (
            &hf,
            dir.path().join("m.pth"),
            vec![],
            "must end in .safetensors",
        ),
        (
            &pth,
            dir.path().join("x"),
            vec!["--memory-budget", "1K"],
            "memory budget",
        ),
        (
            &pth,
            dir.path().join("y"),
            vec!["--to", "json"],
            "invalid value",
        ),
    ] {
        let (code, _, stderr) = cli(&[
            &[
                "convert",
                "--checkpoint",
                input.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ][..],
            &extra,
        ]
        .concat());
        assert_eq!(code, 2, "{out:?}: {stderr}");
        assert!(
            stderr.lines().next().unwrap_or("").contains(want),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn blinkdl_writer_never_overwrites_and_refuses_what_it_cannot_record() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Default::default();
    let model = RwkvConfig::rwkv4(11, 8, 2)
        .init_randomized::<F32>(&dev, 4)
        .unwrap();
    let path = dir.path().join("m.safetensors");
    save_blinkdl_safetensors(&model, &path).unwrap();
    let back = load(&path).unwrap().to_model::<F32>(&dev).unwrap();
    for ((ka, a), (kb, b)) in model.named_params().iter().zip(back.named_params()) {
        assert_eq!(ka, &kb);
        assert_eq!(a.as_bytes(), b.as_bytes(), "{}", ka.key);
    }
    let before = std::fs::read(&path).unwrap();
    let e = save_blinkdl_safetensors(&model, &path).unwrap_err();
    assert!(matches!(e, CheckpointError::Write { .. }), "{e}");
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let eps = RwkvConfig::rwkv4(11, 8, 1)
        .with_layer_norm_eps(1e-6)
        .init_randomized::<F32>(&dev, 4)
        .unwrap();
    let e = save_blinkdl_safetensors(&eps, dir.path().join("eps.safetensors")).unwrap_err();
    assert!(e.to_string().contains("layer_norm_epsilon"), "{e}");
    let ablated = RwkvConfig::rwkv4(11, 8, 1)
        .with_variant(rwkv::Variant {
            token_shift: false,
            ..Default::default()
        })
        .init_randomized::<F32>(&dev, 4)
        .unwrap();
    let e = save_blinkdl_safetensors(&ablated, dir.path().join("ab.safetensors")).unwrap_err();
    assert!(e.to_string().contains("ablation"), "{e}");
    assert!(!dir.path().join("eps.safetensors").exists());
    assert!(!dir.path().join("ab.safetensors").exists());
}
