//! The WKV operator of RWKV-4 (paper eq. 16; docs/design.md §3–§7) in four interchangeable formulations.
//!
//! Per channel (0-indexed time, `w ≤ 0` the decay, `u` the bonus):
//!
//! ```text
//! wkv_t = (Σ_{i<t} e^{(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (Σ_{i<t} e^{(t-1-i)w + k_i} + e^{u+k_t})
//! ```
//!
//! i.e. a per-channel softmax over `i ≤ t` with logits `ℓ_{t,i} = k_i + (t-1-i)w` (i < t)
//! and `ℓ_{t,t} = u + k_t`, applied to `v`. A carried state adds one more term: with state
//! `(aa, bb, pp)` (numerator `aa·e^pp`, denominator `bb·e^pp` after the previous tokens),
//! position `t` of the new segment sees `e^{pp + t·w}·aa` in the numerator and
//! `e^{pp + t·w}·bb` in the denominator.
//!
//! | formulation | file | cost | what it is |
//! |---|---|---|---|
//! | [`WkvMode::Recurrent`] | `recurrent.rs` | O(T·C) sequential tensor ops | the oracle: token by token, max-tracking |
//! | [`WkvMode::Parallel`] | `parallel.rs` | O(T²·C) time and memory | the exact softmax form over `[T, T]` |
//! | [`WkvMode::Chunked`] | `chunked.rs` | O(T·len·C) | softmax inside blocks, state carried between blocks |
//! | [`WkvMode::Scan`] | `scan/` | O(T·C), one fused pass | custom kernel with its own backward |
//!
//! All take `(w, u, k, v, Option<WkvState>)` and return `(y, WkvState)` with the same
//! meaning; the tests prove they agree on outputs, final state and gradients.

pub mod block;
pub mod chunked;
pub mod parallel;
pub mod recurrent;
pub mod scan;

use core::fmt;
use core::str::FromStr;

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{Result, RwkvError, check_batch_time, check_shape};
pub use scan::WkvBackend;

/// Initial value of `pp`: "no tokens yet" (e^pp = 0). Finite so that `pp + w` stays finite.
pub const PP_EMPTY: f64 = -1e38;

/// The WKV state of one layer.
///
/// The numerator is `aa·e^pp` and the denominator `bb·e^pp`; the triple is defined only up
/// to `(aa·c, bb·c, pp − ln c)`, so compare states through [`WkvState::canonical`].
///
/// # Shapes
/// `aa`, `bb`, `pp`: `[B, C]`.
#[derive(Debug, Clone)]
pub struct WkvState<B: Backend> {
    /// Scaled numerator, `[B, C]`.
    pub aa: Tensor<B, 2>,
    /// Scaled denominator, `[B, C]`.
    pub bb: Tensor<B, 2>,
    /// Log-scale (running max exponent), `[B, C]`.
    pub pp: Tensor<B, 2>,
}

impl<B: Backend> WkvState<B> {
    /// The state before any token: `(0, 0, -1e38)`.
    pub fn zeros(batch: usize, channels: usize, device: &B::Device) -> Self {
        Self {
            aa: Tensor::zeros([batch, channels], lab_util::float_opts::<B>(device)),
            bb: Tensor::zeros([batch, channels], lab_util::float_opts::<B>(device)),
            pp: Tensor::full(
                [batch, channels],
                PP_EMPTY,
                lab_util::float_opts::<B>(device),
            ),
        }
    }

    /// Representation-free form `(aa/bb, pp + ln bb)`: the weighted mean of the values seen
    /// and the log of the denominator. Needs `bb > 0` (true after the first token).
    pub fn canonical(&self) -> (Tensor<B, 2>, Tensor<B, 2>) {
        (
            lab_util::div(self.aa.clone(), self.bb.clone()),
            self.pp.clone() + self.bb.clone().log(),
        )
    }

    /// Drops autodiff history.
    pub fn detach(self) -> Self {
        Self {
            aa: self.aa.detach(),
            bb: self.bb.detach(),
            pp: self.pp.detach(),
        }
    }

    /// `[B, C]`.
    pub fn dims(&self) -> [usize; 2] {
        self.aa.dims()
    }

    pub(crate) fn check(&self, what: &str, batch: usize, channels: usize) -> Result<()> {
        let want = [batch, channels];
        check_shape(&format!("{what}.aa"), &want, &self.aa.dims())?;
        check_shape(&format!("{what}.bb"), &want, &self.bb.dims())?;
        check_shape(&format!("{what}.pp"), &want, &self.pp.dims())
    }
}

/// Which formulation of the WKV operator to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WkvMode {
    /// Token by token with the stable recurrence: the oracle.
    Recurrent,
    /// Whole sequence at once: exact softmax form over `[T, T]`.
    Parallel,
    /// Blocks of `len` tokens, softmax form inside, state carried between (any `len ≥ 1`).
    Chunked {
        /// Block length.
        len: usize,
    },
    /// One fused pass over the sequence (custom kernel with its own backward).
    Scan,
}

impl WkvMode {
    /// `Chunked { len }`, checked ([`WkvMode::validate`]).
    pub fn chunked(len: usize) -> Result<Self> {
        let mode = WkvMode::Chunked { len };
        mode.validate()?;
        Ok(mode)
    }

    /// The one rule on modes: a chunk length of at least 1. [`wkv`], the model's `forward`
    /// and `FromStr` all go through here.
    ///
    /// # Errors
    /// [`RwkvError::ZeroChunkLen`].
    pub fn validate(self) -> Result<()> {
        match self {
            WkvMode::Chunked { len: 0 } => Err(RwkvError::ZeroChunkLen),
            _ => Ok(()),
        }
    }

    /// The formulations the verifier compares, with the given chunk length.
    pub fn all(chunk_len: usize) -> [WkvMode; 4] {
        [
            WkvMode::Recurrent,
            WkvMode::Parallel,
            WkvMode::Chunked { len: chunk_len },
            WkvMode::Scan,
        ]
    }
}

impl fmt::Display for WkvMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WkvMode::Recurrent => write!(f, "recurrent"),
            WkvMode::Parallel => write!(f, "parallel"),
            WkvMode::Chunked { len } => write!(f, "chunked:{len}"),
            WkvMode::Scan => write!(f, "scan"),
        }
    }
}

impl FromStr for WkvMode {
    type Err = RwkvError;

    /// `recurrent`, `parallel`, `scan`, `chunked:LEN` (or `chunked` for 32).
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "recurrent" | "rnn" => Ok(WkvMode::Recurrent),
            "parallel" => Ok(WkvMode::Parallel),
            "scan" => Ok(WkvMode::Scan),
            "chunked" => Ok(WkvMode::Chunked { len: 32 }),
            other => match other.strip_prefix("chunked:").map(str::parse::<usize>) {
                Some(Ok(len)) => WkvMode::chunked(len),
                _ => Err(RwkvError::UnknownMode(s.to_string())),
            },
        }
    }
}

/// Runs the WKV operator in the given formulation.
///
/// # Shapes
/// - `w`, `u`: `[C]` (`w = -exp(time_decay)` ≤ 0; `u = time_first`)
/// - `k`, `v`: `[B, T, C]`
/// - `state`: `[B, C]` each, or `None` for the empty state
/// - returns `y`: `[B, T, C]` and the state after the last token
///
/// # Errors
/// `T = 0`, `B = 0`, chunk length 0, or any shape that does not fit.
pub fn wkv<B: WkvBackend>(
    mode: WkvMode,
    w: Tensor<B, 1>,
    u: Tensor<B, 1>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    state: Option<WkvState<B>>,
) -> Result<(Tensor<B, 3>, WkvState<B>)> {
    let state = validate(mode, &w, &u, &k, &v, state)?;
    Ok(match mode {
        WkvMode::Recurrent => recurrent::forward(w, u, k, v, state),
        WkvMode::Parallel => parallel::forward(w, u, k, v, state),
        WkvMode::Chunked { len } => chunked::forward(w, u, k, v, state, len),
        WkvMode::Scan => scan::forward(w, u, k, v, state),
    })
}

/// Checks shapes and returns the initial state (the empty one for `None`).
fn validate<B: Backend>(
    mode: WkvMode,
    w: &Tensor<B, 1>,
    u: &Tensor<B, 1>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    state: Option<WkvState<B>>,
) -> Result<WkvState<B>> {
    let [batch, time, channels] = k.dims();
    mode.validate()?;
    check_batch_time(batch, time)?;
    check_shape("v", &[batch, time, channels], &v.dims())?;
    check_shape("w", &[channels], &w.dims())?;
    check_shape("u", &[channels], &u.dims())?;
    match state {
        Some(s) => {
            s.check("state", batch, channels)?;
            Ok(s)
        }
        None => Ok(WkvState::zeros(batch, channels, &k.device())),
    }
}
