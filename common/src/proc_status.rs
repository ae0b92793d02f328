//! A process's figures from Linux's `/proc/PID/status`, for the benchmarks' and the stack
//! runner's memory figures and the tests' memory checks (one parser for all of them).

/// A `status` line in KiB for process `pid` (`None`: this process), `field` with its colon:
/// `"VmHWM:"` is the peak resident memory, `"VmRSS:"` what is resident now. `None` where
/// `/proc` cannot say (another OS, a process gone).
pub fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The peak resident memory of process `pid` (`None`: this process) in MiB.
pub fn peak_rss_mib(pid: Option<u32>) -> Option<f64> {
    status_kib(pid, "VmHWM:").map(|kib| kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_at_least_its_resident_memory() {
        let (Some(peak), Some(now)) = (status_kib(None, "VmHWM:"), status_kib(None, "VmRSS:"))
        else {
            panic!("/proc/self/status has no VmHWM or VmRSS");
        };
        assert!(peak >= now && now > 0, "{peak} {now}");
        assert_eq!(status_kib(None, "NoSuchField:"), None);
    }
}
