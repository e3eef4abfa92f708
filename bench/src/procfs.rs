//! Memory and CPU figures of processes from `/proc`, and a description of
//! the machine a run measured on.

use std::time::Duration;

/// Resident set size now (`VmRSS`) and its peak since start (`VmHWM`), in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Rss {
    pub current: u64,
    pub peak: u64,
}

/// `VmRSS` and `VmHWM` of `pid`, or `None` when the process is gone.
pub fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    Some(Rss {
        current: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// User plus system CPU time `pid` has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted from the state field (3).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// Returns the 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Mebibytes, for tables.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Machine, date and tool versions of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub date: String,
    pub kernel: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub gopls_version: String,
    pub go_version: String,
    pub load_average_start: f64,
}

impl Machine {
    pub fn describe(gopls: &std::path::Path) -> Machine {
        let output = |program: &std::ffi::OsStr, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|e| format!("unknown ({e})"))
        };
        let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0);
        let gopls_version = output(gopls.as_os_str(), &["version"]);
        Machine {
            date: output("date".as_ref(), &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            kernel: output("uname".as_ref(), &["-r"]),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: memory_kib as f64 / (1024.0 * 1024.0),
            gopls_version: gopls_version.lines().next().unwrap_or_default().to_owned(),
            go_version: output("go".as_ref(), &["version"]),
            load_average_start: load_average(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_is_positive() {
        let own = rss(std::process::id()).unwrap();
        assert!(own.current > 0);
        assert!(own.peak >= own.current);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_time(std::process::id()).is_some());
    }

    #[test]
    fn missing_process_has_no_rss() {
        assert!(rss(u32::MAX).is_none());
    }
}
