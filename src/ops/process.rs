//! The process's own resource use, read from `/proc` at scrape time (Linux only; elsewhere
//! the figures are absent).

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, fixed at 100 by the Linux
/// ABI on every architecture edgeflow targets (x86_64, arm, aarch64).
const USER_HZ: f64 = 100.0;

/// Resource use of this process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// Reads the figures now.
pub fn read() -> ProcessStats {
    let mut stats = ProcessStats::default();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            let (key, rest) = line.split_once(':').unwrap_or((line, ""));
            let number = || {
                rest.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            };
            match key {
                "VmRSS" => stats.resident_bytes = number().map(|kb| kb * 1024),
                "VmSize" => stats.virtual_bytes = number().map(|kb| kb * 1024),
                "Threads" => stats.threads = number(),
                _ => {}
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // The command name (field 2) may hold spaces; fields after its closing ')' are plain.
        if let Some((_, after)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = after.split_whitespace().collect();
            // `after` starts at field 3 (state): utime is field 14, stime 15, starttime 22.
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (field(14), field(15)) {
                stats.cpu_seconds = Some((user + system) as f64 / USER_HZ);
            }
            if let (Some(start), Some(boot)) = (field(22), boot_time()) {
                stats.start_time_seconds = Some(boot + start as f64 / USER_HZ);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        stats.open_fds = Some(entries.count() as u64);
    }
    stats
}

/// Boot time, seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// Seconds since the Unix epoch, now.
#[cfg(test)]
fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_cpu_and_files() {
        let stats = read();
        if cfg!(target_os = "linux") {
            assert!(stats.resident_bytes.unwrap_or(0) > 1024 * 1024, "{stats:?}");
            assert!(stats.cpu_seconds.is_some(), "{stats:?}");
            assert!(stats.open_fds.unwrap_or(0) >= 3, "{stats:?}");
            let start = stats.start_time_seconds.expect("start time");
            assert!(start <= now_seconds() + 1.0 && start > now_seconds() - 86_400.0 * 365.0);
        }
    }
}
