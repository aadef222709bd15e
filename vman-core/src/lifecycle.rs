//! The VM lifecycle on real QEMU: start, stop, restart, pause, resume,
//! delete, and how an exit is settled in the store.
//!
//! Every operation takes the VM's lock (serializing operations on one VM
//! across threads and processes), re-reads the VM under it, checks the state
//! machine, records the transitional state, acts, and records the outcome.
//! QEMU exits are settled in exactly one place, [`Inner::settle_exit`], which
//! both the watcher thread and the operations call; whichever comes first
//! wins and the other finds nothing to do.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::{Error, Result};
use crate::event::ObjectKind;
use crate::manager::{Inner, Manager};
use crate::qmp::{QmpClient, QmpError};
use crate::runtime::argv::qemu_argv;
use crate::runtime::process::{self, Pidfd};
use crate::runtime::watcher::{Exit, Watched};
use crate::state::VmState;
use crate::store::{self, ProcessFacts};
use crate::vm::Vm;

/// How long QMP gets to answer one command.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long QEMU gets to daemonize (TCG and KVM both need well under 1 s).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// After QMP `quit`, how long before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// Why a QEMU process ended, as far as vman can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCause {
    /// QEMU went through its own shutdown (it removes its pidfile then):
    /// the guest powered off, or QMP `quit`.
    Clean,
    /// The pidfile is still there: SIGKILL, a crash, an OOM kill.
    Killed,
}

impl Inner {
    /// Called by the watcher thread when a watched QEMU exits.
    pub(crate) fn qemu_exited(&self, exit: &Exit) {
        if let Err(e) = self.settle_exit(&exit.vm_id, exit.pid, self.exit_cause(&exit.vm_id)) {
            log::error!("cannot record the exit of QEMU {} of VM {}: {}", exit.pid, exit.vm_id, e.full_message());
        }
    }

    /// How a VM's QEMU ended, read after it has: QEMU removes its pidfile
    /// only when it shuts down cleanly.
    pub(crate) fn exit_cause(&self, vm_id: &str) -> ExitCause {
        if self.runtime.paths(vm_id).pidfile.exists() { ExitCause::Killed } else { ExitCause::Clean }
    }

    /// Records that QEMU `pid` of VM `vm_id` is gone. A no-op if the store
    /// no longer expects that process (already settled, or a newer run).
    pub(crate) fn settle_exit(&self, vm_id: &str, pid: u32, cause: ExitCause) -> Result<Option<VmState>> {
        let settled = self.write(|w| {
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
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "state_changed", json!({"from": vm.state.as_str(), "to": to.as_str(), "reason": reason, "pid": pid}))?;
            // Only the caller that settles the run cleans up after it (the
            // files may otherwise belong to the next run), inside this
            // transaction so a new start cannot interleave, and before the
            // event is committed, so whoever reacts to it sees it done.
            self.runtime.paths(vm_id).clean();
            self.unplug_nics(w.tx, vm_id);
            Ok(Some(to))
        })?;
        if settled.is_some()
            && let Ok(w) = self.runtime.watcher()
        {
            w.forget(vm_id);
        }
        Ok(settled)
    }

    /// Records a failed start and takes down what it plugged in, in one
    /// transaction (so the network counts this VM out before it is released).
    fn fail_start(&self, vm: &Vm, error: &Error) -> Result<()> {
        let message = error.full_message();
        self.write(|w| {
            let facts = ProcessFacts { pid: Some(0), accel: None, last_error: Some(&message) };
            store::set_state(w.tx, vm, VmState::Starting, VmState::Error, &facts, w.now)?;
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "state_changed", json!({"from": "starting", "to": "error", "reason": "start failed", "error": message}))?;
            self.unplug_nics(w.tx, &vm.id);
            Ok(())
        })
    }

    /// A pidfd on the VM's QEMU, if the recorded pid really is that QEMU.
    /// A pid that exited or was reused by another program gives `None`, so
    /// vman never signals a stranger.
    pub(crate) fn open_qemu(&self, vm: &Vm) -> Option<(u32, Pidfd)> {
        let pid = vm.pid.or_else(|| self.runtime.paths(&vm.id).read_pid())?;
        let pidfd = Pidfd::open(pid).ok()?;
        process::is_qemu_of(&pidfd, pid, &vm.id).then_some((pid, pidfd))
    }

    /// Hands a running QEMU to the watcher: its exit and its serial log.
    pub(crate) fn watch(&self, vm: &Vm, pid: u32, pidfd: Pidfd) -> Result<()> {
        let what = Watched { pid, pidfd, run_dir: self.runtime.paths(&vm.id).dir, log_cap: self.runtime.serial_log_cap };
        self.runtime.watcher()?.watch(&vm.id, what);
        Ok(())
    }

    pub(crate) fn qmp(&self, vm: &Vm) -> Result<QmpClient> {
        let path = self.runtime.paths(&vm.id).qmp;
        QmpClient::connect(&path, QMP_TIMEOUT).map_err(|source| Error::Qmp { vm: vm.name.clone(), command: "connect", source })
    }

    /// Starts QEMU for `vm` (in `starting`) and proves it is up: pidfile,
    /// identity, a QMP answer. On any failure after the spawn, the QEMU is
    /// killed, so a failed start leaks no process.
    fn launch(&self, vm: &Vm) -> Result<(u32, Pidfd)> {
        let paths = self.runtime.paths(&vm.id);
        paths.prepare()?;
        let log = self.runtime.serial_log(&vm.id);
        log.prepare_for_start().map_err(|e| Error::io("rotate the serial log in", &paths.dir, e))?;
        let accel = self.runtime.accel();
        let pid = self.launch_with_network(vm, accel, &paths, log.path())?;
        let pidfd = match Pidfd::open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                // Without a pidfd vman cannot supervise this QEMU, so it must
                // not be left running: end it by pid, which is safe here
                // because the process is proven to be this VM's QEMU first.
                if process::is_qemu_of_pid(pid, &vm.id) {
                    // SAFETY: kill(2) on a pid just proven to be this VM's QEMU.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                paths.clean();
                return Err(match e.raw_os_error() {
                    Some(libc::ENOSYS) => Error::Unsupported { what: "pidfd_open (Linux 5.3 or newer is needed to supervise QEMU)".into() },
                    _ => Error::Qemu { message: format!("QEMU {pid} exited right after starting ({e})") },
                });
            }
        };
        let proven = (|| {
            if !process::is_qemu_of(&pidfd, pid, &vm.id) {
                return Err(Error::Qemu { message: format!("pid {pid} from the pidfile is not this VM's QEMU") });
            }
            paths.restrict_sockets();
            let status = self.qmp(vm)?.query_status().map_err(|source| Error::Qmp { vm: vm.name.clone(), command: "query-status", source })?;
            if !status.running {
                return Err(Error::Qemu { message: format!("QEMU started in state {:?}, not running", status.status) });
            }
            Ok(())
        })();
        match proven {
            Ok(()) => Ok((pid, pidfd)),
            Err(e) => {
                let _ = pidfd.kill(libc::SIGKILL);
                let _ = pidfd.wait(QUIT_GRACE);
                paths.clean();
                Err(e)
            }
        }
    }

    /// Plugs the NICs in and runs QEMU. In user mode a forwarded port can be
    /// taken between choosing and QEMU binding it; then a fresh one is tried.
    fn launch_with_network(&self, vm: &Vm, accel: crate::Accel, paths: &process::RunPaths, log: &std::path::Path) -> Result<u32> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let nics = self.plug_nics(vm)?;
            let argv = qemu_argv(vm, accel, paths, log, &nics);
            match process::launch(&self.runtime.qemu, &argv, paths, LAUNCH_TIMEOUT) {
                Ok(pid) => return Ok(pid),
                Err(e) => {
                    let port_taken = matches!(&e, Error::Qemu { message } if message.contains("host forwarding"));
                    if !(port_taken && attempt < 3) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Ends QEMU: QMP `quit`, then SIGKILL through the pidfd if it lingers.
    fn kill_qemu(&self, vm: &Vm, pidfd: &Pidfd) -> Result<()> {
        if let Ok(mut qmp) = self.qmp(vm) {
            let _ = qmp.quit();
        }
        if pidfd.wait(QUIT_GRACE).unwrap_or(false) {
            return Ok(());
        }
        pidfd.kill(libc::SIGKILL).map_err(|e| Error::io("kill QEMU of", &vm.name, e))?;
        pidfd.wait(QUIT_GRACE).map_err(|e| Error::io("wait for QEMU of", &vm.name, e))?;
        Ok(())
    }

    fn require(&self, vm: &Vm, action: &'static str, allowed: &[VmState], needs: &'static str) -> Result<()> {
        if allowed.contains(&vm.state) {
            Ok(())
        } else {
            Err(Error::InvalidState { vm: vm.name.clone(), state: vm.state, action, needs })
        }
    }

    /// For operations that need QEMU: its pidfd, or — if it is gone — the
    /// exit settled and an error saying so.
    fn running_qemu(&self, vm: &Vm) -> Result<(u32, Pidfd)> {
        match self.open_qemu(vm) {
            Some(found) => Ok(found),
            None => {
                let state = self.settle_exit(&vm.id, vm.pid.unwrap_or(0), self.exit_cause(&vm.id))?.unwrap_or(vm.state);
                Err(Error::InvalidState { vm: vm.name.clone(), state, action: "reach QEMU", needs: "a running QEMU" })
            }
        }
    }

    fn stop_locked(&self, vm: &Vm, graceful: Option<Duration>) -> Result<()> {
        let (pid, pidfd) = self.running_qemu(vm)?;
        let started = Instant::now();
        let details = match graceful {
            Some(t) => json!({"reason": "stop requested", "graceful_timeout_ms": t.as_millis() as u64}),
            None => json!({"reason": "force stop requested"}),
        };
        self.transition(vm, vm.state, VmState::Stopping, &ProcessFacts::default(), details)?;
        let mut powered_off = false;
        if let Some(timeout) = graceful {
            let asked = self.qmp(vm).and_then(|mut qmp| {
                let call = |r: std::result::Result<(), QmpError>, command| r.map_err(|source| Error::Qmp { vm: vm.name.clone(), command, source });
                // ACPI needs running vCPUs to be seen by the guest.
                if vm.state == VmState::Paused {
                    call(qmp.cont(), "cont")?;
                }
                call(qmp.system_powerdown(), "system_powerdown")
            });
            powered_off = asked.is_ok() && pidfd.wait(timeout).unwrap_or(false);
        }
        if !powered_off {
            if graceful.is_some() {
                self.write(|w| {
                    w.record(ObjectKind::Vm, &vm.id, &vm.name, "forced", json!({"after_ms": started.elapsed().as_millis() as u64}))
                })?;
            }
            self.kill_qemu(vm, &pidfd)?;
        }
        self.settle_exit(&vm.id, pid, ExitCause::Clean)?;
        Ok(())
    }
}

impl Manager {
    /// Starts a created, stopped or failed VM and returns it running. The
    /// call returns once QEMU answers on QMP; the guest then boots (see
    /// [`Manager::wait_for_console`] to know when it is up).
    pub fn start(&self, name: &str) -> Result<Vm> {
        let inner = &self.inner;
        let id = inner.vm(name)?.id;
        let _lock = inner.runtime.lock_vm(&id, name)?;
        let vm = inner.vm(name)?;
        inner.require(&vm, "start", &[VmState::Created, VmState::Stopped, VmState::Error], "a created, stopped or failed VM")?;
        let accel = inner.runtime.accel();
        let facts = ProcessFacts { pid: Some(0), accel: Some(accel.as_str()), last_error: Some("") };
        inner.transition(&vm, vm.state, VmState::Starting, &facts, json!({"accel": accel.as_str()}))?;
        let starting = Vm { state: VmState::Starting, ..vm };
        match inner.launch(&starting) {
            Ok((pid, pidfd)) => {
                let recorded = pidfd
                    .try_clone()
                    .map_err(|e| Error::io("duplicate the pidfd of", &starting.name, e))
                    .and_then(|watch| {
                        let facts = ProcessFacts { pid: Some(pid), ..Default::default() };
                        inner.transition(&starting, VmState::Starting, VmState::Running, &facts, json!({"pid": pid}))?;
                        inner.watch(&starting, pid, watch)
                    });
                if let Err(e) = recorded {
                    // QEMU runs but the store cannot say so: end it rather
                    // than leave a process nobody knows about.
                    let _ = inner.kill_qemu(&starting, &pidfd);
                    inner.runtime.paths(&starting.id).clean();
                    let _ = inner.fail_start(&starting, &e);
                    return Err(e);
                }
                inner.vm(name)
            }
            Err(e) => {
                inner.fail_start(&starting, &e)?;
                Err(e)
            }
        }
    }

    /// Stops a running or paused VM: ACPI power button, up to `timeout` for
    /// the guest to power off, then QMP `quit`, then SIGKILL.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<Vm> {
        self.stop_with(name, Some(timeout))
    }

    /// Stops a VM at once: QMP `quit`, then SIGKILL if QEMU lingers.
    pub fn force_stop(&self, name: &str) -> Result<Vm> {
        self.stop_with(name, None)
    }

    fn stop_with(&self, name: &str, graceful: Option<Duration>) -> Result<Vm> {
        let inner = &self.inner;
        let id = inner.vm(name)?.id;
        let _lock = inner.runtime.lock_vm(&id, name)?;
        let vm = inner.vm(name)?;
        inner.require(&vm, "stop", &[VmState::Running, VmState::Paused], "a running or paused VM")?;
        inner.stop_locked(&vm, graceful)?;
        inner.vm(name)
    }

    /// Stops (gracefully, within `timeout`) and starts the VM again.
    pub fn restart(&self, name: &str, timeout: Duration) -> Result<Vm> {
        self.stop(name, timeout)?;
        self.start(name)
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
        let id = inner.vm(name)?.id;
        let _lock = inner.runtime.lock_vm(&id, name)?;
        let vm = inner.vm(name)?;
        inner.require(&vm, action, &[from], if from == VmState::Running { "a running VM" } else { "a paused VM" })?;
        inner.running_qemu(&vm)?;
        send(&mut inner.qmp(&vm)?).map_err(|source| Error::Qmp { vm: vm.name.clone(), command, source })?;
        inner.transition(&vm, from, to, &ProcessFacts::default(), json!({}))?;
        inner.vm(name)
    }

    /// Soft-deletes a VM: frees its name, releases its addresses, keeps its
    /// history. A VM with a running QEMU is refused unless `force`, which
    /// force-stops it first.
    pub fn delete_vm(&self, name: &str, force: bool) -> Result<()> {
        let inner = &self.inner;
        let id = inner.vm(name)?.id;
        let _lock = inner.runtime.lock_vm(&id, name)?;
        let vm = inner.vm(name)?;
        if vm.state.has_process() {
            if !force {
                return Err(Error::InvalidState { vm: vm.name.clone(), state: vm.state, action: "delete", needs: "a stopped VM (or force)" });
            }
            if matches!(vm.state, VmState::Running | VmState::Paused) {
                inner.stop_locked(&vm, None)?;
            } else if let Some((pid, pidfd)) = inner.open_qemu(&vm) {
                // Stuck in starting or stopping: end whatever QEMU there is.
                inner.kill_qemu(&vm, &pidfd)?;
                inner.settle_exit(&vm.id, pid, ExitCause::Killed)?;
            }
        }
        let vm = inner.vm(name)?;
        if vm.state.has_process() {
            // Stuck with no QEMU at all (a crash mid-operation).
            inner.transition(&vm, vm.state, VmState::Error, &ProcessFacts { pid: Some(0), ..Default::default() }, json!({"reason": "no QEMU found during forced delete"}))?;
        }
        let vm = inner.vm(name)?;
        inner.write(|w| {
            store::soft_delete_vm(w.tx, &vm, w.now)?;
            let released = vm.nics.iter().map(|n| n.ip.to_string()).collect::<Vec<_>>();
            w.record(ObjectKind::Vm, &vm.id, &vm.name, "deleted", json!({"released": released}))
        })?;
        inner.runtime.forget_vm(&vm.id);
        Ok(())
    }

    // ----- console ---------------------------------------------------------

    /// The last `max_bytes` the guest wrote to its serial console. The log
    /// keeps one earlier part (the previous boot, or what a size rotation
    /// moved aside), so a short boot's tail may begin in the one before.
    pub fn console_tail(&self, name: &str, max_bytes: usize) -> Result<Vec<u8>> {
        let vm = self.inner.vm(name)?;
        let log = self.inner.runtime.serial_log(&vm.id);
        log.tail(max_bytes).map_err(|e| Error::io("read the serial log of", log.path(), e))
    }

    /// Waits until the guest prints a line matching the regular expression
    /// `pattern` on its serial console during the current boot, and returns
    /// that line; [`crate::ErrorKind::Timeout`] if none comes in `timeout`.
    /// Lines a size rotation moved aside earlier in this boot are not
    /// searched: wait before the guest gets chatty.
    pub fn wait_for_console(&self, name: &str, pattern: &str, timeout: Duration) -> Result<String> {
        let regex = regex::Regex::new(pattern).map_err(|e| Error::invalid("pattern", e.to_string()))?;
        let vm = self.inner.vm(name)?;
        let log = self.inner.runtime.serial_log(&vm.id);
        match log.wait_for_line(&regex, timeout, None).map_err(|e| Error::io("read the serial log of", log.path(), e))? {
            Some(line) => Ok(line),
            None => Err(Error::Timeout { what: format!("{pattern:?} on the console of {name}"), waited_ms: timeout.as_millis() as u64 }),
        }
    }

    /// Connects to the VM's serial console: bytes read are what the guest
    /// prints, bytes written are its keyboard. QEMU serves one client at a
    /// time; the log keeps recording either way.
    pub fn console_attach(&self, name: &str) -> Result<UnixStream> {
        let vm = self.inner.vm(name)?;
        if !matches!(vm.state, VmState::Running | VmState::Paused) {
            return Err(Error::InvalidState { vm: vm.name, state: vm.state, action: "attach to the console", needs: "a running VM" });
        }
        let path = self.inner.runtime.paths(&vm.id).serial_sock;
        UnixStream::connect(&path).map_err(|e| Error::io("connect to the console at", &path, e))
    }
}
