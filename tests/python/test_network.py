"""Host networking through `import vman`: user mode, the privilege check,
and bridged mode inside a network namespace of the test's own."""

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import vman
from conftest import READY, REPO


def test_user_mode_gives_the_allocated_address_and_forwards_ssh(tmp_path, guest):
    m = vman.Manager(tmp_path / "state", accel="tcg", network="user")
    m.create_template("tiny", vcpus=1, memory_mib=192, disk_gib=1)
    m.create_network("lan", vlan=100, cidr="10.100.0.0/24", reserved=["10.100.0.2-10.100.0.20"])
    cmdline = guest["cmdline"] + " vman.net=dhcp"
    m.create_vm("u1", template="tiny", nics=["lan"], kernel=guest["kernel"], initrd=guest["initrd"], cmdline=cmdline)
    vm = m.start("u1")
    (forward,) = vm.port_forwards
    assert (forward.nic_index, forward.guest_port, forward.host_address) == (0, 22, "127.0.0.1")
    assert vm.nics[0].host_interface is None
    m.wait_for_console("u1", READY, timeout=120)
    assert m.wait_for_console("u1", r"^VMAN-DHCP eth0 ", timeout=5) == "VMAN-DHCP eth0 10.100.0.21/24"
    # QEMU accepts on the host side at once and closes until the guest's
    # responder listens, so retry as an SSH client would.
    banner, deadline = b"", time.monotonic() + 30
    while b"VMAN-SSH-OK" not in banner and time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", forward.host_port), timeout=5) as conn:
            try:
                banner = conn.recv(100)
            except socket.timeout:
                banner = b""
        time.sleep(0.2)
    assert b"VMAN-SSH-OK" in banner
    assert m.force_stop("u1").port_forwards == []


def test_bridged_mode_without_privilege_names_the_alternative(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to drop to an unprivileged user (setpriv)")
    # pytest's temp root is private to root; nobody needs a directory it can use.
    import tempfile
    base = tempfile.mkdtemp(prefix="vman-nobody-", dir="/tmp")
    os.chmod(base, 0o777)
    state = os.path.join(base, "state")
    code = textwrap.dedent(f"""
        import vman
        try:
            vman.Manager({str(state)!r}, network="bridged")
        except vman.PermissionDeniedError as e:
            print("DENIED", isinstance(e, PermissionError), e)
    """)
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "python")},
    )
    shutil.rmtree(base, ignore_errors=True)
    assert out.stdout.startswith("DENIED True"), out.stdout + out.stderr
    assert "CAP_NET_ADMIN" in out.stdout and "vman settings set network user" in out.stdout


BRIDGED = textwrap.dedent("""
    import subprocess, sys, vman
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    state, kernel, initrd, cmdline = sys.argv[1:5]
    links = lambda: sorted(l.split(": ")[1].split("@")[0] for l in
                           subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines())
    m = vman.Manager(state, accel="tcg", network="bridged")
    m.create_template("tiny", vcpus=1, memory_mib=192, disk_gib=1)
    m.create_network("v100", vlan=100, cidr="10.100.0.0/24")
    m.create_vm("b1", template="tiny", nics=["v100"], kernel=kernel, initrd=initrd, cmdline=cmdline + " vman.net=dhcp")
    vm = m.start("b1")
    tap = vm.nics[0].host_interface
    assert links() == sorted(["lo", tap, "vmbr100"]), links()
    m.wait_for_console("b1", r"^VMAN-GUEST-READY$", timeout=120)
    line = m.wait_for_console("b1", r"^VMAN-DHCP eth0 ", timeout=5)
    assert line == "VMAN-DHCP eth0 " + vm.nics[0].ip + "/24", line
    m.stop("b1", timeout=30)
    assert links() == ["lo"], links()
    print("BRIDGED-OK")
""")


def test_bridged_mode_in_a_namespace_of_its_own(tmp_path, guest):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bridged networking must be tested in CI (needs root and unshare)")
        pytest.skip("needs root and unshare for a network namespace")
    out = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", BRIDGED, str(tmp_path / "state"),
         guest["kernel"], guest["initrd"], guest["cmdline"]],
        capture_output=True, text=True, timeout=240,
    )
    assert "BRIDGED-OK" in out.stdout, out.stdout + out.stderr
