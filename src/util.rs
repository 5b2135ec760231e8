//! Small helpers of the CLI.

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

/// Physical memory in bytes (Linux `/proc/meminfo`), if known.
pub fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses `8G`, `512M`, `1.5GiB`, `1000000` into bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 8G or 512M"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => return Err(format!("unknown size unit `{other}` (use K, M, G or T)")),
    };
    if !(value >= 0.0 && value.is_finite()) {
        return Err(format!("`{s}` is not a valid size"));
    }
    Ok((value * mult) as u64)
}

/// Human-readable bytes.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0f64.powi(3) {
        format!("{:.1} GiB", b / 1024.0f64.powi(3))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
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
    }
}
