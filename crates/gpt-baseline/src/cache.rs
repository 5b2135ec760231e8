//! The KV cache for token-by-token decoding.
//!
//! Where RWKV carries a constant-size state, a transformer must keep the keys and values
//! of every past position: the cache grows linearly with the number of tokens seen,
//! `2 · L · B · t · d_model` floats, which is what the scaling experiments measure against
//! RWKV's state (see [`KvCache::bytes`]).

use burn::tensor::{Tensor, backend::Backend};

/// Keys and values of one layer for every cached position.
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// Keys after projection, `[B, H, t, d_head]` (batch, head, position, head width).
    pub key: Tensor<B, 4>,
    /// Values after projection, `[B, H, t, d_head]`.
    pub value: Tensor<B, 4>,
}

impl<B: Backend> LayerKv<B> {
    /// Bytes held by this layer's keys and values.
    pub fn bytes(&self) -> usize {
        let size = |t: &Tensor<B, 4>| t.shape().num_elements() * t.dtype().size();
        size(&self.key) + size(&self.value)
    }
}

/// The KV cache of a [`crate::Transformer`]: per layer the keys and values of positions
/// `0..len()` of each of `batch_size()` sequences.
///
/// Made by [`crate::Transformer::prefill`] (filled with the prompt) or
/// [`crate::Transformer::empty_cache`] (nothing yet); advanced by
/// [`crate::Transformer::step`]. While it is empty it holds no tensors.
///
/// Each step concatenates the new keys and values to the old (a copy of O(t·d) per layer,
/// the same order as the step's attention over t keys), so `bytes()` is exactly what is
/// held, with no preallocated slack. On an autodiff backend the cached tensors keep their
/// graph alive: decode with `model.valid()`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// One entry per layer, each `[B, H, len, d_head]`; empty while `len == 0`.
    pub(crate) layers: Vec<LayerKv<B>>,
    /// Batch size B the cache was made for.
    pub(crate) batch: usize,
    /// Positions held, t.
    pub(crate) len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `batch` sequences.
    pub fn empty(batch: usize) -> Self {
        Self {
            layers: Vec::new(),
            batch,
            len: 0,
        }
    }

    /// Number of cached positions t (tokens seen so far).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The position the next token will take: equal to [`len`](Self::len), since
    /// positions count from 0.
    pub fn position(&self) -> usize {
        self.len
    }

    /// Batch size B.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Per-layer keys and values, each `[B, H, t, d_head]` (empty while nothing is cached).
    pub fn layers(&self) -> &[LayerKv<B>] {
        &self.layers
    }

    /// Bytes held by all keys and values: exactly
    /// `2 · n_layers · B · t · d_model · size_of(float)` (e.g. 4 bytes for f32, 8 for f64),
    /// growing linearly with t. Bookkeeping outside the tensors is not counted.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerKv::bytes).sum()
    }
}
