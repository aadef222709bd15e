//! The VM lifecycle on real QEMU: start, stop, restart, pause, resume,
//! delete.
//!
//! Every operation takes the VM's lock (serializing operations on one VM
//! across threads and processes), re-reads the VM under it by id, checks the
//! state machine, records the transitional state, acts, and records the
//! outcome; QEMU itself is handled by `vm::qemu`.

use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use serde_json::json;

use crate::cancel::{self, Cancel, Woke};
use crate::context::Inner;
use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::Manager;
use crate::runtime::process::Pidfd;
use crate::runtime::qmp::{QmpClient, QmpError};
use crate::store::{self, ProcessFacts};
use crate::vm::model::Vm;
use crate::vm::qemu;
use crate::vm::recover;
use crate::vm::state::VmState;

use crate::vm::qemu::ExitCause;

/// Resolves `name` once, takes that VM's lock, and re-reads it by id:
/// a VM deleted meanwhile (perhaps re-created under the same name) is
/// `NotFound`, never another VM. A VM left in a transitional state by an
/// operation that died (its lock is ours now) is reconciled first, so
/// the caller sees where it really is.
pub(crate) fn lock_vm(ctx: &Inner, name: &str) -> Result<(nix::fcntl::Flock<std::fs::File>, Vm)> {
    lock_vm_cancellable(ctx, name, None)
}

/// [`lock_vm`] whose wait for another operation on the VM ends with
/// `Cancelled` once `cancel` is (nothing is changed by then).
pub(crate) fn lock_vm_cancellable(ctx: &Inner, name: &str, cancel: Option<&Cancel>) -> Result<(nix::fcntl::Flock<std::fs::File>, Vm)> {
    cancel::check(cancel, || format!("VM {name:?} to be free"))?;
    let id = ctx.store().read(|tx| store::live_vm_id(tx, name))?.ok_or_else(|| Error::not_found("VM", name))?;
    let lock = ctx.runtime().lock_vm_cancellable(&id, name, cancel)?;
    Ok((lock, settled(ctx, &id, name)?))
}

/// A live VM by id, re-read under its lock (which the caller holds): one
/// left in a transitional state by an operation that died is reconciled
/// first.
pub(crate) fn settled(ctx: &Inner, id: &str, name: &str) -> Result<Vm> {
    let vm = vm_by_id(ctx, id, name)?;
    if !vm.state.is_transitional() {
        return Ok(vm);
    }
    let mut report = crate::reconcile::report::ReconcileReport::default();
    recover::reconcile_locked(ctx, &vm, &mut report)?;
    report.log();
    vm_by_id(ctx, id, name)
}

/// A live VM by id; `NotFound` under the name the caller used.
pub(crate) fn vm_by_id(ctx: &Inner, id: &str, name: &str) -> Result<Vm> {
    ctx.store().read(|tx| store::vm_by_id(tx, id))?.ok_or_else(|| Error::not_found("VM", name))
}

fn require(vm: &Vm, action: &'static str, allowed: &[VmState], needs: &'static str) -> Result<()> {
    if allowed.contains(&vm.state) { Ok(()) } else { Err(Error::InvalidState { vm: vm.name.clone(), state: vm.state, action, needs }) }
}

/// For operations that need QEMU: its pidfd, or — if it is gone — the
/// exit settled and an error saying so.
fn running_qemu(ctx: &Inner, vm: &Vm) -> Result<(u32, Pidfd)> {
    match qemu::open_qemu(ctx, vm) {
        Some(found) => Ok(found),
        None => {
            let state = qemu::settle_exit(ctx, &vm.id, vm.pid.unwrap_or(0), qemu::exit_cause(ctx, &vm.id))?.unwrap_or(vm.state);
            Err(Error::InvalidState { vm: vm.name.clone(), state, action: "reach QEMU", needs: "a running QEMU" })
        }
    }
}

fn stop_locked(ctx: &Inner, vm: &Vm, graceful: Option<Duration>, cancel: Option<&Cancel>) -> Result<()> {
    let (pid, pidfd) = running_qemu(ctx, vm)?;
    let started = Instant::now();
    let details = match graceful {
        Some(t) => json!({"reason": "stop requested", "graceful_timeout_ms": t.as_millis() as u64}),
        None => json!({"reason": "force stop requested"}),
    };
    ctx.transition(vm, vm.state, VmState::Stopping, &ProcessFacts::default(), details)?;
    let mut powered_off = false;
    if let Some(timeout) = graceful {
        let asked = qemu::qmp(ctx, vm).and_then(|mut qmp| {
            let call =
                |r: std::result::Result<(), QmpError>, command| r.map_err(|source| Error::Qmp { vm: vm.name.clone(), command, source });
            // ACPI needs running vCPUs to be seen by the guest.
            if vm.state == VmState::Paused {
                call(qmp.cont(), "cont")?;
            }
            call(qmp.system_powerdown(), "system_powerdown")
        });
        if asked.is_ok() {
            let deadline = Instant::now().checked_add(timeout);
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match cancel::wait(&mut fds, deadline, cancel) {
                Ok(Woke::Ready) => powered_off = true,
                Ok(Woke::Cancelled) if pidfd.is_alive() => return cancel_stop(ctx, vm, pid, started),
                // Gone as the cancel came: the stop is done, as asked.
                Ok(Woke::Cancelled) => powered_off = true,
                // A wait that fails is a guest that did not power off.
                Ok(Woke::TimedOut) | Err(_) => {}
            }
        }
    }
    if !powered_off {
        if graceful.is_some() {
            ctx.write(|w| w.record(ObjectKind::Vm, &vm.id, &vm.name, "forced", json!({"after_ms": started.elapsed().as_millis() as u64})))?;
        }
        // From here on the stop is seen through: forcing takes at most
        // twice QUIT_GRACE, and a half-forced QEMU is nobody's VM.
        qemu::kill_qemu(vm, &pidfd)?;
    }
    qemu::settle_exit(ctx, &vm.id, pid, ExitCause::Clean)?;
    Ok(())
}

/// A graceful stop cancelled while the guest was given time to power
/// off: vman had not forced anything, so the VM is recorded running again
/// (its vCPUs run: a paused VM was resumed for the power button), with a
/// `cancelled` event. The power button was pressed: a guest that acts on
/// it later simply stops, and the watcher records that. If QEMU exited
/// meanwhile (the watcher settled it), the stop happened: that stands.
fn cancel_stop(ctx: &Inner, vm: &Vm, pid: u32, started: Instant) -> Result<()> {
    let after_ms = started.elapsed().as_millis() as u64;
    let reverted = ctx.write(|w| {
        let now = store::vm_by_id(w.tx, &vm.id)?;
        if !now.is_some_and(|now| now.state == VmState::Stopping && now.pid == Some(pid)) {
            return Ok(false);
        }
        store::set_state(w.tx, vm, VmState::Stopping, VmState::Running, &ProcessFacts::default(), w.now)?;
        let reason = "stop cancelled before it was forced";
        w.record(ObjectKind::Vm, &vm.id, &vm.name, "state_changed", json!({"from": "stopping", "to": "running", "reason": reason}))?;
        w.record(ObjectKind::Vm, &vm.id, &vm.name, "cancelled", json!({"operation": "stop", "after_ms": after_ms, "left": "running"}))?;
        Ok(true)
    })?;
    if !reverted {
        qemu::settle_exit(ctx, &vm.id, pid, ExitCause::Clean)?;
        return Ok(());
    }
    Err(Error::Cancelled { what: format!("VM {:?} to power off (it was left running)", vm.name) })
}

impl Manager {
    /// Starts a created, stopped or failed VM and returns it running. The
    /// call returns once QEMU answers on QMP; the guest then boots (see
    /// [`Manager::wait_for_console`] to know when it is up).
    pub fn start(&self, name: &str) -> Result<Vm> {
        self.start_with(name, None)
    }

    /// [`start`](Self::start) that ends with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) once `cancel`
    /// is cancelled: while waiting for another operation on the VM
    /// (nothing changed), or while waiting for the new QEMU to answer on
    /// QMP (that QEMU is killed, its network unplugged, and the VM recorded
    /// `stopped` with a `cancelled` event). A start whose QEMU answered is
    /// done and is not undone.
    pub fn start_cancellable(&self, name: &str, cancel: &Cancel) -> Result<Vm> {
        self.start_with(name, Some(cancel))
    }

    fn start_with(&self, name: &str, cancel: Option<&Cancel>) -> Result<Vm> {
        let (_lock, vm) = lock_vm_cancellable(&self.inner, name, cancel)?;
        start_locked(&self.inner, vm, cancel)
    }

    /// Stops a running or paused VM: ACPI power button, up to `timeout` for
    /// the guest to power off, then SIGTERM (QEMU's own orderly quit), then SIGKILL.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<Vm> {
        self.stop_with(name, Some(timeout), None)
    }

    /// [`stop`](Self::stop) that ends with
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) once `cancel`
    /// is cancelled: while waiting for another operation on the VM
    /// (nothing changed), or while the guest is given `timeout` to power
    /// off. Then nothing has been forced: the VM is recorded `running`
    /// again (a paused VM was resumed for the power button and stays
    /// running), with a `cancelled` event, and its guest may still act on
    /// the power button it was sent. Once vman forces the stop (the
    /// timeout passed) the stop is seen through; a guest that powered off
    /// as the cancel came is stopped, and the call succeeds.
    pub fn stop_cancellable(&self, name: &str, timeout: Duration, cancel: &Cancel) -> Result<Vm> {
        self.stop_with(name, Some(timeout), Some(cancel))
    }

    /// Stops a VM at once: SIGTERM (QEMU's own orderly quit, as QMP `quit`), then SIGKILL if QEMU lingers.
    pub fn force_stop(&self, name: &str) -> Result<Vm> {
        self.stop_with(name, None, None)
    }

    fn stop_with(&self, name: &str, graceful: Option<Duration>, cancel: Option<&Cancel>) -> Result<Vm> {
        let inner = &self.inner;
        let (_lock, vm) = lock_vm_cancellable(inner, name, cancel)?;
        require(&vm, "stop", &[VmState::Running, VmState::Paused], "a running or paused VM")?;
        stop_locked(inner, &vm, graceful, cancel)?;
        vm_by_id(inner, &vm.id, name)
    }

    /// Stops (gracefully, within `timeout`) and starts the VM again.
    pub fn restart(&self, name: &str, timeout: Duration) -> Result<Vm> {
        self.stop(name, timeout)?;
        self.start(name)
    }

    /// [`restart`](Self::restart) with a cancellation token: a cancel
    /// during the stop leaves the VM as
    /// [`stop_cancellable`](Self::stop_cancellable) says (running), during
    /// the start as [`start_cancellable`](Self::start_cancellable) says
    /// (stopped).
    pub fn restart_cancellable(&self, name: &str, timeout: Duration, cancel: &Cancel) -> Result<Vm> {
        self.stop_cancellable(name, timeout, cancel)?;
        self.start_cancellable(name, cancel)
    }

    /// Halts the guest's vCPUs (QMP `stop`); QEMU keeps running.
    pub fn pause(&self, name: &str) -> Result<Vm> {
        self.qmp_transition(name, "pause", VmState::Running, VmState::Paused, "stop", QmpClient::stop)
    }

    /// Resumes a paused guest (QMP `cont`).
    pub fn resume(&self, name: &str) -> Result<Vm> {
        self.qmp_transition(name, "resume", VmState::Paused, VmState::Running, "cont", QmpClient::cont)
    }

    fn qmp_transition(
        &self,
        name: &str,
        action: &'static str,
        from: VmState,
        to: VmState,
        command: &'static str,
        send: fn(&mut QmpClient) -> std::result::Result<(), QmpError>,
    ) -> Result<Vm> {
        let inner = &self.inner;
        let (_lock, vm) = lock_vm(inner, name)?;
        require(&vm, action, &[from], if from == VmState::Running { "a running VM" } else { "a paused VM" })?;
        running_qemu(inner, &vm)?;
        send(&mut qemu::qmp(inner, &vm)?).map_err(|source| Error::Qmp { vm: vm.name.clone(), command, source })?;
        inner.transition(&vm, from, to, &ProcessFacts::default(), json!({}))?;
        vm_by_id(inner, &vm.id, name)
    }

    /// Soft-deletes a VM: frees its name, releases its addresses, keeps its
    /// history. A VM with a running QEMU is refused unless `force`, which
    /// force-stops it first.
    pub fn delete_vm(&self, name: &str, force: bool) -> Result<()> {
        let (_lock, vm) = lock_vm(&self.inner, name)?;
        delete_locked(&self.inner, vm, force)
    }
}

/// Starts `vm` (read under its lock, which the caller holds).
pub(crate) fn start_locked(inner: &Inner, vm: Vm, cancel: Option<&Cancel>) -> Result<Vm> {
    require(&vm, "start", &[VmState::Created, VmState::Stopped, VmState::Error], "a created, stopped or failed VM")?;
    let disks = crate::storage::boot::check_bootable(inner, &vm)?;
    // The directory's settings as they are now, held until `starting`
    // is recorded: a change that needs no running VM either came
    // before (and is used) or sees this VM starting (and is refused).
    let settings_lock = inner.runtime().lock_settings(false)?;
    crate::settings::apply::refresh(inner)?;
    inner.net().check_can_plug(&vm)?;
    inner.runtime().check_qemu_can_reach(inner.state_dir())?;
    let lineage = qemu::take_lineage(inner, &vm)?;
    let accel = inner.runtime().accel();
    let facts = ProcessFacts { pid: Some(0), accel: Some(accel.as_str()), last_error: Some("") };
    inner.transition(&vm, vm.state, VmState::Starting, &facts, json!({"accel": accel.as_str()}))?;
    drop(settings_lock);
    let starting = Vm { state: VmState::Starting, ..vm };
    match qemu::launch(inner, &starting, &lineage, disks, cancel) {
        Ok((pid, pidfd)) => {
            let recorded = pidfd.try_clone().map_err(|e| Error::io("duplicate the pidfd of", &starting.name, e)).and_then(|watch| {
                let facts = ProcessFacts { pid: Some(pid), ..Default::default() };
                inner.transition(&starting, VmState::Starting, VmState::Running, &facts, json!({"pid": pid}))?;
                qemu::watch(inner, &starting, pid, watch)
            });
            if let Err(e) = recorded {
                // QEMU runs but the store cannot say so: end it rather
                // than leave a process nobody knows about.
                let _ = qemu::kill_qemu(&starting, &pidfd);
                inner.runtime().paths(&starting.id).clean();
                let _ = qemu::fail_start(inner, &starting, &e);
                return Err(e);
            }
            // QEMU holds the lineage lock from here on, alone.
            drop(lineage);
            vm_by_id(inner, &starting.id, &starting.name)
        }
        Err(e) => {
            if e.kind() == crate::ErrorKind::Cancelled {
                qemu::cancel_start(inner, &starting)?;
            } else {
                qemu::fail_start(inner, &starting, &e)?;
            }
            Err(e)
        }
    }
}

/// Deletes `vm` (read under its lock, which the caller holds), as
/// [`Manager::delete_vm`] says.
pub(crate) fn delete_locked(inner: &Inner, vm: Vm, force: bool) -> Result<()> {
    let name = vm.name.clone();
    if vm.state.has_process() {
        if !force {
            return Err(Error::InvalidState { vm: vm.name.clone(), state: vm.state, action: "delete", needs: "a stopped VM (or force)" });
        }
        if matches!(vm.state, VmState::Running | VmState::Paused) {
            stop_locked(inner, &vm, None, None)?;
        } else if let Some((pid, pidfd)) = qemu::open_qemu(inner, &vm) {
            // Stuck in starting or stopping: end whatever QEMU there is.
            qemu::kill_qemu(&vm, &pidfd)?;
            qemu::settle_exit(inner, &vm.id, pid, ExitCause::Killed)?;
        }
    }
    let vm = vm_by_id(inner, &vm.id, &name)?;
    if vm.state.has_process() {
        // Stuck with no QEMU at all (a crash mid-operation).
        inner.transition(
            &vm,
            vm.state,
            VmState::Error,
            &ProcessFacts { pid: Some(0), ..Default::default() },
            json!({"reason": "no QEMU found during forced delete"}),
        )?;
    }
    let vm = vm_by_id(inner, &vm.id, &name)?;
    // Its own disks go with it (marked `deleting` here, their files
    // removed after the commit); disks it was only given are detached.
    let disks = inner.write(|w| {
        let disks = crate::storage::ops::release_disks_of(w, &vm)?;
        store::soft_delete_vm(w.tx, &vm, w.now)?;
        let released = vm.nics.iter().map(|n| n.ip.to_string()).collect::<Vec<_>>();
        let deleted = disks.doomed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>();
        w.record(ObjectKind::Vm, &vm.id, &vm.name, "deleted", json!({"released": released, "deleted_disks": deleted}))?;
        Ok(disks)
    })?;
    for disk in &disks.doomed {
        crate::storage::ops::finish_delete(inner, disk)?;
    }
    // The VM's snapshots went with it; their tags must not stay on the
    // disks it leaves behind (a later snapshot of that name would find
    // them). Best effort: create_snapshot refuses a stale tag anyway.
    for tag in &disks.snapshot_tags {
        if let Err(e) = crate::storage::ops::remove_tags(&disks.kept, tag) {
            log::warn!("cannot remove snapshot {tag:?} of deleted VM {:?} from its former disks: {e}", vm.name);
        }
    }
    crate::storage::boot::forget(inner, &vm.id);
    inner.runtime().forget_vm(&vm.id);
    Ok(())
}
