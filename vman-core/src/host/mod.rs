//! The host as vman sees it: [`HostStats`] (CPU, memory, the state
//! directory's disk, and what each VM's QEMU uses) and [`HostHealth`]
//! (whether QEMU, qemu-img, acceleration, bridging, dnsmasq, OVMF and the
//! state directory are usable). Both are records; nothing is printed.

pub(crate) mod health;
pub(crate) mod stats;

use std::path::PathBuf;

use crate::error::Result;
use crate::host::health::{HealthCheck, HostHealth};
use crate::host::stats::{HostStats, Sample, VmStats};
use crate::manager::Manager;
use crate::runtime::Accel;
use crate::storage::model::Firmware;
use crate::store;
use crate::vm::model::VmFilter;

impl Manager {
    /// The host's CPU (count, load, busy share), memory, the space of the
    /// state directory's filesystem, and for every live VM what its QEMU
    /// uses (CPU time and share, resident memory) and what its files take
    /// on disk. CPU shares are measured over
    /// [`STATS_SAMPLE`](crate::STATS_SAMPLE), which this call waits out.
    /// Reading another process's figures needs the right to read its
    /// `/proc` entries (root, or QEMU running as this process's user).
    pub fn host_stats(&self) -> Result<HostStats> {
        let ctx = &*self.inner;
        let vms = ctx.store().read(|tx| {
            store::list_vms(tx, &VmFilter::default())?
                .into_iter()
                .map(|vm| {
                    let files: Vec<PathBuf> = store::disks_of_vm(tx, &vm.id)?.into_iter().map(|d| PathBuf::from(d.path)).collect();
                    Ok((vm, files))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        // Each QEMU proven to be its VM's (a pidfd holds it) before its
        // figures count.
        let qemus: Vec<Option<(u32, crate::sys::Pidfd)>> =
            vms.iter().map(|(vm, _)| vm.state.has_process().then(|| crate::vm::qemu::open_qemu(ctx, vm)).flatten()).collect();
        let sample = Sample::start()?;
        let before: Vec<Option<u64>> =
            qemus.iter().map(|q| q.as_ref().and_then(|(pid, _)| stats::process_usage(*pid)).map(|(ticks, _)| ticks)).collect();
        let (cpu_busy_percent, took) = sample.finish()?;
        let hz = stats::ticks_per_second();
        let mut out = Vec::with_capacity(vms.len());
        for (((vm, mut files), qemu), before) in vms.into_iter().zip(qemus).zip(before) {
            let usage = qemu.as_ref().filter(|(_, pidfd)| pidfd.is_alive()).and_then(|(pid, _)| stats::process_usage(*pid));
            let cpu_percent = match (before, usage) {
                (Some(before), Some((after, _))) => {
                    Some(after.saturating_sub(before) as f64 * 100.0 / hz as f64 / took.as_secs_f64().max(f64::EPSILON))
                }
                _ => None,
            };
            files.push(crate::guest::seed_path(ctx, &vm.id));
            files.push(crate::storage::boot::uefi_vars_path(ctx, &vm.id));
            out.push(VmStats {
                pid: usage.and(qemu.map(|(pid, _)| pid)),
                cpu_time_ms: usage.map(|(ticks, _)| ticks * 1000 / hz),
                cpu_percent,
                rss_bytes: usage.map(|(_, rss)| rss),
                disk_bytes: files.iter().map(|f| stats::allocated_bytes(f)).sum(),
                name: vm.name,
                id: vm.id,
                state: vm.state,
            });
        }
        let [load_1, load_5, load_15] = stats::load_average()?;
        let (memory_total_bytes, memory_available_bytes) = stats::memory()?;
        let (disk_total_bytes, disk_available_bytes) = stats::disk_space(ctx.state_dir())?;
        Ok(HostStats {
            at_ms: store::now_ms(),
            sample_ms: took.as_millis() as u64,
            cpu_count: stats::cpu_count(),
            cpu_busy_percent,
            load_1,
            load_5,
            load_15,
            memory_total_bytes,
            memory_available_bytes,
            disk_total_bytes,
            disk_available_bytes,
            vms: out,
        })
    }

    /// Whether this host can run the state directory's VMs as its
    /// [`Settings`](crate::Settings) say: the QEMU binary runs (and its
    /// version), qemu-img runs, the accelerator (for `auto`, what the
    /// probe chose; it runs once per host boot), bridging (CAP_NET_ADMIN
    /// and `/dev/net/tun`), dnsmasq, OVMF, and whether the state directory
    /// is writable. A failed check says why and how to fix it; `ok` is
    /// false only when a check the settings need failed (bridging and
    /// dnsmasq count in bridged mode, OVMF with a UEFI VM or image).
    pub fn host_health(&self) -> Result<HostHealth> {
        let ctx = &*self.inner;
        let settings = crate::settings::apply::read(ctx)?;
        let uefi = ctx.store().read(|tx| {
            let vms = store::list_vms(tx, &VmFilter::default())?;
            let images = store::list_images(tx)?;
            Ok(vms.iter().any(|v| v.firmware == Firmware::Uefi) || images.iter().any(|i| i.firmware == Firmware::Uefi))
        })?;
        let qemu = health::check_qemu(&settings.qemu_binary);
        let resolved = (settings.accel == Accel::Auto).then(|| ctx.runtime().resolve_accel(Accel::Auto, &settings.qemu_binary));
        let available = stats::disk_space(ctx.state_dir()).ok().map(|(_, available)| available);
        let checks: Vec<HealthCheck> = vec![
            qemu,
            health::check_qemu_img(),
            health::check_accel(settings.accel, resolved, ctx.runtime().kvm_usable()),
            health::check_bridge(settings.network),
            health::check_dnsmasq(&settings.dnsmasq_binary, settings.network),
            health::check_ovmf(uefi),
            health::check_state_dir(ctx.state_dir(), available),
        ];
        Ok(HostHealth::new(checks))
    }
}
