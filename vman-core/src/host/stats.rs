//! [`HostStats`]: what the host and each VM's QEMU use, read from `/proc`
//! and `statvfs` over a short sample. The parsers are pure functions of
//! the files' text.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::vm::state::VmState;

/// How long CPU use is sampled: long enough for a percentage to mean
/// something at the kernel's 100 Hz accounting, short enough to answer a
/// dashboard at once.
pub const STATS_SAMPLE: Duration = Duration::from_millis(200);

/// The host and its VMs, as seen over one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostStats {
    /// When the sample ended, Unix time in milliseconds.
    pub at_ms: i64,
    /// How long CPU use was sampled, in milliseconds.
    pub sample_ms: u64,
    /// Online CPUs.
    pub cpu_count: u32,
    /// How busy all CPUs were over the sample, 0 to 100 (everything but
    /// idle and I/O wait).
    pub cpu_busy_percent: f64,
    /// The kernel's load averages over 1, 5 and 15 minutes.
    pub load_1: f64,
    /// See [`load_1`](Self::load_1).
    pub load_5: f64,
    /// See [`load_1`](Self::load_1).
    pub load_15: f64,
    /// Physical memory.
    pub memory_total_bytes: u64,
    /// Memory available for new work without swapping (`MemAvailable`).
    pub memory_available_bytes: u64,
    /// Size of the filesystem holding the state directory.
    pub disk_total_bytes: u64,
    /// Space on it available to vman (what an unprivileged user may use).
    pub disk_available_bytes: u64,
    /// Every live VM, by name.
    pub vms: Vec<VmStats>,
}

/// One VM: what its QEMU uses (when it has one) and what its files take.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmStats {
    /// The VM's name.
    pub name: String,
    /// The VM's id.
    pub id: String,
    /// Its state when read.
    pub state: VmState,
    /// The pid of its QEMU, proven to be that VM's; `None` without one.
    pub pid: Option<u32>,
    /// User plus system CPU time its QEMU used since it started, in
    /// milliseconds; `None` without a QEMU.
    pub cpu_time_ms: Option<u64>,
    /// Its QEMU's CPU use over the sample, in percent of one CPU (a busy
    /// guest with 2 vCPUs shows up to ~200); `None` without a QEMU.
    pub cpu_percent: Option<f64>,
    /// Its QEMU's resident memory; `None` without a QEMU.
    pub rss_bytes: Option<u64>,
    /// Host disk space its own files take (allocated, not apparent size):
    /// its disks (for a linked clone, the overlay, not the shared image),
    /// its cloud-init seed and its UEFI variables.
    pub disk_bytes: u64,
}

/// The host-wide CPU counters of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTicks {
    pub busy: u64,
    pub total: u64,
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal (guest time is already in user and nice).
pub(crate) fn parse_proc_stat(text: &str) -> Option<CpuTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some(CpuTicks { busy: total - idle, total })
}

/// Busy share of the ticks between two readings, 0 to 100.
pub(crate) fn busy_percent(before: CpuTicks, after: CpuTicks) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    (after.busy.saturating_sub(before.busy) as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
}

/// The three load averages of `/proc/loadavg`.
pub(crate) fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub(crate) fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some((field("MemTotal")? * 1024, field("MemAvailable")? * 1024))
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub(crate) fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The resident pages of `/proc/<pid>/statm` (its second field).
pub(crate) fn parse_statm_resident(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a configuration value; no memory is passed.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|v| *v > 0)
}

/// Clock ticks per second (`USER_HZ`).
pub(crate) fn ticks_per_second() -> u64 {
    sysconf(libc::_SC_CLK_TCK).unwrap_or(100)
}

pub(crate) fn page_size() -> u64 {
    sysconf(libc::_SC_PAGESIZE).unwrap_or(4096)
}

pub(crate) fn cpu_count() -> u32 {
    sysconf(libc::_SC_NPROCESSORS_ONLN).and_then(|n| u32::try_from(n).ok()).unwrap_or(1)
}

fn read_proc(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

fn unreadable(path: &str) -> Error {
    Error::Internal(format!("{path} has a format vman cannot read"))
}

pub(crate) fn cpu_ticks() -> Result<CpuTicks> {
    parse_proc_stat(&read_proc("/proc/stat")?).ok_or_else(|| unreadable("/proc/stat"))
}

pub(crate) fn load_average() -> Result<[f64; 3]> {
    parse_loadavg(&read_proc("/proc/loadavg")?).ok_or_else(|| unreadable("/proc/loadavg"))
}

pub(crate) fn memory() -> Result<(u64, u64)> {
    parse_meminfo(&read_proc("/proc/meminfo")?).ok_or_else(|| unreadable("/proc/meminfo"))
}

/// Total and available bytes of the filesystem holding `dir`.
pub(crate) fn disk_space(dir: &Path) -> Result<(u64, u64)> {
    let vfs = nix::sys::statvfs::statvfs(dir).map_err(|e| Error::io("read the filesystem size of", dir, e.into()))?;
    let unit = vfs.fragment_size() as u64;
    Ok((vfs.blocks() as u64 * unit, vfs.blocks_available() as u64 * unit))
}

/// A process's CPU time (ticks) and resident bytes; `None` once it is gone.
pub(crate) fn process_usage(pid: u32) -> Option<(u64, u64)> {
    let ticks = parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let pages = parse_statm_resident(&std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?)?;
    Some((ticks, pages * page_size()))
}

/// Bytes the filesystem allocated to `path` (0 if it is missing).
pub(crate) fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// A sampling clock: CPU readings now, and the same after [`STATS_SAMPLE`].
pub(crate) struct Sample {
    started: Instant,
    host: CpuTicks,
}

impl Sample {
    pub fn start() -> Result<Sample> {
        Ok(Sample { started: Instant::now(), host: cpu_ticks()? })
    }

    /// Sleeps out the rest of the sample; the host's busy percentage and
    /// the sample's real length.
    pub fn finish(self) -> Result<(f64, Duration)> {
        if let Some(rest) = STATS_SAMPLE.checked_sub(self.started.elapsed()) {
            std::thread::sleep(rest);
        }
        let after = cpu_ticks()?;
        Ok((busy_percent(self.host, after), self.started.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_counts_idle_and_iowait_as_not_busy() {
        let text = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\nintr 1 2\n";
        assert_eq!(parse_proc_stat(text), Some(CpuTicks { busy: 160, total: 1000 }));
        let before = CpuTicks { busy: 160, total: 1000 };
        assert_eq!(busy_percent(before, CpuTicks { busy: 210, total: 1200 }), 25.0);
        assert_eq!(busy_percent(before, before), 0.0, "no ticks: nothing to say, not a division by zero");
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 x 3 4 5\n"), None);
    }

    #[test]
    fn loadavg_and_meminfo() {
        assert_eq!(parse_loadavg("0.52 1.58 10.00 1/467 12345\n"), Some([0.52, 1.58, 10.0]));
        assert_eq!(parse_loadavg("0.52\n"), None);
        let meminfo = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some((8_192_000_000, 6_144_000_000)));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None, "a kernel without MemAvailable");
    }

    #[test]
    fn a_process_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "4242 (qemu) (x y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1500 250 0 0 20 0 3 0 100 1000000 5000";
        assert_eq!(parse_pid_stat(stat), Some(1750));
        assert_eq!(parse_pid_stat("4242 (qemu) S 1"), None);
        assert_eq!(parse_statm_resident("10000 2500 300 1 0 800 0\n"), Some(2500));
    }

    #[test]
    fn this_process_and_host_read_as_plausible() {
        let (ticks, rss) = process_usage(std::process::id()).unwrap();
        assert!(rss > 1 << 20, "a test binary holds more than 1 MiB: {rss}");
        let _ = ticks;
        let (total, available) = memory().unwrap();
        assert!(available <= total && total > 0);
        let (size, free) = disk_space(Path::new("/")).unwrap();
        assert!(free <= size && size > 0);
        assert!(cpu_count() >= 1);
        assert!(load_average().unwrap().iter().all(|l| *l >= 0.0));
    }
}
