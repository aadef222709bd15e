//! One VM's QEMU: launching it (sandboxed, unprivileged, holding the VM's
//! lineage lock), proving and reaching it (pidfd, QMP), ending it, and
//! settling its exit in the store — the one place an exit is recorded,
//! which the watcher thread and the operations both call; whichever comes
//! first wins and the other finds nothing to do.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use serde_json::json;

use crate::cancel::{self, Cancel, Woke};
use crate::context::Inner;
use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::runtime::argv::{QemuFds, qemu_argv};
use crate::runtime::process::{self, Inherited, Lineage, Pidfd, Reaped};
use crate::runtime::qmp::{QmpClient, QmpError};
use crate::runtime::watcher::{Exit, Watched};
use crate::store::{self, ProcessFacts};
use crate::vm::model::Vm;
use crate::vm::state::VmState;

/// How long QMP gets to answer one command.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long QEMU gets to daemonize (TCG and KVM both need well under 1 s).
pub(crate) const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// After SIGTERM, how long before SIGKILL.
pub(crate) const QUIT_GRACE: Duration = Duration::from_secs(2);

/// Why a QEMU process ended, as far as vman can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCause {
    /// QEMU went through its own shutdown (it removes its pidfile then):
    /// the guest powered off, or QMP `quit`.
    Clean,
    /// The pidfile is still there: SIGKILL, a crash, an OOM kill.
    Killed,
}

/// Called by the watcher thread when a watched QEMU exits.
pub(crate) fn qemu_exited(ctx: &Inner, exit: &Exit) {
    let cause = match exit.reaped {
        // QEMU exits 0 after its own shutdown (guest power-off, QMP
        // quit, SIGTERM); anything else is a crash or a kill.
        Reaped::Exited(0) => ExitCause::Clean,
        Reaped::Exited(_) | Reaped::Signaled(_) => ExitCause::Killed,
        Reaped::NotOurs => exit_cause(ctx, &exit.vm_id),
    };
    if let Err(e) = settle_exit(ctx, &exit.vm_id, exit.pid, cause) {
        log::error!("cannot record the exit of QEMU {} of VM {}: {}", exit.pid, exit.vm_id, e.full_message());
    }
}

/// How a VM's QEMU ended, read after it has: QEMU removes its pidfile
/// only when it shuts down cleanly.
pub(crate) fn exit_cause(ctx: &Inner, vm_id: &str) -> ExitCause {
    if ctx.runtime().paths(vm_id).pidfile.exists() { ExitCause::Killed } else { ExitCause::Clean }
}

/// Records that QEMU `pid` of VM `vm_id` is gone. A no-op if the store
/// no longer expects that process (already settled, or a newer run).
pub(crate) fn settle_exit(ctx: &Inner, vm_id: &str, pid: u32, cause: ExitCause) -> Result<Option<VmState>> {
    let settled = ctx.write(|w| {
        let Some(vm) = store::vm_by_id(w.tx, vm_id)? else { return Ok(None) };
        // Only the run this process belongs to: a late notice about the
        // previous QEMU must not settle a new start (recorded pid 0 until
        // it runs). Callers that know no pid pass 0.
        if !vm.state.has_process() || vm.pid.unwrap_or(0) != pid {
            return Ok(None);
        }
        let (to, reason) = match (vm.state, cause) {
            (VmState::Stopping, _) => (VmState::Stopped, "QEMU exited as asked"),
            (_, ExitCause::Clean) => (VmState::Stopped, "QEMU shut down cleanly (the guest powered off, or QMP quit)"),
            (_, ExitCause::Killed) => (VmState::Error, "QEMU exited without shutting down: killed or crashed"),
        };
        let last_error = if to == VmState::Error { reason } else { "" };
        store::set_state(w.tx, &vm, vm.state, to, &ProcessFacts { pid: Some(0), accel: None, last_error: Some(last_error) }, w.now)?;
        w.record(
            ObjectKind::Vm,
            &vm.id,
            &vm.name,
            "state_changed",
            json!({"from": vm.state.as_str(), "to": to.as_str(), "reason": reason, "pid": pid}),
        )?;
        store::set_forwards(w.tx, vm_id, &[])?;
        // Only the caller that settles the run removes its files (they
        // may otherwise belong to the next run). Unlinking a few files
        // is all the host work done here: no start can record itself
        // (and make new ones) while this transaction holds the lock.
        ctx.runtime().paths(vm_id).clean();
        Ok(Some(to))
    })?;
    if settled.is_some()
        && let Ok(w) = ctx.runtime().watcher()
    {
        w.forget(vm_id);
    }
    // The outcome is recorded; the network teardown is host work, done
    // outside any transaction (see `unplug_nics`). Also by a caller that
    // found the exit already settled (the watcher won the race): the
    // teardown is idempotent and serialized per network, so this returns
    // only once whoever settled has finished it, and a `stop` that
    // returns has its VM's network down.
    ctx.net().unplug_nics(vm_id);
    Ok(settled)
}

/// Records a failed start, then takes down what it plugged in (after
/// the commit, so the network already counts this VM out).
pub(crate) fn fail_start(ctx: &Inner, vm: &Vm, error: &Error) -> Result<()> {
    let message = error.full_message();
    end_start(ctx, vm, VmState::Error, json!({"reason": "start failed", "error": message}), &message, None)
}

/// Records a start cancelled before its QEMU answered (that QEMU was
/// killed by `launch`): `stopped`, as nothing runs and the VM can be
/// started again, with a `cancelled` event; then unplugs as `fail_start`.
pub(crate) fn cancel_start(ctx: &Inner, vm: &Vm) -> Result<()> {
    let cancelled = json!({"operation": "start", "left": "stopped"});
    end_start(ctx, vm, VmState::Stopped, json!({"reason": "start cancelled"}), "", Some(cancelled))
}

fn end_start(
    ctx: &Inner,
    vm: &Vm,
    to: VmState,
    details: serde_json::Value,
    last_error: &str,
    event: Option<serde_json::Value>,
) -> Result<()> {
    ctx.write(|w| {
        let facts = ProcessFacts { pid: Some(0), accel: None, last_error: Some(last_error) };
        store::set_state(w.tx, vm, VmState::Starting, to, &facts, w.now)?;
        let mut details = details;
        if let Some(map) = details.as_object_mut() {
            map.insert("from".into(), json!("starting"));
            map.insert("to".into(), json!(to.as_str()));
        }
        w.record(ObjectKind::Vm, &vm.id, &vm.name, "state_changed", details)?;
        if let Some(event) = event {
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "cancelled", event)?;
        }
        store::set_forwards(w.tx, &vm.id, &[])
    })?;
    ctx.net().unplug_nics(&vm.id);
    Ok(())
}

/// A pidfd on the VM's QEMU, if the recorded pid really is that QEMU.
/// A pid that exited or was reused by another program gives `None`, so
/// vman never signals a stranger. A QEMU this manager supervises is
/// reached through the watcher's pidfd (proven when it was handed over);
/// any other is proven through /proc.
pub(crate) fn open_qemu(ctx: &Inner, vm: &Vm) -> Option<(u32, Pidfd)> {
    let pid = vm.pid.or_else(|| ctx.runtime().paths(&vm.id).read_pid())?;
    if let Some(pidfd) = ctx.runtime().watcher().ok().and_then(|w| w.pidfd_of(&vm.id, pid)) {
        return Some((pid, pidfd));
    }
    process::prove_qemu(pid, &vm.id).map(|pidfd| (pid, pidfd))
}

/// Hands a running QEMU to the watcher: its exit and its serial log.
pub(crate) fn watch(ctx: &Inner, vm: &Vm, pid: u32, pidfd: Pidfd) -> Result<()> {
    let what = Watched { pid, pidfd, run_dir: ctx.runtime().paths(&vm.id).dir, log_cap: ctx.runtime().values().serial_log_cap };
    ctx.runtime().watcher()?.watch(&vm.id, what);
    Ok(())
}

pub(crate) fn qmp(ctx: &Inner, vm: &Vm) -> Result<QmpClient> {
    let path = ctx.runtime().paths(&vm.id).qmp;
    QmpClient::connect(&path, QMP_TIMEOUT).map_err(|source| Error::Qmp { vm: vm.name.clone(), command: "connect", source })
}

/// Launches QEMU for `vm` (recorded `starting`; the caller holds its
/// lineage lock) and proves it is up: a QMP answer, and the process is
/// this VM's QEMU. The pid is recorded as soon as QEMU exists, so a crash
/// of vman from then on leaves a QEMU the next opener can find. On any
/// failure after the spawn the QEMU is killed: a failed start leaks no
/// process. In user mode a forwarded port can be taken between choosing
/// it and QEMU binding it; then a fresh one is tried. A cancel while
/// QEMU comes up is such a failure (`Cancelled`).
pub(crate) fn launch(ctx: &Inner, vm: &Vm, lineage: &Lineage, disks: Vec<crate::Disk>, cancel: Option<&Cancel>) -> Result<(u32, Pidfd)> {
    let paths = ctx.runtime().paths(&vm.id);
    ctx.runtime().prepare_run_dir(&paths)?;
    let storage = crate::storage::boot::prepare(ctx, vm, disks)?;
    let log = ctx.runtime().serial_log(&vm.id);
    log.prepare_for_start().map_err(|e| Error::io("rotate the serial log of", &vm.name, e))?;
    let accel = ctx.runtime().accel();
    let values = ctx.runtime().values();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let nics = ctx.net().plug_nics(vm)?;
        let inherited = Inherited::prepare(&paths, vm.boot.as_ref(), vm.cdrom.as_deref(), &nics, lineage)?;
        let fds = inherited.fds();
        let argv = qemu_argv(vm, accel, &paths, &fds, log.path(), &nics, &storage);
        let stderr = std::fs::File::create(&paths.stderr).map_err(|e| Error::io("create", &paths.stderr, e))?;
        let pid = process::spawn(&values.qemu, &argv, &inherited, stderr, values.qemu_creds.as_ref())?;
        // QEMU has its own copies now; vman's listeners must close so a
        // QEMU that dies during startup resets the QMP connection below.
        drop(inherited);
        let pidfd = Pidfd::open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => {
                Error::Unsupported { what: "pidfd_open (Linux 5.3 or newer is needed to supervise QEMU)".into(), source: Some(Box::new(e)) }
            }
            // Our unreaped child: its pid cannot have been reused.
            _ => Error::io("open a pidfd on QEMU of", &vm.name, e),
        })?;
        let recorded = ctx.write(|w| store::record_pid(w.tx, &vm.id, VmState::Starting, pid));
        let proven = recorded.and_then(|()| await_qemu(ctx, vm, pid, &pidfd, &fds, cancel));
        let proven = proven.and_then(|()| record_display(ctx, vm));
        match proven {
            Ok(()) => return Ok((pid, pidfd)),
            Err(e) => {
                let _ = pidfd.kill(libc::SIGKILL);
                let _ = pidfd.wait(QUIT_GRACE);
                pidfd.reap();
                paths.clean();
                let port_taken = matches!(e, Error::HostPortTaken { .. });
                if !(port_taken && attempt < 3) {
                    return Err(e);
                }
            }
        }
    }
}

/// Records where a VM's VNC server on 127.0.0.1 listens: QEMU chose the
/// first free display, so ask it which.
fn record_display(ctx: &Inner, vm: &Vm) -> Result<()> {
    if vm.display != crate::vm::model::Display::VncTcp {
        return Ok(());
    }
    let mut qmp = qmp(ctx, vm)?;
    let vnc = qmp.execute("query-vnc", None).map_err(|source| Error::Qmp { vm: vm.name.clone(), command: "query-vnc", source })?;
    let port = vnc.get("service").and_then(serde_json::Value::as_str).and_then(|s| s.parse::<u16>().ok());
    let port = port.ok_or_else(|| Error::Qemu { message: format!("query-vnc named no TCP port: {vnc}"), source: None })?;
    ctx.store().write(|tx| store::set_display_port(tx, &vm.id, port))
}

/// Waits for a just-spawned QEMU to answer QMP and proves who it is. The
/// wait for its greeting polls the QMP socket, QEMU's pidfd (a QEMU that
/// gives up ends the wait at once) and `cancel`.
fn await_qemu(ctx: &Inner, vm: &Vm, pid: u32, pidfd: &Pidfd, fds: &QemuFds, cancel: Option<&Cancel>) -> Result<()> {
    let paths = ctx.runtime().paths(&vm.id);
    let failed = || process::qemu_failure(&paths, fds, vm.boot.as_ref(), pidfd.reap().exit_code());
    let deadline = Instant::now() + LAUNCH_TIMEOUT;
    // vman made the listening socket: the connection is queued at once and
    // QEMU's greeting comes when its main loop runs. The handshake and the
    // query go with it, to be answered in the same breath.
    let stream = match UnixStream::connect(&paths.qmp) {
        Ok(stream) => stream,
        // QEMU gave up during startup (its listener went with it).
        Err(_) if pidfd.wait(QUIT_GRACE).unwrap_or(false) => return Err(failed()),
        Err(e) => return Err(Error::Qmp { vm: vm.name.clone(), command: "connect", source: QmpError::Connect(e) }),
    };
    let pending = match QmpClient::query_status_pipelined(stream, QMP_TIMEOUT) {
        Ok(pending) => pending,
        Err(_) if pidfd.wait(QUIT_GRACE).unwrap_or(false) => return Err(failed()),
        Err(source) => return Err(Error::Qmp { vm: vm.name.clone(), command: "qmp_capabilities", source }),
    };
    let mut polled = [PollFd::new(pending.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let woke = cancel::wait(&mut polled, Some(deadline), cancel).map_err(|e| Error::io("wait for QEMU of", &vm.name, e))?;
    let greeted = polled[0].revents().is_some_and(|r| !r.is_empty());
    match woke {
        Woke::Cancelled => return Err(Error::Cancelled { what: format!("QEMU of VM {:?} to answer (it was ended)", vm.name) }),
        // QEMU gave up during startup: its own words say why.
        Woke::Ready if !greeted => return Err(failed()),
        Woke::TimedOut => return Err(Error::Qmp { vm: vm.name.clone(), command: "query-status", source: QmpError::Timeout }),
        Woke::Ready => {}
    }
    // The greeting is there; the replies get what is left of the launch
    // time, and at least one command's worth.
    let left = deadline.saturating_duration_since(Instant::now()).max(QMP_TIMEOUT);
    let status = match pending.finish(left) {
        Ok((_, status)) => status,
        Err(_) if pidfd.wait(QUIT_GRACE).unwrap_or(false) => return Err(failed()),
        Err(source) => return Err(Error::Qmp { vm: vm.name.clone(), command: "query-status", source }),
    };
    if !process::is_qemu_of(pidfd, pid, &vm.id) {
        return Err(Error::Qemu { message: format!("process {pid} is not this VM's QEMU"), source: None });
    }
    if !status.running {
        return Err(Error::Qemu { message: format!("QEMU started in state {:?}, not running", status.status), source: None });
    }
    Ok(())
}

/// The VM's lineage lock, for a launch. If a process of an earlier
/// launch still holds it although the store records no QEMU (its
/// starter crashed before the reconciler ran), that process is ended
/// first: it is not wanted, and two QEMUs of one VM must never run.
pub(crate) fn take_lineage(ctx: &Inner, vm: &Vm) -> Result<Lineage> {
    let path = ctx.runtime().lineage_path(&vm.id);
    if let Some(lineage) = Lineage::try_take(&path)? {
        return Ok(lineage);
    }
    end_lineage(ctx, vm);
    Lineage::try_take(&path)?.ok_or_else(|| Error::InvalidState {
        vm: vm.name.clone(),
        state: vm.state,
        action: "start",
        needs: "no QEMU of an earlier start still running (it could not be ended)",
    })
}

/// Kills every process of the VM's launch lineage (the holders of its
/// lineage lock: only a launch of this VM holds that file open while the
/// caller holds the VM's lock). Returns how many were ended.
pub(crate) fn end_lineage(ctx: &Inner, vm: &Vm) -> usize {
    let path = ctx.runtime().lineage_path(&vm.id);
    let mut ended = 0;
    for pid in crate::sys::proc::holders(&path) {
        let Ok(pidfd) = Pidfd::open(pid) else { continue };
        // Re-check through the pidfd: the pid may have been reused.
        if !crate::sys::proc::holders(&path).contains(&pid) || !pidfd.is_alive() {
            continue;
        }
        log::info!("ending process {pid} of an abandoned launch of VM {}", vm.name);
        if pidfd.kill(libc::SIGKILL).is_ok() {
            let _ = pidfd.wait(QUIT_GRACE);
            pidfd.reap();
            ended += 1;
        }
    }
    ended
}

/// Ends QEMU: SIGTERM through the pidfd, then SIGKILL if it lingers.
///
/// QEMU takes SIGTERM as it takes QMP `quit`: its own orderly shutdown
/// (disks flushed and closed, pidfile removed, exit status 0), so the exit
/// is recorded the same way. The signal needs no QMP connection: no
/// connect, greeting and `qmp_capabilities` round trips through a main
/// loop that may be busy, and no wait behind another QMP client.
pub(crate) fn kill_qemu(vm: &Vm, pidfd: &Pidfd) -> Result<()> {
    if pidfd.kill(libc::SIGTERM).is_ok() && pidfd.wait(QUIT_GRACE).unwrap_or(false) {
        return Ok(());
    }
    pidfd.kill(libc::SIGKILL).map_err(|e| Error::io("kill QEMU of", &vm.name, e))?;
    pidfd.wait(QUIT_GRACE).map_err(|e| Error::io("wait for QEMU of", &vm.name, e))?;
    Ok(())
}
