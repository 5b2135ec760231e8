//! Reading a records CSV with errors that name the file, the line and the field.

use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::RecordsError;

/// Reads every row of a records CSV. Fails on a missing file, a malformed row (naming the
/// line and the field), and a file without rows.
pub fn read_rows<R: DeserializeOwned>(path: &Path) -> Result<Vec<R>, RecordsError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RecordsError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(RecordsError::io(path, e)),
    };
    let rows = parse_rows(std::io::BufReader::new(file), path)?;
    if rows.is_empty() {
        return Err(RecordsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

/// Parses rows from `reader` (`path` only names the file in errors); an empty input or a
/// header alone gives no rows.
pub(crate) fn parse_rows<R: DeserializeOwned>(
    reader: impl Read,
    path: &Path,
) -> Result<Vec<R>, RecordsError> {
    let mut reader = csv::Reader::from_reader(reader);
    let headers = reader
        .headers()
        .map_err(|e| csv_error(path, e, None))?
        .clone();
    reader
        .deserialize::<R>()
        .map(|row| row.map_err(|e| csv_error(path, e, Some(&headers))))
        .collect()
}

fn csv_error(path: &Path, e: csv::Error, headers: Option<&csv::StringRecord>) -> RecordsError {
    let line = e.position().map(|p| p.line());
    let reason = match e.kind() {
        csv::ErrorKind::Io(io) => return RecordsError::io(path, io),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields (as in the header), found {len}")
        }
        csv::ErrorKind::Deserialize { err, .. } => {
            let field = err.field().map(|i| {
                let name = headers.and_then(|h| h.get(i as usize)).unwrap_or("?");
                format!("field {} (`{name}`): ", i + 1)
            });
            format!("{}{}", field.unwrap_or_default(), err.kind())
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8: {err}"),
        _ => e.to_string(),
    };
    RecordsError::Csv {
        path: path.to_path_buf(),
        line,
        reason,
    }
}
