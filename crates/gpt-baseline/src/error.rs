//! Typed errors of the baseline transformer. The library never prints or panics on bad input.

/// Everything that can go wrong when building or running a [`crate::Transformer`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformerError {
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
        /// Its position in the sequence (absolute: for [`crate::Transformer::step`] this is
        /// the cache length, the position the token would have taken).
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// More positions than the learned positional embedding has rows.
    #[error("sequence of {len} tokens exceeds max_positions = {max_positions}")]
    SequenceTooLong {
        /// Positions requested (cached + new).
        len: usize,
        /// The model's `max_positions`.
        max_positions: usize,
    },
    /// [`crate::Transformer::step`] on a cache that already holds `max_positions` positions.
    #[error("KV cache is full: it holds {max_positions} positions (max_positions)")]
    CacheFull {
        /// The model's `max_positions`.
        max_positions: usize,
    },
    /// The tokens' batch size differs from the cache's.
    #[error("batch size {tokens} of the tokens does not match batch size {cache} of the KV cache")]
    CacheBatchMismatch {
        /// Batch size of the cache.
        cache: usize,
        /// Batch size of the tokens.
        tokens: usize,
    },
    /// A cache that was not made by a model of this shape (layers, heads, head width).
    #[error("KV cache does not fit this model: {what} is {got}, the model needs {expected}")]
    CacheMismatch {
        /// Which dimension differs.
        what: &'static str,
        /// What the model needs.
        expected: usize,
        /// What the cache has.
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
}

/// Shorthand for results of this crate.
pub type Result<T> = core::result::Result<T, TransformerError>;
