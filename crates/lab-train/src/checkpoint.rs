//! Checkpoints: written atomically, so that a failed write (full disk, a folder in the way)
//! leaves the previous checkpoint valid.
//!
//! Layout of a run's checkpoint folder `DIR`:
//!
//! ```text
//! DIR/LATEST                 name of the valid checkpoint, e.g. "ckpt-0000000200"
//! DIR/ckpt-0000000200/       model.mpk, optim-decay.mpk, optim-plain.mpk, state.json
//! ```
//!
//! A new checkpoint is written into `DIR/.tmp-ckpt-…` (Burn's `NamedMpkBytesRecorder` with
//! `DoublePrecisionSettings`, exact for f32 and f64 models; each file written and synced with
//! its errors checked), renamed to `DIR/ckpt-…`, and only then is `LATEST` replaced (write
//! `LATEST.tmp`, rename over `LATEST`: atomic on POSIX file systems). The previous
//! `ckpt-…` folder is removed after that. Any failure before the rename of `LATEST` leaves
//! `LATEST` pointing at the previous, complete checkpoint.
//!
//! `state.json` holds the step, tokens seen, training wall time, the schedulers' positions
//! and the run's fingerprint (architecture, task, training config). The data position and
//! the generator state need nothing more: the batch of step `s` is a pure function of
//! `(seed, s)` ([`crate::task::step_rng`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{DoublePrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Result, TrainError};
use crate::schedule::SchedulePosition;
use crate::train::LabModel;

type Rec = NamedMpkBytesRecorder<DoublePrecisionSettings>;
type OptRecord<B> =
    <burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, LabModel<B>, B> as Optimizer<
        LabModel<B>,
        B,
    >>::Record;
type Adam<B> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, LabModel<B>, B>;

/// The small part of a checkpoint, as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CkptState {
    /// Optimizer steps done.
    pub step: u64,
    /// Training tokens seen.
    pub tokens_seen: u64,
    /// Training wall time so far (s).
    pub wall_s: f64,
    /// The learning-rate schedule's position.
    pub schedule: SchedulePosition,
    /// Identity of the run (architecture, task, training config).
    pub fingerprint: String,
}

/// A loaded checkpoint.
pub struct Loaded<B: AutodiffBackend> {
    /// Model record.
    pub model: <LabModel<B> as Module<B>>::Record,
    /// Record of the optimizer of the decayed parameters.
    pub optim_decay: OptRecord<B>,
    /// Record of the optimizer of the other parameters.
    pub optim_plain: OptRecord<B>,
    /// Step, schedule, fingerprint.
    pub state: CkptState,
}

fn ck_err(path: &Path, source: impl Into<BoxError>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// Writes `bytes` to a new file at `path` and syncs it, every error checked.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| ck_err(path, e))?;
    f.write_all(bytes).map_err(|e| ck_err(path, e))?;
    f.sync_all().map_err(|e| ck_err(path, e))
}

fn encode<B: AutodiffBackend, R: burn::record::Record<B>>(
    record: R,
    path: &Path,
) -> Result<Vec<u8>> {
    Recorder::<B>::record(&Rec::default(), record, ()).map_err(|e| ck_err(path, e))
}

/// The name of the checkpoint folder of `step`.
pub fn folder_name(step: u64) -> String {
    format!("ckpt-{step:010}")
}

/// The folder of the valid checkpoint in `dir`, if there is one.
///
/// # Errors
/// `LATEST` exists but cannot be read.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = dir.join("LATEST");
    match fs::read_to_string(&pointer) {
        Ok(name) => Ok(Some(dir.join(name.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ck_err(&pointer, e)),
    }
}

/// Writes a checkpoint of `state.step` into `dir` (see the module docs).
///
/// # Errors
/// Any failure, naming the path; the previous checkpoint stays valid.
pub fn save<B: AutodiffBackend>(
    dir: &Path,
    state: &CkptState,
    model: &LabModel<B>,
    optim_decay: &Adam<B>,
    optim_plain: &Adam<B>,
) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| ck_err(dir, e))?;
    let previous = latest(dir)?;
    let name = folder_name(state.step);
    let tmp = dir.join(format!(".tmp-{name}"));
    let target = dir.join(&name);
    if tmp.exists() {
        // our own leftover of an interrupted write
        fs::remove_dir_all(&tmp).map_err(|e| ck_err(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| ck_err(&tmp, e))?;
    let written = (|| {
        let p = tmp.join("model.mpk");
        write_synced(&p, &encode::<B, _>(model.clone().into_record(), &p)?)?;
        let p = tmp.join("optim-decay.mpk");
        write_synced(&p, &encode::<B, _>(optim_decay.to_record(), &p)?)?;
        let p = tmp.join("optim-plain.mpk");
        write_synced(&p, &encode::<B, _>(optim_plain.to_record(), &p)?)?;
        let p = tmp.join("state.json");
        let json = serde_json::to_vec_pretty(state).map_err(|e| ck_err(&p, e))?;
        write_synced(&p, &json)?;
        fs::rename(&tmp, &target).map_err(|e| ck_err(&target, e))
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp); // best effort: our own partial folder
        return Err(e);
    }
    let pointer_tmp = dir.join("LATEST.tmp");
    let pointer = dir.join("LATEST");
    write_synced(&pointer_tmp, name.as_bytes())?;
    fs::rename(&pointer_tmp, &pointer).map_err(|e| ck_err(&pointer, e))?;
    if let Some(old) = previous
        && old != target
        && old
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ckpt-"))
    {
        let _ = fs::remove_dir_all(old); // superseded; a failure only leaves it behind
    }
    Ok(())
}

/// Reads the valid checkpoint of `dir`, if any; refuses one written by another run.
///
/// # Errors
/// A checkpoint that cannot be read or belongs to another run (naming the path).
pub fn load<B: AutodiffBackend>(
    dir: &Path,
    fingerprint: &str,
    device: &B::Device,
) -> Result<Option<Loaded<B>>> {
    let Some(folder) = latest(dir)? else {
        return Ok(None);
    };
    let read = |name: &str| {
        let p = folder.join(name);
        fs::read(&p)
            .map(|b| (p.clone(), b))
            .map_err(|e| ck_err(&p, e))
    };
    let (p, json) = read("state.json")?;
    let state: CkptState = serde_json::from_slice(&json).map_err(|e| ck_err(&p, e))?;
    if state.fingerprint != fingerprint {
        return Err(ck_err(
            &p,
            "was written by another run (model, task or training settings differ); \
             resume it with its own settings or use another checkpoint folder",
        ));
    }
    let decode = |name: &str| -> Result<(PathBuf, Vec<u8>)> { read(name) };
    let (p, bytes) = decode("model.mpk")?;
    let model = Recorder::<B>::load(&Rec::default(), bytes, device).map_err(|e| ck_err(&p, e))?;
    let (p, bytes) = decode("optim-decay.mpk")?;
    let optim_decay =
        Recorder::<B>::load(&Rec::default(), bytes, device).map_err(|e| ck_err(&p, e))?;
    let (p, bytes) = decode("optim-plain.mpk")?;
    let optim_plain =
        Recorder::<B>::load(&Rec::default(), bytes, device).map_err(|e| ck_err(&p, e))?;
    Ok(Some(Loaded {
        model,
        optim_decay,
        optim_plain,
        state,
    }))
}
