//! A process's memory as Linux reports it: what each rank prints at start-up
//! and at the end of a job, and the free memory pipeline splits weigh.

/// `MemAvailable` from /proc/meminfo, in bytes (`None` off Linux).
pub fn available_memory() -> Option<f64> {
    proc_kib("/proc/meminfo", "MemAvailable:").map(|kb| kb * 1024.0)
}

/// This process's resident memory now (VmRSS), in MiB.
pub fn resident_mib() -> Option<f64> {
    proc_kib("/proc/self/status", "VmRSS:").map(|kb| kb / 1024.0)
}

/// This process's peak resident memory so far (VmHWM), in MiB.
pub fn peak_resident_mib() -> Option<f64> {
    proc_kib("/proc/self/status", "VmHWM:").map(|kb| kb / 1024.0)
}

/// A `key:  N kB` line of a /proc file, in KiB.
fn proc_kib(file: &str, key: &str) -> Option<f64> {
    parse_kib(&std::fs::read_to_string(file).ok()?, key)
}

fn parse_kib(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_lines() {
        let text = "VmPeak:\t  100 kB\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_kib(text, "VmRSS:"), Some(1024.0));
        assert_eq!(parse_kib(text, "VmHWM:"), Some(2048.0));
        assert_eq!(parse_kib(text, "Missing:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory() {
        assert!(resident_mib().unwrap() > 0.0);
        assert!(peak_resident_mib().unwrap() >= resident_mib().unwrap() * 0.5);
    }
}
