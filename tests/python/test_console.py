"""The serial console through `import vman`, on a real guest (TCG).

One VM covers the rules: one console per VM (threads and processes alike),
timeouts as vman.TimeoutError, Ctrl-C and close() ending a blocked wait,
ClosedError after close or once the manager is gone, and wait_for_console
refusing a VM without a running QEMU.
"""

import gc
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import vman
from conftest import READY

CHILD = textwrap.dedent("""
    import sys, vman
    m = vman.Manager(sys.argv[1], accel="tcg")
    try:
        m.console("g1")
        print("attached")
    except vman.VmanError as e:
        print(type(e).__name__)
""")


def drain(console: vman.Console) -> None:
    """Reads until the guest has been quiet for half a second."""
    try:
        while console.read(timeout=0.5):
            pass
    except vman.TimeoutError:
        pass


def test_a_vm_without_a_running_qemu_has_no_console(tcg):
    tcg.create_vm("idle", template="tiny")
    with pytest.raises(vman.InvalidStateError) as caught:
        tcg.wait_for_console("idle", READY, timeout=5)
    assert '"idle"' in str(caught.value)
    assert str(tcg.state_dir) not in str(caught.value), "no internal path"
    with pytest.raises(vman.InvalidStateError):
        tcg.console("idle")
    with pytest.raises(vman.InvalidArgumentError):
        tcg.wait_for_console("idle", "(", timeout=1)
    assert tcg.console_tail("idle") == b""


def test_one_console_per_vm_and_what_ends_its_waits(tcg, guest):
    tcg.create_vm("g1", template="tiny", **guest)
    tcg.start("g1")
    tcg.wait_for_console("g1", READY, timeout=90)

    with tcg.console("g1") as console:
        assert not console.closed and console.vm == "g1"
        # A second client: refused here, in another thread, in another process.
        with pytest.raises(vman.InUseError) as caught:
            tcg.console("g1")
        assert '"g1"' in str(caught.value) and str(tcg.state_dir) not in str(caught.value)
        errors = []
        thread = threading.Thread(target=lambda: errors.append(pytest.raises(vman.InUseError, tcg.console, "g1")))
        thread.start()
        thread.join()
        assert len(errors) == 1
        child = subprocess.run([sys.executable, "-c", CHILD, str(tcg.state_dir)], capture_output=True, text=True, timeout=60)
        assert child.stdout.strip() == "InUseError", child.stderr

        # The first client is served as before.
        assert console.write("echo py-$((40+2))\n") == len("echo py-$((40+2))\n")
        assert console.read_until(r"py-42", timeout=20).endswith(b"py-42")
        console.write(b"echo bytes-$((1+1))\n")
        assert console.read_until("bytes-2", timeout=20).endswith(b"bytes-2")
        drain(console)

        # Timeouts are vman's, and also the built-in TimeoutError.
        with pytest.raises(vman.TimeoutError) as caught:
            console.read(timeout=0.3)
        assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, vman.VmanError)
        with pytest.raises(vman.TimeoutError):
            console.read_until("never-there", timeout=0.3)
        with pytest.raises(vman.InvalidArgumentError):
            console.read(size=0, timeout=0)
        with pytest.raises(vman.InvalidArgumentError):
            console.read(size=-1)
        with pytest.raises(vman.InvalidArgumentError):
            console.read_until("(", timeout=1)
        with pytest.raises(TypeError):
            console.write(42)

        # A poll loop of the caller's own.
        assert select.select([console], [], [], 0) == ([], [], [])
        console.write("echo polled\n")
        assert select.select([console], [], [], 20)[0] == [console]

        # Ctrl-C ends a wait without limit; so does close() from another thread.
        drain(console)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            console.read()
        threading.Timer(0.5, console.close).start()
        with pytest.raises(vman.ClosedError):
            console.read()
        assert console.closed

    assert console.closed
    with pytest.raises(vman.ClosedError):
        console.read(timeout=0)
    with pytest.raises(vman.ClosedError):
        console.write("x")
    with pytest.raises(vman.ClosedError):
        console.fileno()
    console.close()

    # Ctrl-C also ends wait_for_console.
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        tcg.wait_for_console("g1", "^never-printed$", timeout=60)

    # A console outlives its manager's handle but answers ClosedError.
    other = vman.Manager(tcg.state_dir, accel="tcg")
    orphan = other.console("g1")
    del other
    gc.collect()
    with pytest.raises(vman.ClosedError):
        orphan.read(timeout=0)
    assert orphan.fileno() >= 0, "the descriptor stays open until close()"
    orphan.close()

    # Stopped: the last run's READY line is in the log but does not count.
    tcg.force_stop("g1")
    with pytest.raises(vman.InvalidStateError):
        tcg.wait_for_console("g1", READY, timeout=5)
    assert b"VMAN-GUEST-READY" in tcg.console_tail("g1")
