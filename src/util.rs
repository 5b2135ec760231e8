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

/// clap value parser for sizes (`8G`, `512M`, `1.5GiB`, `1000000`); the same parser the
/// scaling spec's `memory_budget` uses.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    lab_util::parse_bytes(s)
        .ok_or_else(|| format!("`{s}` is not a size like 8G, 512M or 1000000 (units K, M, G, T)"))
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

/// `git describe --always --dirty --abbrev=12`, or `unknown` outside a checkout.
pub fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// CPU model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Logical cores.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A short name for this machine: CPU vendor/family and core count, e.g. `amd-epyc-2c`.
pub fn machine_slug() -> String {
    let model = cpu_model().to_ascii_lowercase();
    let words: Vec<String> = model
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            !w.is_empty()
                && !["processor", "cpu", "core", "with", "radeon", "graphics"].contains(w)
                && !w.ends_with("ghz")
        })
        .take(2)
        .map(str::to_string)
        .collect();
    format!(
        "{}-{}c",
        if words.is_empty() {
            "cpu".to_string()
        } else {
            words.join("-")
        },
        cores()
    )
}

/// One line describing the machine.
pub fn machine_line() -> String {
    let mem = physical_memory()
        .map(|m| lab_util::fmt_bytes(m as f64))
        .unwrap_or_else(|| "unknown memory".into());
    format!(
        "{} ({} logical cores, {mem}, {} {})",
        cpu_model(),
        cores(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Now as an RFC 3339 UTC timestamp (seconds).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
