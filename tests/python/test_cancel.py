"""Cancelling waits: vman.Cancel tokens, and Ctrl-C (SIGINT) on the main
thread, which stays KeyboardInterrupt and leaves the VM consistent."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import vman
from conftest import READY, alive


def child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdout is not None
    got = proc.stdout.readline().strip()
    assert got == line, f"child said {got!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"


def test_a_token_cancels_an_event_wait_from_another_thread_and_the_stream_goes_on(manager):
    stream = manager.subscribe()
    cancel = vman.Cancel()
    assert not cancel.cancelled and repr(cancel) == "<vman.Cancel not cancelled>"
    threading.Timer(0.2, cancel.cancel).start()
    with pytest.raises(vman.CancelledError) as caught:
        stream.next(cancel=cancel)
    assert caught.value.kind == "cancelled" and cancel.cancelled
    assert not isinstance(caught.value, (KeyboardInterrupt, TimeoutError))
    manager.create_template("t", vcpus=1, memory_mib=256, disk_gib=1)
    event = stream.next(timeout=5)
    assert event is not None and (event.object_name, event.action) == ("t", "created")


def test_an_already_cancelled_token_changes_nothing(base):
    base.create_vm("v", template="small")
    cancel = vman.Cancel()
    cancel.cancel()
    before = base.recent_events(1000)
    for call in [
        lambda: base.start("v", cancel=cancel),
        lambda: base.stop("v", cancel=cancel),
        lambda: base.restart("v", cancel=cancel),
        lambda: base.detach_disk("v", "d", cancel=cancel),
        lambda: base.create_snapshot("v", "s", cancel=cancel),
        lambda: base.revert_snapshot("v", "s", cancel=cancel),
        lambda: base.delete_snapshot("v", "s", cancel=cancel),
        lambda: base.wait_for_console("v", "x", cancel=cancel),
    ]:
        with pytest.raises(vman.CancelledError):
            call()
    assert base.recent_events(1000) == before
    assert base.vm("v").state == "created"


EVENTS_CHILD = """
    import sys, vman
    m = vman.Manager(sys.argv[1])
    stream = m.subscribe()
    print("WAITING", flush=True)
    for event in stream:
        pass
"""


def test_ctrl_c_ends_an_event_iteration(tmp_path):
    proc = child(EVENTS_CHILD, str(tmp_path / "state"))
    wait_for_line(proc, "WAITING")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err


LOG_CHILD = """
    import logging, os, signal, sys, vman

    class Interrupting(logging.Handler):
        # Sends SIGINT to this process from inside the first record vman
        # logs: Python runs the SIGINT handler before this handler returns,
        # so the KeyboardInterrupt is raised inside the log call vman made.
        def emit(self, record):
            if not getattr(self, "sent", False):
                self.sent = True
                print("LOGGED", record.name, record.getMessage()[:40], flush=True)
                os.kill(os.getpid(), signal.SIGINT)

    log = logging.getLogger("vman")
    log.setLevel(logging.DEBUG)
    log.addHandler(Interrupting())
    os.makedirs(sys.argv[1], mode=0o777)
    os.chmod(sys.argv[1], 0o777)  # makes vman warn while it opens
    try:
        m = vman.Manager(sys.argv[1])
        for _ in range(1000):  # check points, where the interpreter raises it
            pass
        print("NOT INTERRUPTED", flush=True)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    # The interrupt was delivered once, not twice, and vman still works.
    print("TEMPLATES", len(vman.Manager(sys.argv[1]).templates()), flush=True)
"""


def test_a_keyboard_interrupt_raised_inside_a_log_record_reaches_the_caller(tmp_path):
    """The bug: a SIGINT handled inside the log bridge became SystemError
    ("returned a result with an exception set") or was lost."""
    proc = child(LOG_CHILD, str(tmp_path / "state"))
    out, err = proc.communicate(timeout=60)
    lines = out.splitlines()
    assert lines[0].startswith("LOGGED vman"), (out, err)
    assert lines[1:] == ["KeyboardInterrupt", "TEMPLATES 0"], (out, err)
    assert "SystemError" not in err, err


FILTER_CHILD = """
    import logging, os, sys, vman

    def broken(record):
        raise ValueError("a logging filter with a bug")

    reported = []
    sys.unraisablehook = lambda u: reported.append(type(u.exc_value).__name__)
    handler = logging.StreamHandler(open(os.devnull, "w"))
    handler.addFilter(broken)
    log = logging.getLogger("vman")
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    os.makedirs(sys.argv[1], mode=0o777)
    os.chmod(sys.argv[1], 0o777)
    m = vman.Manager(sys.argv[1])
    print("OPENED", sorted(set(reported)), len(reported) > 0, flush=True)
"""


def test_a_failing_logging_setup_is_reported_not_raised_from_a_vman_call(tmp_path):
    proc = child(FILTER_CHILD, str(tmp_path / "state"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "OPENED ['ValueError'] True", (out, err)


STOP_CHILD = """
    import logging, sys, vman
    # Every record of vman reaches Python's logging while the stop runs.
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    m = vman.Manager(sys.argv[1], accel="tcg", network="isolated")
    print("STOPPING", flush=True)
    m.stop("stubborn", timeout=600)
    print("STOPPED", flush=True)
"""


def test_ctrl_c_during_a_graceful_stop_is_keyboard_interrupt_and_leaves_the_vm_running(tcg, guest):
    cmdline = guest["cmdline"] + " vman.acpi=ignore"
    tcg.create_vm("stubborn", template="tiny", **{**guest, "cmdline": cmdline})
    pid = tcg.start("stubborn").pid
    assert tcg.wait_for_console("stubborn", READY, timeout=90) == "VMAN-GUEST-READY"

    proc = child(STOP_CHILD, str(tcg.state_dir))
    wait_for_line(proc, "STOPPING")
    deadline = time.monotonic() + 60
    while tcg.vm("stubborn").state != "stopping":
        assert time.monotonic() < deadline, "the child never began the stop"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT, (out, err)
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "SystemError" not in err and "STOPPED" not in out

    # Nothing was forced: the same QEMU runs, recorded running, the cancel
    # in its history; another manager finds nothing to repair.
    vm = tcg.vm("stubborn")
    assert (vm.state, vm.pid) == ("running", pid) and alive(pid)
    actions = [e.action for e in tcg.vm_history("stubborn")]
    assert "cancelled" in actions and "forced" not in actions
    cancelled = [e for e in tcg.vm_history("stubborn") if e.action == "cancelled"][-1]
    assert cancelled.details["operation"] == "stop"
    reopened = vman.Manager(tcg.state_dir, accel="tcg", network="isolated")
    assert reopened.reconcile().drifts == []

    # A token from another thread does the same, as CancelledError.
    cancel = vman.Cancel()
    threading.Timer(0.5, cancel.cancel).start()
    with pytest.raises(vman.CancelledError, match="left running"):
        reopened.stop("stubborn", timeout=600, cancel=cancel)
    assert reopened.vm("stubborn").state == "running"

    vm = reopened.stop("stubborn", timeout=1)
    assert vm.state == "stopped" and not alive(pid)
    assert "forced" in [e.action for e in reopened.vm_history("stubborn")]


CONSOLE_CHILD = """
    import sys, vman
    m = vman.Manager(sys.argv[1], accel="tcg", network="isolated")
    print("WAITING", flush=True)
    m.wait_for_console("g", "^NEVER-PRINTED$", timeout=600)
"""


def test_ctrl_c_ends_a_console_wait_and_a_start_waits_for_no_one(tcg, guest):
    tcg.create_vm("g", template="tiny", **guest)
    tcg.start("g")
    proc = child(CONSOLE_CHILD, str(tcg.state_dir))
    wait_for_line(proc, "WAITING")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT, err
    assert tcg.vm("g").state == "running"
    tcg.force_stop("g")
