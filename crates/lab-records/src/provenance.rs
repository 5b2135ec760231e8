//! Where and when a run happened: git revision, machine, UTC times. Written into
//! `meta.json` and every record, so results can be traced to the code and the hardware.

use std::path::Path;

/// `git describe --always --dirty --abbrev=12` of the checkout at `repo` (the source tree
/// the binary was built from, not the working directory), or `unknown` outside a checkout.
pub fn git_rev(repo: &Path) -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// CPU model name from `/proc/cpuinfo` (the architecture where it is not readable).
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

/// Logical cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Physical memory in bytes (Linux `/proc/meminfo`), if known.
pub fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The default memory budget of a command: half of physical memory (8 GiB where unknown).
pub fn default_memory_budget() -> u64 {
    physical_memory().map(|m| m / 2).unwrap_or(8 << 30)
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

/// One line describing the machine, e.g.
/// `AMD EPYC (2 logical cores, 23.5 GiB, linux x86_64)`.
pub fn machine_line() -> String {
    // GiB with one decimal: this crate stays free of the numeric crates (lab-util pulls in
    // burn), and a machine's memory needs no finer unit choice.
    let mem = physical_memory()
        .map(|m| format!("{:.1} GiB", m as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|| "unknown memory".into());
    format!(
        "{} ({} logical cores, {mem}, {} {})",
        cpu_model(),
        cores(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (year, month, day, hour, minute, second) in UTC of `secs` since 1970-01-01.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
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
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `secs` since the epoch as an RFC 3339 UTC timestamp (seconds).
pub fn utc(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Now as an RFC 3339 UTC timestamp (seconds).
pub fn utc_now() -> String {
    utc(now_secs())
}

/// Now in UTC for file names (no colons): `20261126T165228Z`.
pub fn utc_stamp() -> String {
    let (y, m, d, hh, mm, ss) = civil(now_secs());
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        // 2024-02-29 (a leap day) 12:34:56
        assert_eq!(utc(1_709_210_096), "2024-02-29T12:34:56Z");
        let s = utc_stamp();
        assert!(s.len() == 16 && s.ends_with('Z') && !s.contains(':'), "{s}");
    }

    #[test]
    fn machine_description() {
        assert!(machine_slug().ends_with(&format!("-{}c", cores())));
        assert!(machine_line().contains("logical cores"));
        assert!(default_memory_budget() > 0);
    }
}
