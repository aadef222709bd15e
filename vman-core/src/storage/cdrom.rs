//! The CD-ROM drive every VM has (on the q35 AHCI controller): insert an
//! ISO, change it or eject it, live or for the next start.

use serde_json::json;

use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::runtime::argv::{CDROM_ID, CDROM_OPAQUE, cdrom_blockdev};
use crate::store;
use crate::vm::lifecycle::{lock_vm, vm_by_id};
use crate::vm::model::Vm;
use crate::vm::state::VmState;

impl Manager {
    /// Puts the ISO at `iso` in the VM's CD-ROM drive (`None`: ejects it).
    /// A running VM sees the change at once (the tray opens and closes);
    /// otherwise it holds from the next start.
    pub fn change_cdrom(&self, vm: &str, iso: Option<&str>) -> Result<Vm> {
        let opened = iso.map(|path| crate::storage::path::open_source("CD-ROM image", path)).transpose()?;
        let iso = opened.as_ref().map(|(path, _)| path.to_string_lossy().into_owned());
        let ctx = &*self.inner;
        let (_lock, vm) = lock_vm(ctx, vm)?;
        let live = match vm.state {
            VmState::Running | VmState::Paused => true,
            VmState::Created | VmState::Stopped | VmState::Error => false,
            state => {
                return Err(Error::InvalidState {
                    vm: vm.name,
                    state,
                    action: "change the CD-ROM",
                    needs: "a running, paused or stopped VM",
                });
            }
        };
        if iso.is_none() && vm.boot_from_cdrom {
            return Err(Error::invalid("CD-ROM", format!("VM {:?} boots from its CD-ROM; it cannot be left empty", vm.name)));
        }
        if iso.is_none() && vm.cdrom.is_none() {
            return Ok(vm); // already empty: nothing to do, nothing to record
        }
        if live {
            let mut qmp = crate::vm::qemu::qmp(ctx, &vm)?;
            let name = vm.name.clone();
            let fail = |command| {
                let vm = name.clone();
                move |source| Error::Qmp { vm, command, source }
            };
            qmp.execute("blockdev-open-tray", Some(json!({"id": CDROM_ID, "force": true}))).map_err(fail("blockdev-open-tray"))?;
            qmp.execute("blockdev-remove-medium", Some(json!({"id": CDROM_ID}))).map_err(fail("blockdev-remove-medium"))?;
            // The drive is empty now: say so at once, so a failure (or a
            // crash) before the new ISO is in never leaves the store naming
            // an ISO QEMU no longer has.
            if vm.cdrom.is_some() {
                ctx.store().write(|tx| store::set_cdrom(tx, &vm.id, ""))?;
            }
            // The node of an earlier ISO, if any, goes with it, and so do
            // the descriptors vman gave QEMU for it.
            let _ = qmp.execute("blockdev-del", Some(json!({"node-name": cdrom_blockdev("")["node-name"]})));
            let sets = qmp.execute("query-fdsets", None).map_err(fail("query-fdsets"))?;
            for set in sets.as_array().into_iter().flatten() {
                let ours = set["fds"].as_array().into_iter().flatten().any(|fd| fd["opaque"].as_str() == Some(CDROM_OPAQUE));
                if ours {
                    let _ = qmp.execute("remove-fd", Some(json!({"fdset-id": set["fdset-id"]})));
                }
            }
            if let Some((_, file)) = &opened {
                // QEMU gets the open file: it needs no access to its path.
                let added = qmp
                    .execute_with_fd("add-fd", Some(json!({"opaque": CDROM_OPAQUE})), std::os::fd::AsFd::as_fd(file))
                    .map_err(fail("add-fd"))?;
                let set =
                    added["fdset-id"].as_u64().ok_or_else(|| Error::Qemu { message: format!("add-fd answered {added}"), source: None })?;
                let node_def = cdrom_blockdev(&format!("/dev/fdset/{set}"));
                qmp.execute("blockdev-add", Some(node_def.clone())).map_err(fail("blockdev-add"))?;
                let node = node_def["node-name"].clone();
                qmp.execute("blockdev-insert-medium", Some(json!({"id": CDROM_ID, "node-name": node})))
                    .map_err(fail("blockdev-insert-medium"))?;
            }
            qmp.execute("blockdev-close-tray", Some(json!({"id": CDROM_ID}))).map_err(fail("blockdev-close-tray"))?;
        }
        ctx.write(|w| {
            store::set_cdrom(w.tx, &vm.id, iso.as_deref().unwrap_or(""))?;
            let action = if iso.is_some() { "cdrom_inserted" } else { "cdrom_ejected" };
            w.record(ObjectKind::Vm, &vm.id, &vm.name, action, json!({"iso": iso, "live": live}))
        })?;
        vm_by_id(ctx, &vm.id, &vm.name)
    }
}
