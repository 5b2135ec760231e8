//! How much host memory reading a checkpoint takes, known before reading it: [`crate::load`]
//! holds every value as f64, so a caller can refuse a checkpoint that would not fit instead
//! of being killed while reading it.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Upper bound, in bytes, of the values [`crate::load`] holds for `path` (a file or a
/// Hugging Face folder): 8 bytes per value. For safetensors the value count comes from the
/// file's header (exact); for PyTorch files it is bounded by the file size, every value
/// taking at least 2 bytes there (f16/bf16), so the bound is 4× the file size (twice the
/// truth for an f32 file). 0 when the path does not resolve to a file ([`crate::load`]
/// reports that).
pub fn read_bytes_estimate(path: impl AsRef<Path>) -> crate::Result<u64> {
    let Some(file) = resolve(path.as_ref()) else {
        return Ok(0);
    };
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    Ok(safetensors_values(&file, size)
        .and_then(|n| n.checked_mul(8))
        .unwrap_or_else(|| size.saturating_mul(4)))
}

/// The file [`crate::load`] would read.
fn resolve(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .map(|f| path.join(f))
            .find(|f| f.is_file())
    } else {
        path.is_file().then(|| path.to_path_buf())
    }
}

/// Number of values listed in a safetensors header, if the file has a plausible one.
fn safetensors_values(file: &Path, size: u64) -> Option<u64> {
    let mut f = std::fs::File::open(file).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    // the format caps the header at 100 MB; anything else is not a safetensors header
    if n == 0 || n > 100_000_000 || n > size.saturating_sub(8) {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let mut total = 0u64;
    for (name, entry) in json.as_object()? {
        if name == "__metadata__" {
            continue;
        }
        let count = entry
            .get("shape")?
            .as_array()?
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(d.as_u64()?))?;
        total = total.checked_add(count)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_header_counts_values_and_others_use_the_file_size() {
        let dir = std::env::temp_dir().join(format!("rwkv-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = dir.join("m.safetensors");
        let header = br#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"format":"pt"}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 24]);
        std::fs::write(&st, &bytes).unwrap();
        assert_eq!(read_bytes_estimate(&st).unwrap(), 6 * 8);
        let other = dir.join("m.pth");
        std::fs::write(&other, [0u8; 100]).unwrap();
        assert_eq!(read_bytes_estimate(&other).unwrap(), 400);
        assert_eq!(read_bytes_estimate(dir.join("absent")).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
