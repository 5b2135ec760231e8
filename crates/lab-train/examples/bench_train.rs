//! Training throughput of RWKV (and the matched transformer) on this machine's CPU.
//!
//! `cargo run --release -p lab-train --example bench_train [-- STEPS [MODE]]`
//!
//! Shapes from issue 7: vocabulary 256, 4 layers, batch 16 × 256 tokens, d_model 128 and 256.

use burn::backend::{Autodiff, NdArray};
use lab_train::bench::bench;
use lab_train::{TrainConfig, variant_arch};
use rwkv::{RwkvConfig, WkvMode};

type B = Autodiff<NdArray<f32>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let mode: WkvMode = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(WkvMode::Scan);
    let archs: Vec<&str> = match args.get(3) {
        Some(a) => a.split(',').collect(),
        None => vec!["full", "transformer"],
    };
    let device = Default::default();
    let (batch, seq_len) = (16, 256);
    println!(
        "training throughput, batch {batch} x {seq_len} tokens, vocab 256, 4 layers, wkv {mode}, {steps} timed steps after 1 warm-up step"
    );
    for d_model in [128, 256] {
        let base = RwkvConfig::rwkv4(256, d_model, 4);
        for name in &archs {
            let arch = variant_arch(name, &base, seq_len)?;
            let cfg = TrainConfig {
                batch,
                seq_len,
                wkv_mode: mode,
                ..TrainConfig::default()
            };
            let r = bench::<B>(&arch, &cfg, 1, steps, &device)?;
            println!(
                "d_model {d_model:>4} {name:<12} {:>9} params  {:>8.3} s/step  {:>9.0} tokens/s",
                r.num_params, r.step_s, r.tokens_per_s
            );
        }
    }
    Ok(())
}
