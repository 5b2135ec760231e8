//! RWKV-4 checkpoints: BlinkDL `.pth`, Hugging Face `RwkvForCausalLM` (safetensors or
//! `pytorch_model.bin`), read through burn-store, validated key by key with errors that
//! name the file and the key, converted from f16/bf16/f32 to the model's float type; saving
//! in Hugging Face safetensors layout; and the reference files of `verify --reference`.
//!
//! Loading ([`load`]) runs in steps, one module each: locate the file and `config.json`
//! (`load.rs`), detect the container and check that it is complete (`detect.rs`, with
//! `pickle.rs`), read the tensors (`read.rs`), rename Hugging Face keys ([`keys`]), infer
//! the dimensions (`infer.rs`), check the key set against the parameter table of
//! [`rwkv::params`] (`check.rs`, with the file layouts of `layout.rs`), check `config.json`
//! (`hf_config.rs`), convert (`convert.rs`).
//!
//! Converting between the two layouts, checked by a bit-identical round trip, is
//! [`conversion`].

mod check;
pub mod conversion;
mod convert;
mod detect;
mod error;
mod hf_config;
mod infer;
pub mod keys;
mod layout;
mod load;
mod pickle;
mod read;
mod reference;
mod save;
mod save_blinkdl;
mod size;
pub mod verify;

pub use error::{CheckpointError, Result};
pub use hf_config::HfConfig;
pub use load::{Checkpoint, Format, HostTensor, load};
pub use reference::{Reference, load_reference};
pub use save::save_hf;
pub use save_blinkdl::{BLINKDL_LAYER_NORM_EPS, save_blinkdl_safetensors};
pub use size::read_bytes_estimate;
pub use verify::RefTolerances;
