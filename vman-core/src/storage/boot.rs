//! What a VM boots from, checked before anything is recorded, and the
//! files its QEMU needs at start (its disks, the UEFI variable store, the
//! cloud-init seed).

use std::path::{Path, PathBuf};

use crate::context::Inner;
use crate::error::{Error, Result};
use crate::runtime::argv::{Storage, Uefi};
use crate::storage::model::{Disk, DiskState, Firmware};
use crate::store;
use crate::vm::model::Vm;

/// Where Debian's `ovmf` package puts the firmware (4 MiB flash layout).
pub(crate) const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub(crate) const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The VM's disks, checked for a start: every one attached (none left
/// mid-operation), and something to boot: a kernel, a disk or a CD-ROM.
pub(crate) fn check_bootable(ctx: &Inner, vm: &Vm) -> Result<Vec<Disk>> {
    let disks = ctx.store().read(|tx| store::disks_of_vm(tx, &vm.id))?;
    if let Some(disk) = disks.iter().find(|d| d.state != DiskState::Attached) {
        return Err(Error::DiskState {
            disk: disk.name.clone(),
            state: disk.state,
            vm: Some(vm.name.clone()),
            action: "start its VM",
            needs: "every disk of the VM attached (run reconcile after a crash)",
        });
    }
    if let Some(iso) = &vm.cdrom {
        // Gone or replaced since it was put in: refuse before recording a start.
        crate::storage::path::open_source("CD-ROM image", iso)?;
    }
    if vm.boot.is_none() && disks.is_empty() && vm.cdrom.is_none() {
        return Err(Error::InvalidState {
            vm: vm.name.clone(),
            state: vm.state,
            action: "start",
            needs: "a boot source: a kernel, a disk or a CD-ROM",
        });
    }
    if vm.firmware == Firmware::Uefi {
        for file in [OVMF_CODE, OVMF_VARS] {
            if !Path::new(file).is_file() {
                return Err(Error::Unsupported { what: format!("UEFI firmware: {file} is missing (apt-get install ovmf)"), source: None });
            }
        }
    }
    Ok(disks)
}

/// The files QEMU needs for `vm` besides its NICs, made ready for it.
pub(crate) fn prepare(ctx: &Inner, vm: &Vm, disks: Vec<Disk>) -> Result<Storage> {
    let uefi = match vm.firmware {
        Firmware::Bios => None,
        Firmware::Uefi => Some(Uefi { code: PathBuf::from(OVMF_CODE), vars: uefi_vars(ctx, vm)? }),
    };
    let seed = if vm.cloud_init { Some(crate::guest::seed_for(ctx, vm)?) } else { None };
    Ok(Storage { disks, seed, uefi })
}

/// The VM's own UEFI variable store, copied from OVMF's template at its
/// first start and kept (boot entries the guest writes survive restarts).
fn uefi_vars(ctx: &Inner, vm: &Vm) -> Result<PathBuf> {
    let vars = uefi_vars_path(ctx, &vm.id);
    if !vars.exists() {
        let partial = vars.with_extension("fd.part");
        std::fs::copy(OVMF_VARS, &partial).map_err(|e| Error::io("copy the UEFI variable store to", &partial, e))?;
        std::fs::rename(&partial, &vars).map_err(|e| Error::io("rename", &partial, e))?;
    }
    ctx.runtime().share_with_qemu(&vars, true)?;
    Ok(vars)
}

/// Where a VM's own UEFI variable store lives.
pub(crate) fn uefi_vars_path(ctx: &Inner, vm_id: &str) -> PathBuf {
    ctx.state_dir().join("nvram").join(format!("{vm_id}.fd"))
}

/// Removes what a deleted VM's start made (its UEFI variables and seed,
/// and a seed's temporary file that a killed start left).
pub(crate) fn forget(ctx: &Inner, vm_id: &str) {
    let _ = std::fs::remove_file(uefi_vars_path(ctx, vm_id));
    let seeds = ctx.state_dir().join("seeds");
    let _ = std::fs::remove_file(seeds.join(format!("{vm_id}.img")));
    let partial = format!(".{vm_id}.img.");
    for entry in std::fs::read_dir(&seeds).into_iter().flatten().flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(&partial) && n.ends_with(".tmp")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
