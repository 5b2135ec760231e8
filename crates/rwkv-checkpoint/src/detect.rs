//! File type detection: which container a checkpoint file is, decided from its bytes before
//! any reader sees it, so that a bad file gets a plain answer ("truncated", "empty file",
//! "not a regular file", "not a checkpoint (looks like YAML text)") instead of whatever the
//! reader of a wrongly guessed format says ("Invalid pickle opcode", "header too large").
//!
//! Containers: a zip archive (`torch.save` since PyTorch 1.6), `torch.save`'s legacy
//! format (pickles, then raw storages), a plain pickle, a tar archive (PyTorch's oldest
//! format), and safetensors (8-byte little-endian header length, a JSON header, the data).
//! A zip or safetensors file is checked to be complete here; a legacy file's storages
//! after reading ([`check_legacy`]), when their element sizes are known.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{CheckpointError, Result};
use crate::pickle::{self, Fit, LegacyLayout, Scan};

/// What a checkpoint file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    /// A complete zip archive.
    Zip,
    /// `torch.save`'s legacy format; its storages are checked after reading.
    Legacy(Option<LegacyLayout>),
    /// A complete pickle stream.
    Pickle,
    /// A tar archive (PyTorch before 0.1.10).
    Tar,
    /// A safetensors file whose header and data fit the file.
    Safetensors,
}

impl Container {
    /// How read errors name the format.
    pub fn describe(self) -> &'static str {
        match self {
            Container::Safetensors => "safetensors",
            _ => "a PyTorch checkpoint",
        }
    }
}

/// safetensors refuses headers above 100 MB; a larger length prefix is not safetensors.
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// How much of a pickled file is read to step over its pickles (in a legacy file they
/// describe the tensors, a few KB to a few MB, and the storages follow); pickles that run
/// past it are left undecided, not called truncated.
const PICKLE_HEAD: u64 = 64 << 20;

/// Decides what `path` is; errors for anything that is not a complete checkpoint file.
pub(crate) fn detect(path: &Path) -> Result<Container> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| read_error(&shown, e))?;
    if !meta.is_file() {
        return Err(CheckpointError::NotRegularFile {
            path: shown,
            kind: special_kind(&meta),
        });
    }
    let len = meta.len();
    if len == 0 {
        return Err(CheckpointError::EmptyFile { path: shown });
    }
    let mut file = File::open(path).map_err(|e| read_error(&shown, e))?;
    let mut head = vec![0u8; len.min(4096) as usize];
    file.read_exact(&mut head)
        .map_err(|e| read_error(&shown, e))?;
    let truncated = |format: &'static str, detail: String| CheckpointError::Truncated {
        path: shown.clone(),
        format,
        detail,
    };
    let safetensors_ext = path.extension().is_some_and(|e| e == "safetensors");

    if head.len() < 4 && b"PK\x03\x04".starts_with(&head) {
        return Err(truncated(
            "zip archive (PyTorch checkpoint)",
            format!("{len} bytes, not even a whole zip signature"),
        ));
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return match zip_end(&mut file, len).map_err(|e| read_error(&shown, e))? {
            ZipEnd::Complete => Ok(Container::Zip),
            ZipEnd::Missing => Err(truncated(
                "zip archive (PyTorch checkpoint)",
                format!("the archive's end record is missing ({len} bytes)"),
            )),
            ZipEnd::Inconsistent(reason) => Err(CheckpointError::Read {
                path: shown,
                format: "a PyTorch checkpoint",
                reason: format!("corrupt zip archive: {reason}"),
            }),
        };
    }
    // PROTO opcode, then a protocol of 2 to 5 (a lone 0x80 may be a cut legacy file)
    if head[0] == 0x80 && head.get(1).is_none_or(|p| (2..=5).contains(p)) {
        return pickled(&mut file, &head, len, &shown);
    }
    if let Some(header_len) = safetensors_header_len(&head, safetensors_ext) {
        return safetensors(&mut file, header_len, len, &shown);
    }
    if safetensors_ext && len < 9 {
        return Err(truncated(
            "safetensors file",
            format!("{len} bytes, shorter than the 8-byte header length and its header"),
        ));
    }
    if head.get(257..262) == Some(b"ustar") {
        return Ok(Container::Tar);
    }
    Err(CheckpointError::NotACheckpoint {
        path: shown,
        looks_like: looks_like(&head),
    })
}

/// After reading a legacy file: its storages (8-byte count, then the elements, with
/// element sizes among `sizes`, those of the tensors read) must fit the file's length.
/// burn-store reads storages beyond the end as zeros, so a cut file is caught only here.
pub(crate) fn check_legacy(path: &Path, layout: LegacyLayout, sizes: &BTreeSet<u64>) -> Result<()> {
    let shown = path.display().to_string();
    let mut file = File::open(path).map_err(|e| read_error(&shown, e))?;
    match pickle::legacy_storages_fit(&mut file, layout, sizes)
        .map_err(|e| read_error(&shown, e))?
    {
        Fit::Short { index, missing } => Err(CheckpointError::Truncated {
            path: shown,
            format: "PyTorch legacy checkpoint",
            detail: format!(
                "storage {} of {} ends at least {missing} bytes past the end of the file",
                index + 1,
                layout.storages
            ),
        }),
        Fit::Exact | Fit::Undecided => Ok(()),
    }
}

fn read_error(path: &str, e: std::io::Error) -> CheckpointError {
    CheckpointError::Read {
        path: path.into(),
        format: "a file",
        reason: e.to_string(),
    }
}

#[cfg(unix)]
fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::Metadata) -> &'static str {
    "a special file"
}

/// The end of a zip archive.
enum ZipEnd {
    Complete,
    /// No end-of-central-directory record at the end: the file was cut.
    Missing,
    /// An end record whose central directory does not fit the file.
    Inconsistent(String),
}

/// Finds the end-of-central-directory record (22 bytes plus a comment of up to 64 KiB, the
/// last thing in the file) and checks that the central directory it points to (through the
/// zip64 record when the 32-bit fields are saturated, as PyTorch writes them) lies inside.
fn zip_end(file: &mut File, len: u64) -> std::io::Result<ZipEnd> {
    let tail_len = len.min(22 + 0xFFFF);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::Start(len - tail_len))?;
    file.read_exact(&mut tail)?;
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as u64;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as u64;
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let Some(p) = (0..tail.len().saturating_sub(21)).rev().find(|&p| {
        tail[p..].starts_with(b"PK\x05\x06")
            && p + 22 + u16_at(&tail, p + 20) as usize == tail.len()
    }) else {
        return Ok(ZipEnd::Missing);
    };
    let end_at = len - tail_len + p as u64;
    let (mut cd_size, mut cd_offset, mut cd_end_limit) =
        (u32_at(&tail, p + 12), u32_at(&tail, p + 16), end_at);
    if cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF || u16_at(&tail, p + 10) == 0xFFFF {
        // zip64: a 20-byte locator just before the end record gives the zip64 record
        if end_at < 20 {
            return Ok(ZipEnd::Inconsistent("zip64 locator missing".into()));
        }
        let mut locator = [0u8; 20];
        file.seek(SeekFrom::Start(end_at - 20))?;
        file.read_exact(&mut locator)?;
        let record_at = u64_at(&locator, 8);
        if !locator.starts_with(b"PK\x06\x07") || record_at + 56 > end_at - 20 {
            return Ok(ZipEnd::Inconsistent("zip64 end record not found".into()));
        }
        let mut record = [0u8; 56];
        file.seek(SeekFrom::Start(record_at))?;
        file.read_exact(&mut record)?;
        if !record.starts_with(b"PK\x06\x06") {
            return Ok(ZipEnd::Inconsistent("zip64 end record not found".into()));
        }
        (cd_size, cd_offset, cd_end_limit) = (u64_at(&record, 40), u64_at(&record, 48), record_at);
    }
    Ok(match cd_offset.checked_add(cd_size) {
        Some(end) if end <= cd_end_limit => ZipEnd::Complete,
        _ => ZipEnd::Inconsistent(format!(
            "the central directory ({cd_size} bytes at {cd_offset}) lies outside the file ({len} bytes)"
        )),
    })
}

/// A pickled file: legacy `torch.save` (magic number first) or one pickle stream; either
/// way its pickles must be complete.
fn pickled(file: &mut File, head: &[u8], len: u64, shown: &str) -> Result<Container> {
    let legacy = head.len() >= pickle::LEGACY_MAGIC.len()
        && head.starts_with(&pickle::LEGACY_MAGIC)
        || pickle::LEGACY_MAGIC.starts_with(head);
    let read_len = len.min(PICKLE_HEAD);
    let mut bytes = vec![0u8; read_len as usize];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| read_error(shown, e))?;
    let whole = read_len == len;
    let format = if legacy {
        "PyTorch legacy checkpoint"
    } else {
        "pickle"
    };
    let result = if legacy {
        pickle::legacy_layout(&bytes, whole).map(Container::Legacy)
    } else {
        match pickle::skip(&bytes, 0) {
            Err(Scan::Truncated) if !whole => Ok(Container::Pickle),
            other => other.map(|_| Container::Pickle),
        }
    };
    result.map_err(|e| match e {
        Scan::Truncated => CheckpointError::Truncated {
            path: shown.into(),
            format,
            detail: format!("the pickled data ends early ({len} bytes)"),
        },
        Scan::Invalid { opcode, at } => CheckpointError::Read {
            path: shown.into(),
            format: "a PyTorch checkpoint",
            reason: format!("byte 0x{opcode:02x} at offset {at} is not a pickle opcode"),
        },
    })
}

/// The header length when the file starts like safetensors: a length prefix no larger than
/// safetensors allows, then `{` (or, for a `.safetensors` file, anything: a corrupt header
/// is the reader's to report).
fn safetensors_header_len(head: &[u8], safetensors_ext: bool) -> Option<u64> {
    let n = u64::from_le_bytes(head.get(..8)?.try_into().ok()?);
    let brace = head.get(8) == Some(&b'{');
    ((brace || safetensors_ext) && (2..=MAX_SAFETENSORS_HEADER).contains(&n)).then_some(n)
}

/// The header must be in the file, and the tensors' data (the largest end offset the
/// header names) too.
fn safetensors(file: &mut File, header_len: u64, len: u64, shown: &str) -> Result<Container> {
    let truncated = |detail: String| CheckpointError::Truncated {
        path: shown.into(),
        format: "safetensors file",
        detail,
    };
    if 8 + header_len > len {
        return Err(truncated(format!(
            "its header needs {header_len} bytes, only {} are present",
            len - 8
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.seek(SeekFrom::Start(8))
        .and_then(|_| file.read_exact(&mut header))
        .map_err(|e| read_error(shown, e))?;
    // a header that does not parse is left to the reader, which says why
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice(&header) else {
        return Ok(Container::Safetensors);
    };
    let data_end = entries
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    let have = len - 8 - header_len;
    if data_end > have {
        return Err(truncated(format!(
            "its tensors need {data_end} bytes of data, only {have} are present"
        )));
    }
    Ok(Container::Safetensors)
}

/// What a file that is no checkpoint looks like, from its first bytes.
fn looks_like(head: &[u8]) -> String {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "gzip data"),
        (b"BZh", "bzip2 data"),
        (b"\xfd7zXZ\x00", "xz data"),
        (b"\x28\xb5\x2f\xfd", "zstd data"),
        (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
        (b"\x7fELF", "an ELF executable"),
        (
            b"GGUF",
            "a GGUF model (llama.cpp), not RWKV-4 PyTorch or safetensors",
        ),
        (b"\x93NUMPY", "a NumPy array"),
        (b"\x89HDF", "an HDF5 file"),
        (b"\x89PNG", "a PNG image"),
        (b"%PDF", "a PDF document"),
    ];
    if let Some((_, what)) = MAGIC.iter().find(|(m, _)| head.starts_with(m)) {
        return what.to_string();
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // a multi-byte character cut by the 4 KiB window is still text
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return "binary data of an unknown kind".into(),
    };
    if text.contains('\0') {
        return "binary data of an unknown kind".into();
    }
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let first = t.lines().next().unwrap_or("");
    let yaml_key = |l: &str| {
        let l = l.trim_start();
        l.split_once(':').is_some_and(|(k, rest)| {
            !k.is_empty()
                && k.chars().all(|c| c.is_alphanumeric() || "_-. ".contains(c))
                && (rest.is_empty() || rest.starts_with(' '))
        })
    };
    if t.starts_with("version https://git-lfs") {
        "a Git LFS pointer: the real file was not downloaded (git lfs pull)".into()
    } else if t.starts_with('{') || t.starts_with('[') {
        "JSON text".into()
    } else if t.starts_with("---")
        || t.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .take(3)
            .any(yaml_key)
    {
        "YAML text".into()
    } else if t.starts_with('<') {
        "XML or HTML text".into()
    } else if first.starts_with("#!") {
        "a script".into()
    } else if t.is_empty() {
        "blank text".into()
    } else {
        "plain text".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_kinds() {
        let cases: [(&[u8], &str); 8] = [
            (b"scaling:\n  d_model: 512\n", "YAML"),
            (b"# spec\nseed: 0\n", "YAML"),
            (b"  {\"a\": 1}", "JSON"),
            (b"<html></html>", "HTML"),
            (b"hello world, no colon here\n", "plain text"),
            (
                b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
                "Git LFS",
            ),
            (b"\x00\x01\x02\xff\xfe", "binary"),
            (b"GGUF\x03\x00", "GGUF"),
        ];
        for (bytes, want) in cases {
            let got = looks_like(bytes);
            assert!(got.contains(want), "{bytes:?}: {got}");
        }
    }
}
