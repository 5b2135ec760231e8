//! `generate`: streaming (each token handed out before the next step), prompts in pieces,
//! text through the shipped tokenizer (characters split across tokens), memory estimates
//! that refuse or split before allocating, and the command-line contract.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use rwkv::WkvMode;
use rwkv::generate::{
    GenerateOptions, Sampler, StepEngine, generate, generate_by_forward, generate_streaming,
};
use rwkv_checkpoint::load;
use tokenizers::Tokenizer;

use crate::checkpoint::fixture;
use crate::common::{F32, F64};

/// The shipped tokenizer fixture: a byte-level BPE trained on Shakespeare (560 ids) and a
/// random RWKV-4 model of the same vocabulary, as a Hugging Face folder.
pub fn text_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer-tiny")
        .join(name)
}

/// Runs the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rwkv-lab"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A sentence whose non-ASCII characters take 2 and 3 tokens each (no merge covers them).
const SPLIT_CHARS: &str = "Good night, sweet prince; café ☃";

#[test]
fn shipped_tokenizer_loads_and_splits_non_ascii_characters() {
    let tok = Tokenizer::from_file(text_fixture("tokenizer.json")).unwrap();
    assert_eq!(tok.get_vocab_size(true), 560);
    let ckpt = load(text_fixture("")).unwrap();
    assert_eq!(
        ckpt.config.vocab_size, 560,
        "the model's V matches the tokenizer"
    );
    let enc = tok.encode(SPLIT_CHARS, true).unwrap();
    let ids = enc.get_ids();
    assert_eq!(tok.decode(ids, false).unwrap(), SPLIT_CHARS);
    // one token at a time, 'é' and '☃' decode to replacement characters: the case that
    // streaming must hold back
    let naive: String = ids
        .iter()
        .map(|&i| tok.decode(&[i], false).unwrap())
        .collect();
    assert!(naive.contains('\u{FFFD}'), "{naive}");
    let mut stream = tok.decode_stream(false);
    let mut streamed = String::new();
    for &i in ids {
        if let Some(chunk) = stream.step(i).unwrap() {
            assert!(!chunk.contains('\u{FFFD}'), "{chunk:?}");
            streamed.push_str(&chunk);
        }
    }
    assert_eq!(streamed, SPLIT_CHARS);
}

#[test]
fn tokens_are_handed_out_before_the_next_step() {
    let ckpt = load(fixture("model.pth")).unwrap();
    let model = ckpt.to_model::<F64>(&Default::default()).unwrap();
    let mut seen = Vec::new();
    let mut sampler = Sampler::new(0.0, 1.0, 0).unwrap();
    let out = generate_streaming(
        &model,
        &[1, 2, 3],
        10,
        &mut sampler,
        GenerateOptions {
            keep_logits: false,
            ..GenerateOptions::default()
        },
        |t| {
            seen.push((t.index, t.token, t.logits.len()));
            if t.index == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    // stopped after the 4th token: 3 RNN steps ran, none after the stop
    assert!(out.stopped);
    assert_eq!(out.tokens.len(), 4);
    assert_eq!(out.step_seconds.len(), 3);
    assert!(out.logits.is_empty());
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(seen.iter().all(|s| s.2 == 50));
    let mut again = Sampler::new(0.0, 1.0, 0).unwrap();
    let full = generate(&model, &[1, 2, 3], 10, &mut again, WkvMode::Parallel).unwrap();
    assert_eq!(&full.tokens[..4], &out.tokens[..]);
    assert_eq!(full.logits.len(), 10);
    assert!(!full.stopped);
}

#[test]
fn a_prompt_in_pieces_continues_exactly_like_one_forward() {
    let ckpt = load(fixture("model.pth")).unwrap();
    let model = ckpt.to_model::<F64>(&Default::default()).unwrap();
    let prompt: Vec<i64> = (0..23).map(|i| (i * 7 + 3) % 50).collect();
    let run = |mode, piece| {
        let mut s = Sampler::new(0.8, 0.9, 5).unwrap();
        generate_streaming(
            &model,
            &prompt,
            12,
            &mut s,
            GenerateOptions {
                prompt_mode: mode,
                prompt_piece: piece,
                keep_logits: true,
                step_engine: StepEngine::Model,
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap()
    };
    let whole = run(WkvMode::Parallel, None);
    assert_eq!(whole.prompt_pieces, 1);
    for (mode, piece) in [
        (WkvMode::Parallel, 1),
        (WkvMode::Parallel, 5),
        (WkvMode::Scan, 8),
        (WkvMode::Chunked { len: 4 }, 22),
    ] {
        let split = run(mode, Some(piece));
        assert_eq!(split.prompt_pieces, prompt.len().div_ceil(piece));
        assert_eq!(split.tokens, whole.tokens, "{mode} in pieces of {piece}");
        let diff = split
            .logits
            .iter()
            .flatten()
            .zip(whole.logits.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-10, "{mode} pieces of {piece}: {diff}");
    }
    // and the whole-sequence check agrees with the streamed continuation
    let mut s = Sampler::new(0.8, 0.9, 5).unwrap();
    let check = generate_by_forward(&model, &prompt, 12, &mut s, WkvMode::Scan).unwrap();
    assert_eq!(check.tokens, whole.tokens);
    let mut s = Sampler::new(0.0, 1.0, 0).unwrap();
    assert!(
        generate_streaming(
            &model,
            &prompt,
            1,
            &mut s,
            GenerateOptions {
                prompt_piece: Some(0),
                ..GenerateOptions::default()
            },
            |_| ControlFlow::Continue(())
        )
        .is_err()
    );
}

#[test]
fn cli_prompt_text_is_streamed_as_text() {
    let dir = text_fixture("");
    let dir = dir.to_str().unwrap();
    let base = [
        "generate",
        "--checkpoint",
        dir,
        "--prompt",
        SPLIT_CHARS,
        "--max-new",
        "24",
        "--seed",
        "3",
    ];
    let (code, stdout, stderr) = cli(&base);
    assert_eq!(code, 0, "{stderr}");
    let (code, js, stderr) = cli(&[&base[..], &["--json"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let v = json(&js);
    assert_eq!(v["generated"].as_array().unwrap().len(), 24);
    assert!(v["tokenizer"].as_str().unwrap().ends_with("tokenizer.json"));
    assert_eq!(v["prompt_text"], SPLIT_CHARS);
    let text = v["text"].as_str().unwrap();
    assert!(!text.is_empty());
    // the streamed output is the prompt then the continuation, characters whole
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("checkpoint "), "{stdout}");
    assert!(lines[1].starts_with("tokenizer "), "{stdout}");
    let body = stdout
        .split_once(":\n")
        .map(|(_, b)| b)
        .and_then(|b| b.rsplit_once("\nprompt: "))
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(body, format!("{SPLIT_CHARS}{text}").trim_end_matches('\n'));
    assert!(stdout.contains("tokens/s"), "{stdout}");
    assert!(v["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["prompt_tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn cli_token_ids_stream_and_the_check_passes_on_the_text_fixture() {
    let dir = text_fixture("");
    let (code, stdout, stderr) = cli(&[
        "generate",
        "--checkpoint",
        text_fixture("model.safetensors").to_str().unwrap(),
        "--tokenizer",
        dir.to_str().unwrap(),
        "--tokens",
        "39,380,281",
        "--max-new",
        "10",
        "--temperature",
        "0",
        "--check",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("check: whole-sequence forwards"),
        "{stdout}"
    );
    assert!(stdout.contains("ms per token in RNN mode"), "{stdout}");
    // ids only, without a tokenizer
    let (code, stdout, stderr) = cli(&[
        "generate",
        "--checkpoint",
        fixture("model.pth").to_str().unwrap(),
        "--tokens",
        "1,2,3",
        "--max-new",
        "5",
        "--temperature",
        "0",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("generated (5 tokens): "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(line.split(": ").nth(1).unwrap().split(',').count(), 5);
}

#[test]
fn cli_rejects_bad_sampling_and_prompt_options_with_the_reason() {
    let model = fixture("model.pth");
    let m = model.to_str().unwrap();
    for (args, want) in [
        (vec!["--tokens", "1", "--temperature", "-1"], "must be ≥ 0"),
        (vec!["--tokens", "1", "--temperature", "inf"], "finite"),
        (vec!["--tokens", "1", "--top-p", "-0.5"], "(0, 1]"),
        (vec!["--tokens", "1", "--memory-budget", "0"], "more than 0"),
        (vec!["--prompt", "Hello"], "needs a tokenizer"),
        (
            vec!["--prompt", "Hello", "--tokens", "1"],
            "cannot be used with",
        ),
        (
            vec!["--tokens", "1", "--tokenizer", "/nonexistent/tok.json"],
            "no such file",
        ),
        (
            vec![
                "--prompt",
                "Hello",
                "--tokenizer",
                text_fixture("tokenizer.json").to_str().unwrap(),
            ],
            "does not belong to this model",
        ),
        (
            vec!["--tokens", "1", "--tokenizer", model.to_str().unwrap()],
            "cannot read as a Hugging Face tokenizer.json",
        ),
    ] {
        let (code, _, stderr) = cli(&[&["generate", "--checkpoint", m][..], &args].concat());
        assert_eq!(code, 2, "{args:?}: {stderr}");
        // the reason on the first line (clap adds its usage lines after it)
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panic"), "{stderr}");
    }
}

#[test]
fn cli_refuses_or_splits_what_does_not_fit_the_memory_budget() {
    let model = fixture("model.pth");
    let m = model.to_str().unwrap();
    // the checkpoint itself does not fit: refused before reading it
    let (code, _, stderr) = cli(&[
        "generate",
        "--checkpoint",
        m,
        "--tokens",
        "1",
        "--memory-budget",
        "1K",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("over the memory budget"), "{stderr}");
    // absurd sizes: checked arithmetic, one clear line, no wrapped numbers
    let (code, _, stderr) = cli(&[
        "generate",
        "--checkpoint",
        m,
        "--tokens",
        "1",
        "--max-new",
        "4000000000000000000",
        "--check",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--max-new 4000000000000000000: keeping the generated ids")
            && stderr.contains("more than 2^64 bytes")
            && stderr.contains("lower --max-new"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panic"), "{stderr}");
    // the file fits (safetensors: its header gives the exact 30,656 values, 245 KB as f64),
    // the model with it does not (another 123 KB in f32): refused before building it
    let st = fixture("model.safetensors");
    let (code, _, stderr) = cli(&[
        "generate",
        "--checkpoint",
        st.to_str().unwrap(),
        "--tokens",
        "1",
        "--memory-budget",
        "300K",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the model (30,656 parameters") && stderr.contains("before allocating"),
        "{stderr}"
    );

    // a 400-token prompt: the parallel form needs ~82 MB (4·C·T² f32), the scan ~1 MB
    let prompt: Vec<String> = (0..400).map(|i| ((i * 7 + 1) % 50).to_string()).collect();
    let prompt = prompt.join(",");
    let run = |extra: &[&str]| {
        let (code, out, err) = cli(&[
            &[
                "generate",
                "--checkpoint",
                m,
                "--tokens",
                &prompt,
                "--max-new",
                "6",
                "--temperature",
                "0",
                "--json",
            ][..],
            extra,
        ]
        .concat());
        assert_eq!(code, 0, "{extra:?}: {err}");
        json(&out)
    };
    let free = run(&[]);
    assert_eq!(free["prompt_mode"], "parallel");
    assert_eq!(free["prompt_pieces"], 1);
    assert!(free["notes"].as_array().unwrap().is_empty());
    // default mode over the budget: the scan form instead, said in the notes
    let fallback = run(&["--memory-budget", "4M"]);
    assert_eq!(fallback["prompt_mode"], "scan");
    assert!(
        fallback["notes"][0]
            .as_str()
            .unwrap()
            .contains("that the memory budget leaves after the model; using the scan form"),
        "{fallback}"
    );
    assert_eq!(fallback["generated"], free["generated"]);
    // an explicit mode is kept, in pieces with the state carried
    let pieces = run(&["--memory-budget", "4M", "--prompt-mode", "parallel"]);
    assert_eq!(pieces["prompt_mode"], "parallel");
    assert!(pieces["prompt_pieces"].as_u64().unwrap() > 1, "{pieces}");
    assert!(pieces["notes"][0].as_str().unwrap().contains("pieces"));
    assert!(pieces["memory"]["prompt_forward"].as_u64().unwrap() <= 4 << 20);
    assert_eq!(pieces["generated"], free["generated"]);
    // --check with an explicit whole-sequence mode that does not fit: refused with the reason
    let (code, _, stderr) = cli(&[
        "generate",
        "--checkpoint",
        m,
        "--tokens",
        &prompt,
        "--max-new",
        "6",
        "--check",
        "--check-mode",
        "parallel",
        "--memory-budget",
        "4M",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--check") && stderr.contains("--check-mode scan"),
        "{stderr}"
    );
}

/// The CPU decoder continues a prompt like the model's own RNN steps: same tokens (sampled,
/// temperature 0.8), logits within f32 rounding of each other.
#[test]
fn the_cpu_decoder_continues_like_the_model() {
    let ckpt = load(fixture("model.pth")).unwrap();
    let model = ckpt.to_model::<F32>(&Default::default()).unwrap();
    let prompt: Vec<i64> = (0..9).map(|i| (i * 11 + 2) % 50).collect();
    let run = |engine| {
        let mut s = Sampler::new(0.8, 0.9, 7).unwrap();
        generate_streaming(
            &model,
            &prompt,
            16,
            &mut s,
            GenerateOptions {
                step_engine: engine,
                ..GenerateOptions::default()
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap()
    };
    let model_steps = run(StepEngine::Model);
    let decoder = run(StepEngine::CpuDecoder);
    assert_eq!(decoder.tokens, model_steps.tokens);
    assert_eq!(decoder.step_seconds.len(), 15);
    let scale = model_steps
        .logits
        .iter()
        .flatten()
        .fold(1.0f64, |m, x| m.max(x.abs()));
    let diff = decoder
        .logits
        .iter()
        .flatten()
        .zip(model_steps.logits.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        diff <= 2e-5 * scale,
        "max |logit difference| {diff:e} (scale {scale})"
    );
}
