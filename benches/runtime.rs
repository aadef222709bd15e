//! The QEMU runtime against raw QEMU, side by side and interleaved in one
//! run (vman, raw, vman, raw, …), with the same guest and exactly the
//! argument vector vman gave its QEMU (read back from /proc).
//!
//! - compare/start: `Manager::start` (call → running, QMP answered) against
//!   making the two listening sockets vman makes, spawning QEMU with vman's
//!   argv (same descriptors, same user, own session) → QMP `query-status`
//!   answered. Target: ≤ 1.05×.
//! - compare/force_stop: `Manager::force_stop` against QMP `quit` → process
//!   exit (its pidfd readable). Target: ≤ 1.2×.
//! - compare/graceful_stop: `Manager::stop` of a booted ACPI guest against
//!   QMP `system_powerdown` → exit of the same guest booted by raw QEMU (the
//!   guest's own shutdown time). Target: ≤ raw + 10 ms. The guest's time
//!   varies by tens of milliseconds between boots, so vman's share after
//!   QEMU's exit (exit → `stop` returned) is also reported on its own
//!   (runtime/graceful_stop_tail).
//! - death detection: `kill -9` of QEMU → the event on a live stream.
//!
//! Start and force stop use a VM with a blank disk (SeaBIOS, nothing to
//! boot); graceful stop the test guest (tests/guest/build.sh), which powers
//! off on the ACPI button. Everything runs under TCG.
//!
//! Writes JSON lines to `$VMAN_BENCH_OUT` (the issue-11 result format) and
//! prints a table. `VMAN_BENCH_ROUNDS` sets the samples per series (20);
//! `VMAN_BENCH_GRACEFUL` the graceful-stop samples (8; 0 skips them).
//! Run: cargo bench -p vman-core --bench runtime

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a failure is a failed run

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vman_core::{Accel, BootSpec, Manager, NetworkMode, OpenOptions, TemplateSpec, VmSpec};

#[path = "raw_qemu.rs"]
mod raw_qemu;
#[path = "support.rs"]
mod support;
use raw_qemu::{RawRecipe, wait_exit};
use support::{Cleanup, Series, emit, median};

const READY: &str = "VMAN-GUEST-READY";
/// After the guest says it is up, both sides let it settle as long (its
/// console shell starts after the line) before pressing the power button.
const SETTLE: Duration = Duration::from_secs(1);

fn options() -> OpenOptions {
    OpenOptions { accel: Some(Accel::Tcg), network: Some(NetworkMode::Isolated), ..OpenOptions::default() }
}

fn env_count(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A thread that returns the instant process `pid` exits (its pidfd
/// becomes readable), whoever reaps it.
fn exit_watcher(pid: u32) -> std::thread::JoinHandle<Instant> {
    // SAFETY: pidfd_open reads no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as i32, 0) } as i32;
    assert!(fd >= 0, "pidfd_open");
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::thread::spawn(move || {
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, count 1.
        unsafe { libc::poll(&mut p, 1, 60_000) };
        Instant::now()
    })
}

fn wait_for_log(path: &Path, pattern: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).unwrap_or_default().contains(pattern) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{pattern} not seen in {} within {timeout:?}", path.display());
}

fn guest() -> Option<(PathBuf, PathBuf)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/guest/build.sh");
    let out = Command::new(&script).output().ok().filter(|o| o.status.success())?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Some((dir.join("vmlinuz"), dir.join("initrd.img")))
}

fn main() {
    let rounds = env_count("VMAN_BENCH_ROUNDS", 20);
    let graceful_rounds = env_count("VMAN_BENCH_GRACEFUL", 8);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let _cleanup = Cleanup::under(dir.path().to_path_buf());
    let vman = Manager::open(&state, &options()).expect("open");
    vman.create_template(&TemplateSpec::new("t", 1, 128, 1)).expect("template");
    vman.create_vm(&VmSpec { blank_disk: true, ..VmSpec::new("bench", "t") }).expect("vm");

    // vman's exact argv, from its QEMU; raw runs use the stopped VM's run
    // directory and disk, so every path in it is the same.
    let pid = vman.start("bench").expect("start").pid.expect("pid");
    let recipe = RawRecipe::of(pid, None, None);
    vman.force_stop("bench").expect("stop");

    // "blank": a blank boot disk (the comparison's "none" boots a kernel).
    let params = serde_json::json!({"disk": "blank"});
    let series = |bench, imp| Series::new(bench, imp, params.clone(), "s");
    let (mut v_start, mut q_start, mut v_stop, mut q_stop) = (
        series("compare/start", "vman-rust"),
        series("compare/start", "qemu"),
        series("compare/force_stop", "vman-rust"),
        series("compare/force_stop", "qemu"),
    );
    let mut death = series("runtime/death_detection", "vman-rust");
    // One unmeasured round of each first (page cache, prepared statements).
    // Rounds alternate which side goes first (A B, B A, …), so neither
    // always follows the other's teardown.
    for round in 0..=rounds {
        let vman_side = || {
            let t = Instant::now();
            vman.start("bench").expect("start");
            let start = t.elapsed().as_secs_f64();
            let t = Instant::now();
            vman.force_stop("bench").expect("stop");
            (start, t.elapsed().as_secs_f64())
        };
        let raw_side = || {
            let t = Instant::now();
            let (mut child, mut qmp) = recipe.start();
            let start = t.elapsed().as_secs_f64();
            let t = Instant::now();
            writeln!(qmp, r#"{{"execute":"quit"}}"#).expect("quit");
            (start, wait_exit(&mut child).duration_since(t).as_secs_f64())
        };
        let ((start, stop), (raw_start, raw_stop)) = if round % 2 == 0 {
            let v = vman_side();
            (v, raw_side())
        } else {
            let r = raw_side();
            (vman_side(), r)
        };
        if round > 0 {
            v_start.samples.push(start);
            v_stop.samples.push(stop);
            q_start.samples.push(raw_start);
            q_stop.samples.push(raw_stop);
        }
    }
    for _ in 0..rounds {
        let pid = vman.start("bench").expect("start").pid.expect("pid");
        let stream = vman.subscribe().expect("subscribe");
        let t = Instant::now();
        // SAFETY: kill(2) on the pid vman just started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        stream.next(Duration::from_secs(5)).expect("stream open").expect("death event");
        death.samples.push(t.elapsed().as_secs_f64());
    }
    let mut all = vec![v_start, q_start, v_stop, q_stop, death];

    if graceful_rounds > 0
        && let Some((kernel, initrd)) = guest()
    {
        let boot = BootSpec::kernel(kernel.to_string_lossy()).initrd(initrd.to_string_lossy()).cmdline("console=ttyS0 quiet panic=-1");
        vman.create_vm(&VmSpec { boot: Some(boot), ..VmSpec::new("acpi", "t") }).expect("acpi vm");
        let pid = vman.start("acpi").expect("start").pid.expect("pid");
        let recipe = RawRecipe::of(pid, Some(&kernel), Some(&initrd));
        vman.force_stop("acpi").expect("stop");
        let log = recipe.serial_log.clone().expect("serial log");
        // The kernel-booted guest, as the comparison's disk "none"; kept
        // apart from the comparison's own series by "run".
        let graceful = |bench, imp| Series::new(bench, imp, serde_json::json!({"disk": "none", "run": "runtime"}), "s");
        let (mut v, mut q) = (graceful("compare/graceful_stop", "vman-rust"), graceful("compare/graceful_stop", "qemu"));
        let mut tail = graceful("runtime/graceful_stop_tail", "vman-rust");
        for _ in 0..graceful_rounds {
            let pid = vman.start("acpi").expect("start").pid.expect("pid");
            vman.wait_for_console("acpi", &format!("^{READY}$"), Duration::from_secs(60)).expect("guest up");
            std::thread::sleep(SETTLE);
            // The guest's share varies by tens of milliseconds from boot to
            // boot; vman's share after QEMU exits is measured on its own.
            let exited = exit_watcher(pid);
            let t = Instant::now();
            vman.stop("acpi", Duration::from_secs(30)).expect("graceful stop");
            let done = Instant::now();
            v.samples.push(done.duration_since(t).as_secs_f64());
            tail.samples.push(done.duration_since(exited.join().expect("exit watcher")).as_secs_f64());

            let _ = std::fs::remove_file(&log);
            let (mut child, mut qmp) = recipe.start();
            wait_for_log(&log, READY, Duration::from_secs(60));
            std::thread::sleep(SETTLE);
            let t = Instant::now();
            writeln!(qmp, r#"{{"execute":"system_powerdown"}}"#).expect("powerdown");
            q.samples.push(wait_exit(&mut child).duration_since(t).as_secs_f64());
        }
        all.extend([v, q, tail]);
    }
    emit(&all);
    let ratio = |a: usize, b: usize| median(&all[a].samples) / median(&all[b].samples);
    println!("start vman/qemu {:.3}× (≤ 1.05×); force stop vman/qemu {:.3}× (≤ 1.2×)", ratio(0, 1), ratio(2, 3));
    if all.len() > 5 {
        println!("graceful stop vman − qemu {:+.1} ms (≤ +10 ms)", (median(&all[5].samples) - median(&all[6].samples)) * 1e3);
    }
}
