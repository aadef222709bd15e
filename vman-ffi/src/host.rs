//! The host: `VmanHostStats` (CPU, memory, disk, and each VM's QEMU) and
//! `VmanHostHealth` (whether what vman needs is usable).

use vman_core::{HealthCheck, HostHealth, HostStats, VmStats};

use crate::error::VmanStatus;
use crate::guard::{self, new_handle};
use crate::manager::VmanManager;
use crate::vm::VmanVmState;

record! {
    /// The host and its VMs over one sample; immutable, thread-safe.
    pub struct VmanHostStats(stats) from HostStats;
    /// When the sample ended, Unix time in milliseconds.
    fn vman_host_stats_at_ms -> number<i64> = |s| s.at_ms;
    /// How long CPU use was sampled, in milliseconds.
    fn vman_host_stats_sample_ms -> number<u64> = |s| s.sample_ms;
    /// Online CPUs.
    fn vman_host_stats_cpu_count -> number<u32> = |s| s.cpu_count;
    /// How busy all CPUs were over the sample, 0 to 100.
    fn vman_host_stats_cpu_busy_percent -> number<f64> = |s| s.cpu_busy_percent;
    /// The 1-minute load average.
    fn vman_host_stats_load_1 -> number<f64> = |s| s.load_1;
    /// The 5-minute load average.
    fn vman_host_stats_load_5 -> number<f64> = |s| s.load_5;
    /// The 15-minute load average.
    fn vman_host_stats_load_15 -> number<f64> = |s| s.load_15;
    /// Physical memory, in bytes.
    fn vman_host_stats_memory_total_bytes -> number<u64> = |s| s.memory_total_bytes;
    /// Memory available for new work without swapping, in bytes.
    fn vman_host_stats_memory_available_bytes -> number<u64> = |s| s.memory_available_bytes;
    /// Size of the state directory's filesystem, in bytes.
    fn vman_host_stats_disk_total_bytes -> number<u64> = |s| s.disk_total_bytes;
    /// Space available to vman on it, in bytes.
    fn vman_host_stats_disk_available_bytes -> number<u64> = |s| s.disk_available_bytes;
    /// How many VMs there are; see `vman_host_stats_vm`.
    fn vman_host_stats_vm_count -> number<usize> = |s| s.vms.len();
    /// VM `index`, by name.
    fn vman_host_stats_vm -> record_at<VmanVmStats> = |s| s.vms.iter().cloned();
    free vman_host_stats_free;
}

record! {
    /// One VM of a `VmanHostStats`, borrowed from it; immutable, thread-safe.
    pub struct VmanVmStats(vm) from VmStats;
    fn vman_vm_stats_name -> text = |v| &v.name;
    /// The VM's UUID.
    fn vman_vm_stats_id -> text = |v| &v.id;
    /// Its state when read.
    fn vman_vm_stats_state -> number<VmanVmState> = |v| v.state.into();
    /// Whether it has a QEMU (proven to be its own); the QEMU figures below
    /// are 0 without one.
    fn vman_vm_stats_has_qemu -> number<bool> = |v| v.pid.is_some();
    /// Its QEMU's pid, else 0.
    fn vman_vm_stats_pid -> number<u32> = |v| v.pid.unwrap_or(0);
    /// User plus system CPU time its QEMU used since it started, in milliseconds.
    fn vman_vm_stats_cpu_time_ms -> number<u64> = |v| v.cpu_time_ms.unwrap_or(0);
    /// Its QEMU's CPU use over the sample, in percent of one CPU.
    fn vman_vm_stats_cpu_percent -> number<f64> = |v| v.cpu_percent.unwrap_or(0.0);
    /// Its QEMU's resident memory, in bytes.
    fn vman_vm_stats_rss_bytes -> number<u64> = |v| v.rss_bytes.unwrap_or(0);
    /// Host disk space its own files take (disks, seed, UEFI variables), in
    /// allocated bytes.
    fn vman_vm_stats_disk_bytes -> number<u64> = |v| v.disk_bytes;
}

record! {
    /// Whether the host can run the state directory's VMs as its settings
    /// say; immutable, thread-safe.
    pub struct VmanHostHealth(health) from HostHealth;
    /// True when every required check passed.
    fn vman_host_health_ok -> number<bool> = |h| h.ok;
    /// How many checks there are; see `vman_host_health_check`.
    fn vman_host_health_check_count -> number<usize> = |h| h.checks.len();
    /// Check `index`, in a fixed order: qemu, qemu_img, accel, bridge,
    /// dnsmasq, ovmf, state_dir.
    fn vman_host_health_check -> record_at<VmanHealthCheck> = |h| h.checks.iter().cloned();
    free vman_host_health_free;
}

record! {
    /// One check of a `VmanHostHealth`, borrowed from it; immutable,
    /// thread-safe.
    pub struct VmanHealthCheck(check) from HealthCheck;
    /// What was checked: "qemu", "qemu_img", "accel", "bridge", "dnsmasq",
    /// "ovmf" or "state_dir".
    fn vman_health_check_name -> text = |c| c.name;
    /// Whether it is usable.
    fn vman_health_check_ok -> number<bool> = |c| c.ok;
    /// Whether the directory's settings and VMs need it.
    fn vman_health_check_required -> number<bool> = |c| c.required;
    /// What was found (a version, a path), or why it is not usable.
    fn vman_health_check_detail -> text = |c| &c.detail;
    /// How to fix it; NULL when it is usable.
    fn vman_health_check_fix -> optional_text = |c| c.fix.as_ref();
}

/// The host's CPU, memory and the state directory's disk, and what each
/// VM's QEMU uses. Waits out a CPU sample of about 200 ms.
///
/// `out` must not be NULL. On success `*out` is the stats, owned by the
/// caller (free them with `vman_host_stats_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE,
/// VMAN_STATUS_IO (a /proc file or the filesystem could not be read).
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_host_stats(manager: *const VmanManager, out: *mut *mut VmanHostStats) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.host_stats()?.into())) }
}

/// Checks whether QEMU, qemu-img, the accelerator, bridging, dnsmasq, OVMF
/// and the state directory are usable; a failed check says why and how to
/// fix it. Runs the programs' version commands (and, for accel "auto", the
/// KVM probe once per host boot).
///
/// `out` must not be NULL. On success `*out` is the report, owned by the
/// caller (free it with `vman_host_health_free`).
///
/// Fails with VMAN_STATUS_NULL_PARAMETER, VMAN_STATUS_DATABASE.
///
/// Thread-safe: `manager` may be used by other threads at once.
///
/// # Safety
/// Every pointer that is not NULL is valid, as the conventions say.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vman_host_health(manager: *const VmanManager, out: *mut *mut VmanHostHealth) -> VmanStatus {
    // SAFETY: every pointer is NULL or valid, per this function's contract.
    unsafe { new_handle(out, || Ok(guard::handle(manager, "manager")?.inner.host_health()?.into())) }
}
