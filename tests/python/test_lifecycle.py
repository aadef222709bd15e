"""Real QEMU, real guests (TCG): the lifecycle through `import vman`."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import vman
from conftest import READY, alive


def test_a_guest_through_start_console_pause_resume_and_graceful_stop(tcg, guest):
    tcg.create_vm("g1", template="tiny", nics=["lan"], **guest)
    stream = tcg.subscribe()
    vm = tcg.start("g1")
    pid = vm.pid
    assert (vm.state, vm.accel) == ("running", "tcg") and alive(pid)
    assert repr(vm).endswith(f"pid={vm.pid})")
    assert tcg.wait_for_console("g1", READY, timeout=90) == "VMAN-GUEST-READY"
    assert [e.details["to"] for e in iter(lambda: stream.next(timeout=0.1), None)] == ["starting", "running"]

    # The interactive console: the guest runs a shell on ttyS0.
    with tcg.console("g1") as console:
        console.write("echo sum-$((40+2))\n")
        assert b"sum-42" in console.read_until(r"sum-42", timeout=20)

    with pytest.raises(vman.InvalidStateError):
        tcg.start("g1")
    with pytest.raises(vman.InvalidStateError):
        tcg.delete_vm("g1")
    assert tcg.pause("g1").state == "paused"
    assert tcg.resume("g1").state == "running"
    with pytest.raises(vman.InvalidArgumentError):
        tcg.stop("g1", timeout=-1)
    assert tcg.vm("g1").state == "running"

    vm = tcg.stop("g1", timeout=30)
    assert (vm.state, vm.pid) == ("stopped", None)
    assert not alive(pid)
    assert b"VMAN-POWEROFF" in tcg.console_tail("g1")
    assert "forced" not in [e.action for e in tcg.vm_history("g1")]


def test_an_outside_kill_is_recorded_at_once(tcg, guest):
    tcg.create_vm("victim", template="tiny", **guest)
    pid = tcg.start("victim").pid
    stream = tcg.subscribe()
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    event = stream.next(timeout=5)
    assert event is not None and event.details["to"] == "error"
    assert time.monotonic() - killed < 0.5
    vm = tcg.vm("victim")
    assert vm.state == "error" and "killed" in vm.last_error
    tcg.delete_vm("victim")


CHILD = textwrap.dedent("""
    import sys, time, vman
    m = vman.Manager(sys.argv[1], accel="tcg")
    print("PID", m.start("kept").pid, flush=True)
    time.sleep(600)
""")


def test_vms_outlive_a_killed_python_embedder_and_are_adopted(tcg, guest):
    tcg.create_vm("kept", template="tiny", nics=["lan"], **guest)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tcg.state_dir)], stdout=subprocess.PIPE, text=True)
    with child.stdout:
        pid = int(child.stdout.readline().split()[1])
    child.kill()
    child.wait()
    assert alive(pid), "the VM outlives its embedder"
    adopter = vman.Manager(tcg.state_dir, accel="tcg")
    vm = adopter.vm("kept")
    assert (vm.state, vm.pid) == ("running", pid)
    # Adopted once: a reconcile right after open has nothing to report.
    report = adopter.reconcile()
    assert report.drifts == [] and report.adopted == []
    adopter.wait_for_console("kept", READY, timeout=90)
    assert adopter.stop("kept", timeout=30).state == "stopped"
    assert not alive(pid)


def test_a_failed_start_keeps_qemus_message(tcg, tmp_path):
    bogus = tmp_path / "not-a-kernel"
    bogus.write_bytes(b"hello")
    tcg.create_vm("broken", template="tiny", kernel=str(bogus))
    with pytest.raises(vman.QemuError, match="kernel"):
        tcg.start("broken")
    vm = tcg.vm("broken")
    assert vm.state == "error" and "kernel" in vm.last_error
    with pytest.raises(vman.InvalidArgumentError):
        tcg.create_vm("x", template="tiny", kernel="relative/path")
    with pytest.raises(vman.InvalidArgumentError):
        tcg.create_vm("x", template="tiny", initrd="/tmp/i")  # initrd without kernel
    with pytest.raises(vman.InvalidArgumentError):
        vman.Manager(tmp_path / "other", accel="hvf")


def test_reconcile_resolves_a_vm_stuck_in_starting(tcg):
    tcg.create_vm("stuck", template="tiny")
    # A crash mid-start, simulated from another process: see conftest.snapshot.
    subprocess.run([sys.executable, "-c",
                    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
                    "c.execute(\"UPDATE vms SET state='starting' WHERE name='stuck'\"); c.commit()",
                    str(tcg.state_dir / "vman.db")], check=True)
    report = tcg.reconcile()
    assert [d.vm for d in report.drifts] == ["stuck"]
    assert "starting" in report.drifts[0].found
    assert tcg.vm("stuck").state == "error"


def _status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)


def test_qemu_runs_unprivileged_under_a_seccomp_filter(tcg, guest):
    tcg.create_vm("g1", template="tiny", nics=["lan"], **guest)
    pid = tcg.start("g1").pid
    status = _status(pid)
    assert status["Seccomp"].strip() == "2"
    if os.geteuid() == 0:
        assert all(int(uid) != 0 for uid in status["Uid"].split()), status["Uid"]
    tcg.force_stop("g1")
    with pytest.raises(vman.InvalidArgumentError):
        vman.Manager(tcg.state_dir, qemu_user="no-such-user-here")


def test_eight_threads_racing_create_and_delete_of_one_name(tcg):
    import collections
    import threading

    seen: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def churn() -> None:
        for _ in range(60):
            for op in (lambda: tcg.create_vm("x", template="tiny", nics=["lan"]), lambda: tcg.delete_vm("x")):
                try:
                    op()
                    kind = "ok"
                except vman.VmanError as e:
                    kind = e.kind
                with lock:
                    seen[kind] += 1

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Another thread's delete or re-create is not_found or already_exists
    # to this one: never an internal error, never the wrong VM.
    assert set(seen) <= {"ok", "not_found", "already_exists"}, seen
    assert seen["ok"] > 0
    assert len(tcg.allocations("lan")) == len(tcg.vms())


def test_a_vm_with_nothing_to_boot_is_refused_at_start(tcg):
    tcg.create_vm("empty", template="tiny", nics=["lan"])
    with pytest.raises(vman.InvalidStateError, match="boot source"):
        tcg.start("empty")
    assert tcg.vm("empty").state == "created"
