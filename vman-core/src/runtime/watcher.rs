//! One thread that learns of every QEMU exit the moment it happens, and keeps
//! every running VM's serial log under its size cap.
//!
//! It holds a pidfd per running QEMU in one `poll` set, plus the console
//! cap watcher's fd (inotify behind a throttling timer) and an eventfd that
//! other threads use to add or drop VMs or stop it. The thread sleeps in
//! `poll` until a process exits, a log grows, or it is told something.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

use crate::console::log::{CapWatch, WatchId};
use crate::runtime::process::{Pidfd, Reaped};

/// A QEMU exit, as the watcher saw it.
#[derive(Debug, Clone)]
pub(crate) struct Exit {
    pub vm_id: String,
    pub pid: u32,
    /// How it ended, if it was this process's child.
    pub reaped: Reaped,
}

/// What to supervise for one running VM.
pub(crate) struct Watched {
    pub pid: u32,
    pub pidfd: Pidfd,
    /// The run directory whose serial.log is capped at `log_cap` bytes.
    pub run_dir: PathBuf,
    pub log_cap: u64,
}

enum Command {
    Watch { vm_id: String, what: Watched },
    Forget { vm_id: String },
    Stop,
}

struct Control {
    wake: EventFd,
    commands: Mutex<Vec<Command>>,
    /// Which QEMU (vm id → pid, and a pidfd of its own on it) is watched,
    /// for [`Watcher::watches`] and [`Watcher::pidfd_of`]; the thread's own
    /// map is the one it polls.
    watched: Mutex<HashMap<String, (u32, Option<Pidfd>)>>,
}

impl Control {
    fn send(&self, command: Command) {
        self.commands.lock().push(command);
        // An eventfd write only fails if the counter would overflow, which
        // cannot happen while the thread drains it on every wake.
        let _ = self.wake.write(1);
    }
}

#[derive(Debug)]
pub(crate) struct Watcher {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl Watcher {
    /// Starts the thread; `on_exit` runs on it for every exit seen.
    pub fn start(on_exit: impl Fn(Exit) + Send + 'static) -> std::io::Result<Watcher> {
        let wake = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)?;
        let control = Arc::new(Control { wake, commands: Mutex::new(Vec::new()), watched: Mutex::new(HashMap::new()) });
        let thread_control = control.clone();
        let thread = std::thread::Builder::new().name("vman-watcher".into()).spawn(move || run(&thread_control, &on_exit))?;
        Ok(Watcher { control, thread: Some(thread) })
    }

    /// Watches VM `vm_id`'s QEMU and serial log. If the process has already
    /// exited, the exit is reported at once.
    pub fn watch(&self, vm_id: &str, what: Watched) {
        // A duplicate fails only when out of descriptors; then operations
        // prove the process through /proc instead.
        let pidfd = what.pidfd.try_clone().ok();
        self.control.watched.lock().insert(vm_id.to_string(), (what.pid, pidfd));
        self.control.send(Command::Watch { vm_id: vm_id.to_string(), what });
    }

    pub fn forget(&self, vm_id: &str) {
        self.control.watched.lock().remove(vm_id);
        self.control.send(Command::Forget { vm_id: vm_id.to_string() });
    }

    /// Whether QEMU `pid` of VM `vm_id` is already supervised here.
    pub fn watches(&self, vm_id: &str, pid: u32) -> bool {
        self.control.watched.lock().get(vm_id).is_some_and(|(p, _)| *p == pid)
    }

    /// A pidfd on QEMU `pid` of VM `vm_id` if it is supervised here and
    /// still running: that process was proven to be the VM's QEMU when it
    /// was handed over, and a pidfd can never name another process, so it
    /// needs no proof through /proc again.
    pub fn pidfd_of(&self, vm_id: &str, pid: u32) -> Option<Pidfd> {
        let watched = self.control.watched.lock();
        let (_, pidfd) = watched.get(vm_id).filter(|(p, _)| *p == pid)?;
        pidfd.as_ref().filter(|fd| fd.is_alive()).and_then(|fd| fd.try_clone().ok())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.control.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            // The thread may be the one dropping us (its callback held the
            // last reference); it then ends on its own after this returns.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn run(control: &Control, on_exit: &dyn Fn(Exit)) {
    let mut watched: HashMap<String, (u32, Pidfd, Option<WatchId>)> = HashMap::new();
    // Without inotify the logs go uncapped, which is worth a warning, not
    // giving up supervision.
    let mut caps = CapWatch::new().map_err(|e| log::warn!("serial logs will not be capped: {e}")).ok();
    loop {
        let (woken, exited, logs_grew) = {
            let mut fds = vec![PollFd::new(control.wake.as_fd(), PollFlags::POLLIN)];
            if let Some(caps) = &caps {
                fds.push(PollFd::new(caps.as_fd(), PollFlags::POLLIN));
            }
            let first_pid = fds.len();
            let ids: Vec<&String> = watched.keys().collect();
            fds.extend(ids.iter().map(|id| PollFd::new(watched[*id].1.as_fd(), PollFlags::POLLIN)));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("watcher poll failed, supervision stops: {e}");
                    return;
                }
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            let woken = ready(&fds[0]);
            let logs_grew = first_pid == 2 && ready(&fds[1]);
            let exited: Vec<String> = ids.iter().zip(&fds[first_pid..]).filter(|(_, fd)| ready(fd)).map(|(id, _)| (*id).clone()).collect();
            (woken, exited, logs_grew)
        };
        if logs_grew && let Some(caps) = &mut caps {
            for rotated in caps.on_readable() {
                log::debug!("rotated {}", rotated.display());
            }
        }
        for vm_id in exited {
            if let Some((pid, pidfd, cap)) = watched.remove(&vm_id) {
                // If this process spawned it, reap it: no zombie, and the
                // exit status tells a clean shutdown from a kill.
                let reaped = pidfd.reap();
                {
                    let mut mirror = control.watched.lock();
                    if mirror.get(&vm_id).is_some_and(|(p, _)| *p == pid) {
                        mirror.remove(&vm_id);
                    }
                }
                if let (Some(caps), Some(cap)) = (&mut caps, cap) {
                    caps.remove(cap);
                }
                on_exit(Exit { vm_id, pid, reaped });
            }
        }
        if woken {
            let _ = control.wake.read();
            let commands = std::mem::take(&mut *control.commands.lock());
            for command in commands {
                match command {
                    Command::Watch { vm_id, what } => {
                        let cap = caps.as_mut().and_then(|c| {
                            c.add(&what.run_dir, what.log_cap).map_err(|e| log::warn!("cannot cap {}: {e}", what.run_dir.display())).ok()
                        });
                        if let Some((_, _, Some(old))) = watched.insert(vm_id, (what.pid, what.pidfd, cap))
                            && let Some(caps) = &mut caps
                        {
                            caps.remove(old);
                        }
                    }
                    Command::Forget { vm_id } => {
                        if let Some((_, _, Some(cap))) = watched.remove(&vm_id)
                            && let Some(caps) = &mut caps
                        {
                            caps.remove(cap);
                        }
                    }
                    Command::Stop => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command as Cmd;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn watched(child: &std::process::Child) -> Watched {
        Watched {
            pid: child.id(),
            pidfd: Pidfd::open(child.id()).unwrap(),
            run_dir: std::env::temp_dir().join("vman-watcher-test"),
            log_cap: 1 << 20,
        }
    }

    #[test]
    fn reports_a_kill_within_milliseconds() {
        let (tx, rx) = mpsc::channel();
        let watcher = Watcher::start(move |exit| tx.send((exit, Instant::now())).unwrap()).unwrap();
        let mut child = Cmd::new("sleep").arg("30").spawn().unwrap();
        watcher.watch("vm-a", watched(&child));
        std::thread::sleep(Duration::from_millis(50));
        let killed_at = Instant::now();
        child.kill().unwrap();
        let (exit, seen_at) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((exit.vm_id.as_str(), exit.pid), ("vm-a", child.id()));
        // How soon is measured by `benches/runtime.rs` (death detection);
        // here only that it comes, from the poll set, not a timeout.
        assert!(seen_at >= killed_at);
        // The watcher reaped its child: no zombie is left, and it knew how
        // the process ended.
        assert_eq!(exit.reaped, Reaped::Signaled(libc::SIGKILL));
        assert!(child.wait().is_err(), "already reaped");
    }

    #[test]
    fn forgotten_processes_are_not_reported() {
        let (tx, rx) = mpsc::channel();
        let watcher = Watcher::start(move |exit| tx.send(exit.vm_id).unwrap()).unwrap();
        let mut a = Cmd::new("sleep").arg("30").spawn().unwrap();
        let mut b = Cmd::new("sleep").arg("30").spawn().unwrap();
        watcher.watch("a", watched(&a));
        watcher.watch("b", watched(&b));
        watcher.forget("a");
        std::thread::sleep(Duration::from_millis(20));
        a.kill().unwrap();
        b.kill().unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "b");
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        a.wait().unwrap(); // forgotten: not reaped by the watcher
        assert!(b.wait().is_err(), "reaped by the watcher");
        drop(watcher); // joins the thread
    }
}
