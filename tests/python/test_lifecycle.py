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
    assert adopter.reconcile().drifts == []
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
