//! A running VM's disks over QMP: QEMU's names for them, hot-plug
//! (`blockdev-add`, then `device_add` on a free PCIe root port), unplug
//! (`device_del`, then the guest's release, `DEVICE_DELETED`, then
//! `blockdev-del`), live growth, and what QEMU has plugged right now.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cancel::{CHECK_INTERVAL, Cancel};
use crate::context::Inner;
use crate::error::{Error, Result};
use crate::runtime::qmp::QmpClient;
use crate::storage::devices::{blockdev, device, device_id, node_name};
use crate::storage::model::Disk;
use crate::vm::model::Vm;

fn qmp_error<'a>(vm: &'a Vm, command: &'static str) -> impl FnOnce(crate::runtime::qmp::QmpError) -> Error + 'a {
    move |source| Error::Qmp { vm: vm.name.clone(), command, source }
}

/// Plugs `disk` into the running `vm` at `slot`. On failure nothing stays
/// plugged: a block node added before a failed `device_add` is removed.
pub(crate) fn plug(ctx: &Inner, vm: &Vm, disk: &Disk, slot: u32) -> Result<()> {
    let mut qmp = crate::vm::qemu::qmp(ctx, vm)?;
    qmp.execute("blockdev-add", Some(blockdev(disk))).map_err(qmp_error(vm, "blockdev-add"))?;
    if let Err(source) = qmp.execute("device_add", Some(device(disk, slot, None))) {
        let _ = qmp.execute("blockdev-del", Some(json!({"node-name": node_name(disk.id)})));
        return Err(Error::Qmp { vm: vm.name.clone(), command: "device_add", source });
    }
    Ok(())
}

/// Asks the guest to release `disk` and waits up to `timeout` for it. On
/// timeout the device stays (the guest may still let go later: whoever
/// looks next, a detach or the reconciler, finishes the job) and the error
/// says the guest did not release it. A cancel during the wait leaves the
/// same as a timeout, and says `Cancelled`.
pub(crate) fn unplug(ctx: &Inner, vm: &Vm, disk: &Disk, timeout: Duration, cancel: Option<&Cancel>) -> Result<()> {
    let mut qmp = crate::vm::qemu::qmp(ctx, vm)?;
    let id = device_id(disk.id);
    let started = Instant::now();
    if plugged_devices(&mut qmp, vm)?.contains(&id) {
        let requested = match qmp.execute("device_del", Some(json!({"id": id}))) {
            Ok(_) => true,
            // Gone between the look and the request: the guest let go.
            Err(_) if !plugged_devices(&mut qmp, vm)?.contains(&id) => false,
            // QEMU refuses a second request while an earlier, timed-out
            // detach's is pending (the device is still there, as just
            // checked): that request stands, so wait for the guest again.
            Err(crate::runtime::qmp::QmpError::Command { ref class, .. }) if class == "GenericError" => true,
            Err(source) => return Err(Error::Qmp { vm: vm.name.clone(), command: "device_del", source }),
        };
        if requested {
            wait_deleted(&mut qmp, vm, disk, &id, started, timeout, cancel)?;
        }
    }
    remove_node(&mut qmp, vm, disk.id)
}

/// Waits for the guest to release device `id` (QEMU's `DEVICE_DELETED`).
/// QMP events arrive through a buffered reader, not a descriptor to poll
/// beside the token, so a cancel is looked at between slices of
/// [`CHECK_INTERVAL`].
fn wait_deleted(
    qmp: &mut QmpClient,
    vm: &Vm,
    disk: &Disk,
    id: &str,
    started: Instant,
    timeout: Duration,
    cancel: Option<&Cancel>,
) -> Result<()> {
    let deadline = started + timeout;
    let what = || {
        format!(
            "the guest of VM {:?} to release disk {:?}; the disk stays attached (the request stands: if the guest lets go \
             later, the next detach or reconcile completes it)",
            vm.name, disk.name
        )
    };
    loop {
        crate::cancel::check(cancel, what)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = if cancel.is_some() { left.min(CHECK_INTERVAL) } else { left };
        let event = qmp.wait_event("DEVICE_DELETED", slice).map_err(qmp_error(vm, "device_del"))?;
        match event {
            Some(e) if e.data.get("device").and_then(Value::as_str) == Some(id) => break,
            Some(_) => continue, // the virtio backend's own event, or another device's
            None if slice < left => continue,
            // The event may have come before this connection was made.
            None if !plugged_devices(qmp, vm)?.contains(id) => break,
            None => {
                return Err(Error::Timeout {
                    what: format!(
                        "the guest of VM {:?} to release disk {:?}; it did not, so the disk stays attached \
                         (the request stands: if the guest lets go later, the next detach or reconcile completes it)",
                        vm.name, disk.name
                    ),
                    waited_ms: started.elapsed().as_millis() as u64,
                    source: None,
                });
            }
        }
    }
    Ok(())
}

/// How long a block node may stay busy after its device left: QEMU lets go
/// of it when the device is finalized, a moment after the guest released it.
const NODE_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Removes a disk's block node if QEMU still has it.
pub(crate) fn remove_node(qmp: &mut QmpClient, vm: &Vm, disk_id: i64) -> Result<()> {
    let started = Instant::now();
    while plugged_nodes(qmp, vm)?.contains(&node_name(disk_id)) {
        match qmp.execute("blockdev-del", Some(json!({"node-name": node_name(disk_id)}))) {
            Ok(_) => break,
            // Still held by a device on its way out: try again shortly.
            Err(crate::runtime::qmp::QmpError::Command { ref class, .. })
                if class == "GenericError" && started.elapsed() < NODE_RELEASE_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => return Err(Error::Qmp { vm: vm.name.clone(), command: "blockdev-del", source }),
        }
    }
    Ok(())
}

/// Grows a plugged disk; the guest sees the new size at once.
pub(crate) fn block_resize(ctx: &Inner, vm: &Vm, disk: &Disk, size_bytes: u64) -> Result<()> {
    let mut qmp = crate::vm::qemu::qmp(ctx, vm)?;
    qmp.execute("block_resize", Some(json!({"node-name": node_name(disk.id), "size": size_bytes})))
        .map_err(qmp_error(vm, "block_resize"))?;
    Ok(())
}

/// The ids of the disk devices QEMU has plugged now (from `query-block`,
/// whose `qdev` is `/machine/peripheral/<id>/virtio-backend`).
pub(crate) fn plugged_devices(qmp: &mut QmpClient, vm: &Vm) -> Result<BTreeSet<String>> {
    let blocks = qmp.execute("query-block", None).map_err(qmp_error(vm, "query-block"))?;
    Ok(blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("qdev").and_then(Value::as_str))
        .filter_map(|qdev| qdev.strip_prefix("/machine/peripheral/"))
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
        .filter(|id| id.starts_with("vd"))
        .collect())
}

/// The names of the top-level disk block nodes QEMU has now.
pub(crate) fn plugged_nodes(qmp: &mut QmpClient, vm: &Vm) -> Result<BTreeSet<String>> {
    let nodes = qmp.execute("query-named-block-nodes", Some(json!({"flat": true}))).map_err(qmp_error(vm, "query-named-block-nodes"))?;
    Ok(nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("node-name").and_then(Value::as_str))
        .filter(|n| n.starts_with("disk") && !n.contains('-'))
        .map(str::to_string)
        .collect())
}
