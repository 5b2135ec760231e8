//! Just enough of Python's pickle format to tell whether a pickled file is complete: a
//! walker that steps over one pickle stream opcode by opcode without building objects, and
//! the layout check of `torch.save`'s legacy format (five pickles, then the raw storages).
//!
//! burn-store's reader reports a cut pickle as "Invalid pickle opcode" or, worse, reads the
//! missing storages of a cut legacy file as zeros; these checks run first and say
//! "truncated" instead.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Why a pickle stream could not be stepped over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The data ends inside the stream (before its STOP opcode).
    Truncated,
    /// A byte that is no pickle opcode, at this offset.
    Invalid { opcode: u8, at: usize },
}

/// What follows an opcode.
enum Arg {
    None,
    Fixed(usize),
    /// A little-endian length of this many bytes, then that many bytes.
    Counted(usize),
    /// This many newline-terminated lines (protocol 0).
    Lines(usize),
}

/// The argument of every opcode of protocols 0 to 5 (Python's `pickletools`).
fn arg(opcode: u8) -> Option<Arg> {
    Some(match opcode {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'N' | b'a' | b'b' | b'd' | b'}' | b'e' | b'l'
        | b']' | b'o' | b'R' | b's' | b't' | b')' | b'u' | b'Q' => Arg::None,
        0x81 | 0x85..=0x89 | 0x8f..=0x94 | 0x97 | 0x98 => Arg::None,
        b'K' | b'h' | b'q' | 0x80 | 0x82 => Arg::Fixed(1),
        b'M' | 0x83 => Arg::Fixed(2),
        b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
        b'G' | 0x95 => Arg::Fixed(8), // FRAME: its length, then ordinary opcodes
        b'U' | b'C' | 0x8c | 0x8a => Arg::Counted(1),
        b'T' | b'X' | b'B' | 0x8b => Arg::Counted(4),
        0x8d | 0x8e | 0x96 => Arg::Counted(8),
        b'I' | b'L' | b'S' | b'V' | b'F' | b'g' | b'p' | b'P' => Arg::Lines(1),
        b'c' | b'i' => Arg::Lines(2),
        _ => return None,
    })
}

/// Opcodes that push a string (used to count the storage keys of a legacy file).
fn pushes_string(opcode: u8) -> bool {
    matches!(opcode, b'X' | 0x8c | 0x8d | b'T' | b'U' | b'S' | b'V')
}

/// Steps over the pickle stream that starts at `start`; returns the offset after its STOP
/// and how many strings it pushed.
pub(crate) fn skip(data: &[u8], start: usize) -> Result<(usize, usize), Scan> {
    let mut pos = start;
    let mut strings = 0;
    loop {
        let &opcode = data.get(pos).ok_or(Scan::Truncated)?;
        let at = pos;
        pos += 1;
        match arg(opcode).ok_or(Scan::Invalid { opcode, at })? {
            Arg::None => {}
            Arg::Fixed(n) => pos += n,
            Arg::Counted(n) => {
                let bytes = data.get(pos..pos + n).ok_or(Scan::Truncated)?;
                let mut len = [0u8; 8];
                len[..n].copy_from_slice(bytes);
                let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| Scan::Truncated)?;
                pos = pos.checked_add(n + len).ok_or(Scan::Truncated)?;
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    let rest = data.get(pos..).ok_or(Scan::Truncated)?;
                    let line = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or(Scan::Truncated)?;
                    pos += line + 1;
                }
            }
        }
        if pushes_string(opcode) {
            strings += 1;
        }
        if opcode == b'.' {
            return Ok((pos, strings));
        }
        if pos > data.len() {
            return Err(Scan::Truncated);
        }
    }
}

/// `torch.save`'s legacy format begins with the pickled magic number 0x1950a86a20f9469cfc6c.
pub(crate) const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

/// Where the storages of a legacy file start, and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LegacyLayout {
    /// Offset of the first storage.
    pub data_start: u64,
    /// Number of storages (the length of the fifth pickle, a list of keys).
    pub storages: usize,
}

/// The five pickles of a legacy file (magic number, protocol version, system info, the
/// object, the storage keys), stepped over in `head`, the file's first bytes (`whole` when
/// that is the entire file). `Ok(None)` when they run past a `head` that is not the whole
/// file (undecided, not truncated).
pub(crate) fn legacy_layout(head: &[u8], whole: bool) -> Result<Option<LegacyLayout>, Scan> {
    let mut pos = 0;
    let mut strings = 0;
    for _ in 0..5 {
        match skip(head, pos) {
            Ok((end, n)) => (pos, strings) = (end, n),
            Err(Scan::Truncated) if !whole => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(LegacyLayout {
        data_start: pos as u64,
        storages: strings,
    }))
}

/// How the storages of a legacy file fit its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Some reading of the storages ends exactly at the end of the file.
    Exact,
    /// Every reading runs past the end of the file: storage `index` (0-based) by at least
    /// `missing` bytes.
    Short { index: usize, missing: u64 },
    /// Not decided (too many readings to follow, or one ends before the end of the file).
    Undecided,
}

/// Each legacy storage is an 8-byte little-endian element count followed by the elements.
/// The element size of each storage is one of `sizes` (those of the tensors read), so the
/// storages are followed breadth-first over the possible sizes (usually one) until one
/// reading ends exactly at the end of the file or none can.
pub(crate) fn legacy_storages_fit(
    file: &mut File,
    layout: LegacyLayout,
    sizes: &BTreeSet<u64>,
) -> std::io::Result<Fit> {
    const MAX_READINGS: usize = 64;
    let len = file.metadata()?.len();
    let mut frontier = BTreeSet::from([layout.data_start]);
    for index in 0..layout.storages {
        let mut missing = u64::MAX;
        let mut next = BTreeSet::new();
        for &pos in &frontier {
            if pos + 8 > len {
                missing = missing.min(pos + 8 - len);
                continue;
            }
            file.seek(SeekFrom::Start(pos))?;
            let mut count = [0u8; 8];
            file.read_exact(&mut count)?;
            let count = u64::from_le_bytes(count);
            for &size in sizes {
                match count.checked_mul(size).and_then(|b| b.checked_add(pos + 8)) {
                    Some(end) if end <= len => {
                        next.insert(end);
                    }
                    Some(end) => missing = missing.min(end - len),
                    None => {}
                }
            }
        }
        if next.len() > MAX_READINGS {
            return Ok(Fit::Undecided);
        }
        if next.is_empty() {
            return Ok(if missing == u64::MAX {
                Fit::Undecided
            } else {
                Fit::Short { index, missing }
            });
        }
        frontier = next;
    }
    Ok(if frontier.contains(&len) {
        Fit::Exact
    } else {
        Fit::Undecided
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_pickle_and_notices_a_cut() {
        // pickle.dumps({'a': [1, 2.5, 'x']}, protocol=2)
        let p: &[u8] = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x03es.";
        assert_eq!(skip(p, 0), Ok((p.len(), 2)));
        for cut in 0..p.len() {
            assert_eq!(skip(&p[..cut], 0), Err(Scan::Truncated), "cut at {cut}");
        }
        assert_eq!(
            skip(b"\x80\x02\xff", 0),
            Err(Scan::Invalid {
                opcode: 0xff,
                at: 2
            })
        );
        // protocol 0, with newline-terminated arguments:
        // pickle.dumps(collections.OrderedDict(a=1), protocol=0)
        let p0: &[u8] = b"ccollections\nOrderedDict\np0\n(tRp1\nVa\np2\nI1\ns.";
        assert_eq!(skip(p0, 0), Ok((p0.len(), 1)));
        for cut in 0..p0.len() {
            assert_eq!(skip(&p0[..cut], 0), Err(Scan::Truncated), "cut at {cut}");
        }
    }
}
