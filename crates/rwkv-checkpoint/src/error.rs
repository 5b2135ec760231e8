//! Typed errors; every message is one line that names the file and, where there is one,
//! the key.

use rwkv::RwkvError;

/// Everything that can go wrong reading or writing checkpoints and reference files.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The path does not exist.
    #[error("{path}: no such file or folder")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// A model folder lacks a file it needs.
    #[error(
        "{path}: {what} not found; a Hugging Face model folder needs config.json and model.safetensors (or pytorch_model.bin)"
    )]
    MissingFile {
        /// The folder.
        path: String,
        /// What is missing.
        what: String,
    },
    /// Not a regular file (a device such as `/dev/null`, a pipe, a socket).
    #[error(
        "{path}: not a regular file ({kind}); expected a checkpoint file or a Hugging Face model folder"
    )]
    NotRegularFile {
        /// The path as given.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// A file of 0 bytes.
    #[error("{path}: empty file (0 bytes); expected a checkpoint")]
    EmptyFile {
        /// The file.
        path: String,
    },
    /// A file that ends before its container says it should.
    #[error(
        "{path}: truncated {format}: {detail}; the file was cut short (copy or download it again)"
    )]
    Truncated {
        /// The file.
        path: String,
        /// The container it was recognised as.
        format: &'static str,
        /// What is missing.
        detail: String,
    },
    /// A file of another kind altogether.
    #[error(
        "{path}: not a checkpoint (looks like {looks_like}); expected a BlinkDL .pth, a .safetensors file or a Hugging Face model folder"
    )]
    NotACheckpoint {
        /// The file.
        path: String,
        /// What its first bytes look like.
        looks_like: String,
    },
    /// The file could not be parsed (corrupt, or not what its container promised).
    #[error("{path}: cannot read as {format}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The format it was read as.
        format: &'static str,
        /// The reader's explanation.
        reason: String,
    },
    /// A tensor the model needs is absent.
    #[error("{path}: missing key `{key}`{more}")]
    MissingKey {
        /// The file.
        path: String,
        /// The first missing key (BlinkDL naming, with the file's own name in brackets when it differs).
        key: String,
        /// How many more are missing.
        more: String,
    },
    /// A tensor the model does not have.
    #[error("{path}: unexpected key `{key}`{more}; it is not part of an RWKV-4 model")]
    UnexpectedKey {
        /// The file.
        path: String,
        /// The first unexpected key, as in the file.
        key: String,
        /// How many more there are.
        more: String,
    },
    /// A tensor of the wrong shape.
    #[error("{path}: `{key}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: String,
        /// The key, as in the file.
        key: String,
        /// The shape implied by the model's dimensions.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// A layer whose dimensions disagree with the first layer's.
    #[error(
        "{path}: `{key}` implies {dim} = {got}, but block 0 has {dim} = {expected}: inconsistent dimensions between layers"
    )]
    Inconsistent {
        /// The file.
        path: String,
        /// The key, as in the file.
        key: String,
        /// Which dimension.
        dim: &'static str,
        /// Its value in this layer.
        got: usize,
        /// Its value in block 0.
        expected: usize,
    },
    /// A checkpoint of another RWKV generation.
    #[error(
        "{path}: this looks like an RWKV-{version} checkpoint (key `{key}`); only RWKV-4 is supported"
    )]
    OtherVersion {
        /// The file.
        path: String,
        /// The generation it looks like ("5", "6", "7", "5/6").
        version: &'static str,
        /// The key that gave it away.
        key: String,
    },
    /// `config.json` disagrees with the tensors.
    #[error("{path}: config.json has {field} = {config}, but the tensors imply {inferred}")]
    ConfigMismatch {
        /// The config file.
        path: String,
        /// The field.
        field: &'static str,
        /// Its value in config.json.
        config: String,
        /// The value the tensors imply.
        inferred: String,
    },
    /// Anything else wrong with the file's content.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A reference file that does not fit the model or is malformed.
    #[error("{path}: `{key}`: {reason}")]
    Reference {
        /// The reference file.
        path: String,
        /// The array.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed.
    #[error("{path}: cannot write: {reason}")]
    Write {
        /// The destination.
        path: String,
        /// Why.
        reason: String,
    },
    /// The model could not be built.
    #[error("{path}: {source}")]
    Model {
        /// The checkpoint.
        path: String,
        /// The model crate's error.
        source: RwkvError,
    },
}

/// Shorthand.
pub type Result<T> = core::result::Result<T, CheckpointError>;

/// ` (and N more)` or nothing.
pub(crate) fn and_more(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" (and {n} more)")
    }
}
