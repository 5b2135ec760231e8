//! What every kind of record shares: the resume key, the status, the study kind.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The kind of study a folder holds (`meta.json`'s `kind`), which decides the row type of
/// its `records.csv` and the report rendered from it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum StudyKind {
    /// Time and memory versus sequence length ([`crate::ScalingRecord`] rows). The default,
    /// so that folders written before `kind` existed still load.
    #[default]
    Scaling,
    /// Training curves of model variants (rows defined by the ablation study).
    Ablation,
    /// The same model and tokens timed and compared on several backends
    /// ([`crate::BackendRow`] rows, `rwkv-lab compare-backends`).
    Backends,
}

/// `as_str` and `Display` of a field-less enum, giving each variant the name serde gives
/// it in files (checked by the CSV and JSON round-trip tests).
macro_rules! named {
    ($t:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $t {
            /// The name in files (`records.csv`, `meta.json`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named;

named!(StudyKind { Scaling => "scaling", Ablation => "ablation", Backends => "backends" });

/// The outcome of one measurement.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It ran; its figures are in the row.
    Ok,
    /// Not run (over the memory budget, beyond a length limit); the note says why.
    Skipped,
    /// It failed; the note holds the error. Measured again on `--resume`.
    Error,
    /// A training run whose loss became NaN or infinite (ablation studies): it stopped
    /// there, the other runs went on. Not trained again on `--resume`.
    Diverged,
}

named!(Status { Ok => "ok", Skipped => "skipped", Error => "error", Diverged => "diverged" });

/// One CSV row of a study's `records.csv`.
pub trait Row: Serialize + DeserializeOwned {
    /// The study kind whose folders hold these rows.
    const KIND: StudyKind;

    /// What identifies the measurement: a resumed run skips every planned measurement
    /// whose key is already recorded (see [`Row::counts_as_done`]).
    fn key(&self) -> String;

    /// Whether this row means its measurement need not run again on `--resume` (failed
    /// measurements are usually retried).
    fn counts_as_done(&self) -> bool;
}
