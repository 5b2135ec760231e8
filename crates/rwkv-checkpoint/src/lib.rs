//! RWKV-4 checkpoints: BlinkDL `.pth`, Hugging Face `RwkvForCausalLM` (safetensors or
//! `pytorch_model.bin`), read through burn-store, validated key by key with errors that
//! name the file and the key, converted from f16/bf16/f32 to the model's float type; saving
//! in Hugging Face safetensors layout; and the reference files of `verify --reference`.

mod error;
pub mod keys;
mod load;
mod reference;
mod save;
mod save_blinkdl;
mod size;
mod verify;

pub use error::{CheckpointError, Result};
pub use load::{Checkpoint, Format, HfConfig, HostTensor, load};
pub use reference::{Reference, load_reference};
pub use save::save_hf;
pub use save_blinkdl::{BLINKDL_LAYER_NORM_EPS, save_blinkdl_safetensors};
pub use size::read_bytes_estimate;
pub use verify::{RefTolerances, reference_tokens, verify_reference};
