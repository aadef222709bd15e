//! The reconciler: makes the store true to what is actually running.
//!
//! It runs when a manager opens (which is how a new process adopts VMs that
//! outlived the one that started them) and whenever the embedder asks. It
//! never signals a process it has not proven to be the VM's QEMU.

use std::collections::HashMap;
use std::fs;

use serde::Serialize;
use serde_json::json;

use crate::error::Result;
use crate::lifecycle::ExitCause;
use crate::manager::{Inner, Manager};
use crate::runtime::process::RunPaths;
use crate::state::VmState;
use crate::store::{self, ProcessFacts};
use crate::vm::Vm;

/// One difference between the store and reality, and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The VM's name, or the run directory's name for an unknown one.
    pub vm: String,
    pub found: String,
    pub action: String,
}

/// What one reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub drifts: Vec<Drift>,
    /// VMs whose running QEMU this manager now supervises.
    pub adopted: Vec<String>,
}

impl Manager {
    /// Compares the store with the processes and run files, repairs what
    /// it can, and reports every drift.
    pub fn reconcile(&self) -> Result<ReconcileReport> {
        let inner = &self.inner;
        let mut report = ReconcileReport::default();
        for vm in inner.store.read(|tx| store::vms_with_process(tx))? {
            // An operation in flight on this VM will settle it itself.
            let Ok(_lock) = inner.runtime.try_lock_vm(&vm.id) else { continue };
            let Some(vm) = inner.store.read(|tx| store::vm_by_id(tx, &vm.id))? else { continue };
            if vm.state.has_process() {
                inner.reconcile_process(&vm, &mut report)?;
            }
        }
        inner.reconcile_run_dirs(&mut report)?;
        for drift in &report.drifts {
            log::info!("reconcile: {}: {}; {}", drift.vm, drift.found, drift.action);
        }
        Ok(report)
    }
}

impl Inner {
    fn reconcile_process(&self, vm: &Vm, report: &mut ReconcileReport) -> Result<()> {
        let mut drift = |found: String, action: &str| report.drifts.push(Drift { vm: vm.name.clone(), found, action: action.to_string() });
        let Some((pid, pidfd)) = self.open_qemu(vm) else {
            let paths = self.runtime.paths(&vm.id);
            let cause = match vm.state {
                // A start that never got QEMU running: record the failure.
                VmState::Starting => ExitCause::Killed,
                _ if paths.pidfile.exists() => ExitCause::Killed,
                _ => ExitCause::Clean,
            };
            let to = self.settle_exit(&vm.id, vm.pid.unwrap_or(0), cause)?;
            let to = to.map_or("left as is".to_string(), |s| format!("recorded {s}"));
            drift(format!("recorded {} but its QEMU is gone", vm.state), &to);
            return Ok(());
        };
        let status = self.qmp(vm).and_then(|mut q| {
            q.query_status().map_err(|source| crate::Error::Qmp { vm: vm.name.clone(), command: "query-status", source })
        });
        let qemu_state = match &status {
            Ok(s) if s.running => VmState::Running,
            Ok(_) => VmState::Paused,
            Err(e) => {
                // Alive but not answering: supervise it and let the user decide.
                drift(format!("QEMU {pid} does not answer QMP ({})", e.full_message()), "watching it");
                self.watch(vm, pid, pidfd)?;
                return Ok(());
            }
        };
        match vm.state {
            VmState::Stopping => {
                // Someone asked for a stop and crashed before it finished.
                drift("stuck in stopping with QEMU still running".into(), "finished the stop");
                let _ = self.qmp(vm).map(|mut q| q.quit());
                if !pidfd.wait(std::time::Duration::from_secs(2)).unwrap_or(false) {
                    let _ = pidfd.kill(libc::SIGKILL);
                    let _ = pidfd.wait(std::time::Duration::from_secs(2));
                }
                self.settle_exit(&vm.id, pid, ExitCause::Clean)?;
                return Ok(());
            }
            from if from != qemu_state => {
                drift(format!("recorded {from} but QEMU is {qemu_state}"), &format!("recorded {qemu_state}"));
                let facts = ProcessFacts { pid: Some(pid), ..Default::default() };
                self.transition(vm, from, qemu_state, &facts, json!({"reason": "reconciled with QEMU", "pid": pid}))?;
            }
            _ => {}
        }
        self.watch(vm, pid, pidfd)?;
        report.adopted.push(vm.name.clone());
        Ok(())
    }

    /// Run directories of VMs that have no process: stale pidfiles and
    /// sockets go (the serial log stays for the VM's owner); directories of
    /// deleted or unknown VMs go entirely. A QEMU still running for a VM the
    /// store says is down is stopped, once proven to be that VM's.
    fn reconcile_run_dirs(&self, report: &mut ReconcileReport) -> Result<()> {
        let vms: HashMap<String, (String, bool)> = self
            .store
            .read(|tx| store::all_vm_ids(tx))?
            .into_iter()
            .map(|(id, deleted)| (RunPaths::new(&self.runtime.run_root, &id).dir.to_string_lossy().into_owned(), (id, deleted)))
            .collect();
        let Ok(entries) = fs::read_dir(&self.runtime.run_root) else { return Ok(()) };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = entry.path();
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            match vms.get(&*dir.to_string_lossy()) {
                Some((id, false)) => {
                    let Some(vm) = self.store.read(|tx| store::vm_by_id(tx, id))? else { continue };
                    if vm.state.has_process() {
                        continue;
                    }
                    let paths = self.runtime.paths(id);
                    if let Some((pid, pidfd)) = self.open_qemu(&vm) {
                        report.drifts.push(Drift { vm: vm.name.clone(), found: format!("recorded {} but QEMU {pid} runs", vm.state), action: "stopped it".into() });
                        let _ = self.qmp(&vm).map(|mut q| q.quit());
                        if !pidfd.wait(std::time::Duration::from_secs(2)).unwrap_or(false) {
                            let _ = pidfd.kill(libc::SIGKILL);
                        }
                        paths.clean();
                    } else if paths.pidfile.exists() || paths.qmp.exists() || paths.serial_sock.exists() {
                        report.drifts.push(Drift { vm: vm.name.clone(), found: "stale run files".into(), action: "removed them".into() });
                        paths.clean();
                    }
                }
                Some((_, true)) | None => {
                    report.drifts.push(Drift { vm: dir_name, found: "run directory of a deleted or unknown VM".into(), action: "removed it".into() });
                    let _ = fs::remove_dir_all(&dir);
                }
            }
        }
        Ok(())
    }
}
