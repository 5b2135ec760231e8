//! Typed errors of the model crate. The library never prints or panics on bad input.

/// Everything that can go wrong when building or running a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RwkvError {
    /// A sequence of length 0 was given.
    #[error("empty sequence: the time dimension T is 0 (need at least one token)")]
    EmptySequence,
    /// A batch of size 0 was given.
    #[error("empty batch: the batch dimension B is 0")]
    EmptyBatch,
    /// A token id outside `0..vocab_size`.
    #[error(
        "token id {token} at [batch {batch}, position {position}] is out of range for vocabulary size {vocab_size}"
    )]
    TokenOutOfRange {
        /// The offending id.
        token: i64,
        /// Its batch row.
        batch: usize,
        /// Its position in the sequence.
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// `WkvMode::Chunked { len: 0 }` (see `WkvMode::validate`).
    #[error("chunk length must be at least 1, got 0")]
    ZeroChunkLen,
    /// A tensor whose shape does not fit the others.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// Which tensor.
        what: String,
        /// The shape it should have.
        expected: Vec<usize>,
        /// The shape it has.
        got: Vec<usize>,
    },
    /// A state with the wrong number of layers.
    #[error("state has {got} layers but the model has {expected}")]
    StateLayers {
        /// Layers of the model.
        expected: usize,
        /// Layers of the state.
        got: usize,
    },
    /// A configuration field out of its domain.
    #[error("invalid config field `{field}`: {reason}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A parameter source (e.g. a checkpoint) could not provide a value.
    #[error("parameter `{key}`: {reason}")]
    Source {
        /// The parameter's checkpoint key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// An unknown WKV mode name.
    #[error("unknown WKV mode `{0}` (expected recurrent, parallel, scan or chunked:LEN)")]
    UnknownMode(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = core::result::Result<T, RwkvError>;

/// `B ≥ 1` and `T ≥ 1` (the batch is checked first), for token ids and WKV inputs alike.
pub(crate) fn check_batch_time(batch: usize, time: usize) -> Result<()> {
    if batch == 0 {
        Err(RwkvError::EmptyBatch)
    } else if time == 0 {
        Err(RwkvError::EmptySequence)
    } else {
        Ok(())
    }
}

/// Checks that a tensor has the expected dims.
pub(crate) fn check_shape(what: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(RwkvError::Shape {
            what: what.to_string(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    }
}
