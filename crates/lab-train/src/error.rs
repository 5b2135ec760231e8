//! Typed errors of the training engine. The library never prints.

use std::path::PathBuf;

/// A boxed error from a collaborator (the observer, a recorder).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong when loading a task or training a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A variant name that [`crate::VARIANT_NAMES`] does not list.
    #[error("unknown variant `{name}`; the variants are: {}", crate::VARIANT_NAMES.join(", "))]
    UnknownVariant {
        /// The name given.
        name: String,
    },
    /// A task parameter out of its domain (e.g. `num_kv_pairs` too large for `input_seq_len`).
    #[error("task {task}: `{field}` {reason}")]
    Task {
        /// `corpus` or `mqar`.
        task: &'static str,
        /// The field's name.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// The corpus file cannot be read.
    #[error("corpus file {path} cannot be read: {source}")]
    CorpusMissing {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A training-config field out of its domain.
    #[error("training config: `{field}` {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A checkpoint could not be written or read; a failed write leaves the previous one valid.
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        /// The file or folder concerned.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The observer's `on_eval` failed (e.g. the caller could not record the row).
    #[error("observer: {0}")]
    Observer(#[source] BoxError),
    /// The model refused its config or its input.
    #[error("model: {0}")]
    Model(String),
}

impl From<rwkv::RwkvError> for TrainError {
    fn from(e: rwkv::RwkvError) -> Self {
        TrainError::Model(e.to_string())
    }
}

impl From<gpt_baseline::TransformerError> for TrainError {
    fn from(e: gpt_baseline::TransformerError) -> Self {
        TrainError::Model(e.to_string())
    }
}

/// `Result` with [`TrainError`].
pub type Result<T> = core::result::Result<T, TrainError>;
