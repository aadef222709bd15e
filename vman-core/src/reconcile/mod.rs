//! The reconciler: makes the store true to what is actually running.
//!
//! It runs when a manager opens (which is how a new process adopts VMs that
//! outlived the one that started them) and whenever the embedder asks. It
//! never signals a process it has not proven to be the VM's QEMU.

mod batch;
pub(crate) mod report;
mod storage;

use std::collections::HashMap;
use std::fs;

use crate::context::Inner;
use crate::error::Result;
use crate::manager::Manager;
use crate::runtime::process::Lineage;
use crate::runtime::process::RunPaths;
use crate::store::{self};
use crate::vm::qemu;
use crate::vm::recover;
pub use report::{Drift, ReconcileReport};

impl Manager {
    /// Compares the store with the processes and run files, repairs what
    /// it can, and reports every drift.
    pub fn reconcile(&self) -> Result<ReconcileReport> {
        let inner = &self.inner;
        // Another manager may have changed the directory's settings.
        crate::settings::apply::refresh(inner)?;
        let mut report = ReconcileReport::default();
        for vm in inner.store().read(|tx| store::vms_with_process(tx))? {
            // An operation in flight on this VM will settle it itself.
            let Ok(_lock) = inner.runtime().try_lock_vm(&vm.id) else { continue };
            let Some(vm) = inner.store().read(|tx| store::vm_by_id(tx, &vm.id))? else { continue };
            if vm.state.has_process() {
                recover::reconcile_locked(inner, &vm, &mut report)?;
            }
        }
        // Before storage: a dead batch's boot disks are removed with it,
        // not made by the storage pass first.
        batch::reconcile_batches(inner, &mut report)?;
        storage::reconcile_storage(inner, &mut report)?;
        reconcile_run_dirs(inner, &mut report)?;
        reconcile_guest_files(inner, &mut report)?;
        reconcile_host_network(inner, &mut report)?;
        report.log();
        Ok(report)
    }
}

/// Host interfaces, their isolation rules and DHCP servers: what no
/// running VM needs goes; what a running VM needs and is missing is made
/// again. Only interfaces vman recorded (and their rules) are ever touched.
fn reconcile_host_network(ctx: &Inner, report: &mut ReconcileReport) -> Result<()> {
    use crate::net::mode::has_net_admin;
    use crate::net::plumbing::{bridge_name, is_isolated};
    let links = ctx.store().read(|tx| store::all_links(tx))?;
    if links.is_empty() {
        return Ok(());
    }
    if !has_net_admin() {
        report.drifts.push(Drift {
            vm: "-".into(),
            found: format!("{} recorded host interfaces", links.len()),
            action: "not checked: needs root or CAP_NET_ADMIN".into(),
        });
        return Ok(());
    }
    let mut nl = crate::net::linux::Netlink::open()?;
    let mut drifts = Vec::new();
    let owner = ctx.runtime().values().qemu_creds.as_ref().map(|c| c.uid);
    // Host work under each network's lock, outside any transaction; each
    // link is re-read under the lock, since a start may have moved on.
    let mut networks: Vec<i64> = Vec::new();
    for link in links.iter().filter(|l| !l.is_bridge) {
        let _net_lock = ctx.runtime().lock_network(link.network_id)?;
        let (still, vm) = ctx.store().read(|tx| {
            let vm = match &link.vm_id {
                Some(id) => store::vm_by_id(tx, id)?,
                None => None,
            };
            Ok((store::link(tx, &link.name)?, vm))
        })?;
        if still.is_none() {
            continue;
        }
        let needed = vm.as_ref().is_some_and(|v| v.state.has_process());
        let who = vm.as_ref().map_or_else(|| link.name.clone(), |v| v.name.clone());
        if !needed {
            nl.ensure_tap_absent(&link.name)?;
            ctx.write(|w| store::forget_link(w.tx, &link.name))?;
            drifts.push(Drift { vm: who, found: format!("tap {} of a VM with no QEMU", link.name), action: "removed it".into() });
            if !networks.contains(&link.network_id) {
                networks.push(link.network_id);
            }
        } else if nl.link_by_name(&link.name)?.is_none() {
            let network = ctx.store().read(|tx| store::list_networks(tx))?.into_iter().find(|n| n.id == link.network_id);
            if let Some(network) = network {
                nl.ensure_tap_on_bridge(&link.name, &bridge_name(network.vlan), owner)?;
                drifts.push(Drift {
                    vm: who,
                    found: format!("tap {} of a running VM is missing", link.name),
                    action: "made it again on its bridge (QEMU reconnects at its next start)".into(),
                });
            }
        }
    }
    for link in links.iter().filter(|l| l.is_bridge) {
        if !networks.contains(&link.network_id) {
            networks.push(link.network_id);
        }
    }
    for network_id in networks {
        let _net_lock = ctx.runtime().lock_network(network_id)?;
        if ctx.net().release_network_if_idle(&mut nl, network_id)? {
            drifts.push(Drift {
                vm: "-".into(),
                found: format!("bridge and DHCP of network {network_id} with no running VM"),
                action: "removed them".into(),
            });
        }
    }
    // Networks with running VMs: bridge, its isolation rules and DHCP
    // server present.
    for network in ctx.store().read(|tx| store::list_networks(tx))? {
        if ctx.store().read(|tx| store::running_vms_on(tx, network.id))? == 0 {
            continue;
        }
        let bridge = bridge_name(network.vlan);
        let recorded = ctx.store().read(|tx| store::link(tx, &bridge))?.is_some();
        if !recorded {
            continue; // not bridged (user or isolated mode)
        }
        let (found, action) = if nl.link_by_name(&bridge)?.is_none() || ctx.net().dhcp(network.id).running_pid().is_none() {
            (format!("bridge or DHCP of network {} missing", network.name), "made them again")
        } else if !is_isolated(&mut nl, &bridge)? {
            (
                format!("isolation rule of bridge {bridge} (network {}) missing: its VLAN could be routed to others", network.name),
                "made it again",
            )
        } else {
            continue;
        };
        let _lock = ctx.runtime().lock_network(network.id)?;
        ctx.net().ensure_network_up(&mut nl, &network)?;
        drifts.push(Drift { vm: "-".into(), found, action: action.into() });
    }
    report.drifts.extend(drifts);
    Ok(())
}

/// Seeds and UEFI variable stores of deleted VMs (a delete killed after
/// its commit, before its cleanup): removed. Only ids recorded deleted: a
/// file of an id not yet read may be a VM created meanwhile.
fn reconcile_guest_files(ctx: &Inner, report: &mut ReconcileReport) -> Result<()> {
    let deleted: std::collections::HashSet<String> =
        ctx.store().read(|tx| store::all_vm_ids(tx))?.into_iter().filter(|(_, deleted)| *deleted).map(|(id, _)| id).collect();
    for (dir, suffix) in [("seeds", ".img"), ("nvram", ".fd")] {
        let Ok(entries) = fs::read_dir(ctx.state_dir().join(dir)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `<id>.img`, or a killed write's `.<id>.img.<pid>.<n>.tmp`.
            let id = name.trim_start_matches('.').split(suffix).next().unwrap_or_default();
            if deleted.contains(id) {
                let _ = fs::remove_file(entry.path());
                report.drifts.push(Drift {
                    vm: id.to_string(),
                    found: format!("{dir}/{name} of a deleted VM"),
                    action: "removed it".into(),
                });
            }
        }
    }
    Ok(())
}

/// Run directories of VMs that have no process: stale pidfiles and
/// sockets go (the serial log stays for the VM's owner); directories of
/// deleted or unknown VMs go entirely. A QEMU still running for a VM the
/// store says is down is stopped, once proven to be that VM's.
fn reconcile_run_dirs(ctx: &Inner, report: &mut ReconcileReport) -> Result<()> {
    let vms: HashMap<String, (String, bool)> = ctx
        .store()
        .read(|tx| store::all_vm_ids(tx))?
        .into_iter()
        .map(|(id, deleted)| (RunPaths::new(&ctx.runtime().run_root, &id).dir.to_string_lossy().into_owned(), (id, deleted)))
        .collect();
    let Ok(entries) = fs::read_dir(&ctx.runtime().run_root) else { return Ok(()) };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        // VM run directories are named by 16 hex digits; the others
        // (DHCP servers' `net-<id>`) belong to the network reconciler.
        if dir_name.len() != 16 || !dir_name.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        match vms.get(&*dir.to_string_lossy()) {
            Some((id, false)) => {
                // Never race an operation on the VM (a start in another
                // process makes its run files under this lock).
                let Ok(_lock) = ctx.runtime().try_lock_vm(id) else { continue };
                let Some(vm) = ctx.store().read(|tx| store::vm_by_id(tx, id))? else { continue };
                if vm.state.has_process() {
                    continue;
                }
                let paths = ctx.runtime().paths(id);
                if Lineage::is_held(&ctx.runtime().lineage_path(id))? && qemu::open_qemu(ctx, &vm).is_none() {
                    let ended = qemu::end_lineage(ctx, &vm);
                    report.drifts.push(Drift {
                        vm: vm.name.clone(),
                        found: format!("recorded {} but a launch of it runs", vm.state),
                        action: format!("ended {ended} process(es)"),
                    });
                    paths.clean();
                } else if let Some((pid, pidfd)) = qemu::open_qemu(ctx, &vm) {
                    report.drifts.push(Drift {
                        vm: vm.name.clone(),
                        found: format!("recorded {} but QEMU {pid} runs", vm.state),
                        action: "stopped it".into(),
                    });
                    // The same end as a force stop: SIGTERM, then SIGKILL if it lingers.
                    let _ = qemu::kill_qemu(&vm, &pidfd);
                    pidfd.reap();
                    qemu::end_lineage(ctx, &vm);
                    paths.clean();
                } else if paths.pidfile.exists() || paths.qmp.exists() || paths.serial_sock.exists() {
                    report.drifts.push(Drift { vm: vm.name.clone(), found: "stale run files".into(), action: "removed them".into() });
                    paths.clean();
                }
            }
            Some((_, true)) | None => {
                report.drifts.push(Drift {
                    vm: dir_name,
                    found: "run directory of a deleted or unknown VM".into(),
                    action: "removed it".into(),
                });
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
    // Lock files of deleted VMs (a crash between the delete and its
    // cleanup): nobody can be waiting on them for an operation that
    // matters, since every operation re-reads the VM by id.
    let deleted: Vec<String> = vms.values().filter(|(_, deleted)| *deleted).map(|(id, _)| id.clone()).collect();
    for id in deleted {
        let lineage = ctx.runtime().lineage_path(&id);
        let op_lock = lineage.with_extension("");
        if (op_lock.exists() || lineage.exists()) && !Lineage::is_held(&lineage)? {
            report.drifts.push(Drift { vm: id.clone(), found: "lock files of a deleted VM".into(), action: "removed them".into() });
            ctx.runtime().forget_vm(&id);
        }
    }
    Ok(())
}
