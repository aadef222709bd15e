//! Making one VM's record true to its processes, when no operation is in
//! flight on it (the caller holds its lock): adopting a proven QEMU,
//! finishing a start or stop whose caller died, settling a QEMU that is gone.

use serde_json::json;

use crate::context::Inner;
use crate::error::Result;
use crate::reconcile::report::{Drift, ReconcileReport};
use crate::runtime::process::{self, Lineage, Pidfd};
use crate::runtime::qmp::QmpClient;
use crate::store::ProcessFacts;
use crate::vm::model::Vm;
use crate::vm::qemu;
use crate::vm::qemu::{ExitCause, LAUNCH_TIMEOUT};
use crate::vm::state::VmState;

/// Makes the record of one VM that has (or should have) a QEMU true to
/// its processes. The caller holds the VM's lock, so no operation is in
/// flight on it: the lineage lock then says whether any process of a
/// launch of it is alive.
pub(crate) fn reconcile_locked(ctx: &Inner, vm: &Vm, report: &mut ReconcileReport) -> Result<()> {
    let lineage_alive = Lineage::is_held(&ctx.runtime().lineage_path(&vm.id))?;
    if vm.state == VmState::Starting && lineage_alive {
        return finish_interrupted_start(ctx, vm, report);
    }
    reconcile_process(ctx, vm, report)
}

/// The starter died while its QEMU was coming up (or while a wrapper
/// was about to `exec` it): the start was asked for, so finish it —
/// wait for QMP on the socket the starter made, prove the process, and
/// adopt it. If it does not come up in time, end the whole lineage.
fn finish_interrupted_start(ctx: &Inner, vm: &Vm, report: &mut ReconcileReport) -> Result<()> {
    let paths = ctx.runtime().paths(&vm.id);
    let qmp_error = |command: &'static str| move |source| crate::Error::Qmp { vm: vm.name.clone(), command, source };
    let adopted = (|| -> Result<(u32, Pidfd, bool)> {
        let mut qmp = QmpClient::connect(&paths.qmp, LAUNCH_TIMEOUT).map_err(qmp_error("connect"))?;
        let status = qmp.query_status().map_err(qmp_error("query-status"))?;
        let pid = vm
            .pid
            .or_else(|| paths.read_pid())
            .ok_or_else(|| crate::Error::Qemu { message: "QEMU answered but its pid is unknown".into(), source: None })?;
        let pidfd = Pidfd::open(pid).map_err(|e| crate::Error::io("open a pidfd on QEMU of", &vm.name, e))?;
        if !process::is_qemu_of(&pidfd, pid, &vm.id) {
            return Err(crate::Error::Qemu { message: format!("process {pid} is not this VM's QEMU"), source: None });
        }
        Ok((pid, pidfd, status.running))
    })();
    match adopted {
        Ok((pid, pidfd, running)) => {
            let to = if running { VmState::Running } else { VmState::Paused };
            let facts = ProcessFacts { pid: Some(pid), ..Default::default() };
            ctx.transition(vm, VmState::Starting, to, &facts, json!({"reason": "start finished by reconcile", "pid": pid}))?;
            qemu::watch(ctx, vm, pid, pidfd)?;
            report.drifts.push(Drift {
                vm: vm.name.clone(),
                found: "starting, its starter gone while QEMU came up".into(),
                action: format!("adopted QEMU {pid}, recorded {to}"),
            });
            report.adopted.push(vm.name.clone());
        }
        Err(e) => {
            let ended = qemu::end_lineage(ctx, vm);
            paths.clean();
            qemu::fail_start(ctx, vm, &e)?;
            report.drifts.push(Drift {
                vm: vm.name.clone(),
                found: format!("starting, its starter gone and QEMU not coming up ({})", e.full_message()),
                action: format!("ended {ended} process(es) of the launch, recorded error"),
            });
        }
    }
    Ok(())
}

fn reconcile_process(ctx: &Inner, vm: &Vm, report: &mut ReconcileReport) -> Result<()> {
    let mut drift = |found: String, action: &str| report.drifts.push(Drift { vm: vm.name.clone(), found, action: action.to_string() });
    let Some((pid, pidfd)) = qemu::open_qemu(ctx, vm) else {
        // No proven QEMU: any process left of its lineage is a stranger
        // to the store (a launch that never got recorded) and must go.
        let ended = qemu::end_lineage(ctx, vm);
        let cause = match vm.state {
            // A start that never got QEMU running: record the failure.
            VmState::Starting => ExitCause::Killed,
            _ => qemu::exit_cause(ctx, &vm.id),
        };
        let to = qemu::settle_exit(ctx, &vm.id, vm.pid.unwrap_or(0), cause)?;
        let to = to.map_or("left as is".to_string(), |s| format!("recorded {s}"));
        let to = if ended > 0 { format!("{to}, ended {ended} unproven process(es)") } else { to };
        drift(format!("recorded {} but its QEMU is gone", vm.state), &to);
        return Ok(());
    };
    // Already supervised by this manager: nothing to adopt or report.
    if ctx.runtime().watcher()?.watches(&vm.id, pid) && vm.state != VmState::Stopping {
        return Ok(());
    }
    let status = qemu::qmp(ctx, vm)
        .and_then(|mut q| q.query_status().map_err(|source| crate::Error::Qmp { vm: vm.name.clone(), command: "query-status", source }));
    let qemu_state = match &status {
        Ok(s) if s.running => VmState::Running,
        Ok(_) => VmState::Paused,
        Err(e) => {
            // Alive but not answering: supervise it and let the user decide.
            drift(format!("QEMU {pid} does not answer QMP ({})", e.full_message()), "watching it");
            qemu::watch(ctx, vm, pid, pidfd)?;
            return Ok(());
        }
    };
    match vm.state {
        VmState::Stopping => {
            // Someone asked for a stop and crashed before it finished.
            drift("stuck in stopping with QEMU still running".into(), "finished the stop");
            // The same end as a force stop: SIGTERM, then SIGKILL if it lingers.
            let _ = qemu::kill_qemu(vm, &pidfd);
            qemu::settle_exit(ctx, &vm.id, pid, ExitCause::Clean)?;
            return Ok(());
        }
        from if from != qemu_state => {
            drift(format!("recorded {from} but QEMU is {qemu_state}"), &format!("recorded {qemu_state}"));
            let facts = ProcessFacts { pid: Some(pid), ..Default::default() };
            ctx.transition(vm, from, qemu_state, &facts, json!({"reason": "reconciled with QEMU", "pid": pid}))?;
        }
        _ => {}
    }
    qemu::watch(ctx, vm, pid, pidfd)?;
    report.adopted.push(vm.name.clone());
    Ok(())
}
