//! Small helpers of the CLI: clap value parsers. (Provenance, the machine description and
//! the default memory budget live in `lab_records::provenance`.)

/// clap value parser for integers ≥ 1.
pub fn positive(s: &str) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if v == 0 {
        Err("must be at least 1".into())
    } else {
        Ok(v)
    }
}

/// clap value parser for sizes (`8G`, `512M`, `1.5GiB`, `1000000`); the same parser the
/// scaling spec's `memory_budget` uses.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    lab_util::parse_bytes(s)
        .ok_or_else(|| format!("`{s}` is not a size like 8G, 512M or 1000000 (units K, M, G, T)"))
}

/// clap value parser for `--memory-budget` of every command: a size of at least one byte
/// (a budget of 0 would skip or refuse everything, which is never what was meant).
pub fn memory_budget(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err("must be more than 0 bytes".into()),
        b => Ok(b),
    }
}

/// clap value parser for one token id (lists are split on commas by clap).
pub fn parse_id(s: &str) -> Result<i64, String> {
    let t = s.trim();
    match t.parse::<i64>() {
        Ok(v) if v >= 0 => Ok(v),
        Ok(_) => Err("token ids must be non-negative".into()),
        Err(_) => Err(format!("`{t}` is not a token id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err());
        assert!(positive("x").is_err());
        assert_eq!(parse_bytes("2K"), Ok(2048));
        assert_eq!(parse_bytes("1.5G"), Ok(1610612736));
        assert!(parse_bytes("3Q").is_err());
        assert!(memory_budget("0").unwrap_err().contains("more than 0"));
        assert_eq!(memory_budget("1K"), Ok(1024));
    }
}
