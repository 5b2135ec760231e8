//! Reading a file's tensors through burn-store, once its container is known
//! ([`crate::detect`]). A panic inside a reader is reported as a read error, never
//! propagated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn_store::pytorch::PytorchReader;
use burn_store::{ModuleStore, SafetensorsStore, TensorSnapshot};

use crate::detect::{self, Container};
use crate::error::{CheckpointError, Result};

/// Every tensor of `file`, under the names the file gives them.
pub(crate) fn read_tensors(
    file: &Path,
    container: Container,
) -> Result<BTreeMap<String, TensorSnapshot>> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match container {
        Container::Safetensors => SafetensorsStore::from_file(file)
            .get_all_snapshots()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            })
            .map_err(|e| e.to_string()),
        _ => PytorchReader::new(file)
            .map(|r| r.into_tensors().into_iter().collect::<BTreeMap<_, _>>())
            .map_err(|e| e.to_string()),
    }));
    let read_error = |reason: String| CheckpointError::Read {
        path: file.display().to_string(),
        format: container.describe(),
        reason,
    };
    let tensors = match result {
        Ok(Ok(map)) => map,
        Ok(Err(reason)) => return Err(read_error(reason)),
        Err(_) => return Err(read_error("the reader failed on malformed data".into())),
    };
    if let Container::Legacy(Some(layout)) = container {
        let sizes: BTreeSet<u64> = tensors.values().map(|s| s.dtype.size() as u64).collect();
        detect::check_legacy(file, layout, &sizes)?;
    }
    Ok(tensors)
}
