import json
import os
import tempfile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vman

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def manager(tmp_path: Path) -> vman.Manager:
    return vman.Manager(tmp_path / "state")


@pytest.fixture
def base(manager: vman.Manager) -> vman.Manager:
    """A manager with template "small" and network "lan" (VLAN 100, /24)."""
    manager.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
    manager.create_network("lan", vlan=100, cidr="10.100.0.0/24")
    return manager


TABLES = ["templates", "networks", "network_reserved", "free_ranges", "vms", "nics", "disks", "images", "snapshots", "batches", "events"]


_SNAPSHOT = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
print(json.dumps([(t, conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()) for t in sys.argv[2:]]))
"""


def snapshot(manager: vman.Manager) -> list:
    """Every row of every table, read by Python's sqlite3 in another process.

    Not in this process: vman links its own SQLite, and two SQLite copies in
    one process do not see each other's POSIX locks (closing one copy's file
    descriptor even drops the other's locks).
    """
    db = str(Path(manager.state_dir) / "vman.db")
    out = subprocess.run([sys.executable, "-c", _SNAPSHOT, db, *TABLES], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _skip_or_fail(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this must not be skipped)")
    pytest.skip(f"{reason}; run scripts/setup to enable")


@pytest.fixture(scope="session")
def guest() -> dict:
    """The test guest's kernel and initrd (tests/guest/build.sh, cached)."""
    if shutil.which("qemu-system-x86_64") is None:
        _skip_or_fail("qemu-system-x86_64 is not installed")
    out = subprocess.run([str(REPO / "tests" / "guest" / "build.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        _skip_or_fail(f"the test guest did not build: {out.stderr[-500:]}")
    d = Path(out.stdout.strip())
    return {"kernel": str(d / "vmlinuz"), "initrd": str(d / "initrd.img"), "cmdline": "console=ttyS0 quiet panic=-1"}


OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"


@pytest.fixture(scope="session")
def boot_media(guest: dict) -> dict:
    """The guest on media that boot through the firmware (tests/guest/disk.sh,
    cached): "raw" and "qcow2" disks (SeaBIOS and OVMF) and an "iso"; the
    guest prints `VMAN-BOOT disk|cdrom bios|uefi`."""
    out = subprocess.run([str(REPO / "tests" / "guest" / "disk.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        _skip_or_fail(f"the boot media did not build: {out.stderr[-500:]}")
    d = Path(out.stdout.strip())
    return {"raw": str(d / "disk.raw"), "qcow2": str(d / "disk.qcow2"), "iso": str(d / "boot.iso")}


@pytest.fixture(autouse=True)
def _qemu_user_can_pass(tmp_path: Path) -> None:
    """As root, vman runs QEMU as an unprivileged user, who must pass through
    the directories above a state directory to reach its run directory (vman
    refuses to start a VM otherwise). pytest makes its directories 0700:
    open them for passing through only, not for reading."""
    if os.geteuid() != 0:
        return
    top = Path(tempfile.gettempdir())
    for d in [tmp_path, *tmp_path.parents]:
        if d == top or d == d.parent:
            break
        d.chmod(d.stat().st_mode | 0o011)


@pytest.fixture
def tcg(tmp_path: Path) -> vman.Manager:
    """A manager that runs guests under TCG (KVM cannot run them here)."""
    # Isolated NICs: the host's interfaces are not these tests' to touch
    # (networking is tested in namespaces of its own).
    m = vman.Manager(tmp_path / "state", accel="tcg", network="isolated")
    m.create_template("tiny", vcpus=1, memory_mib=256, disk_gib=1)
    m.create_network("lan", vlan=100, cidr="10.100.0.0/24")
    return m


READY = r"^VMAN-GUEST-READY$"


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie awaiting its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(autouse=True)
def _reap_vm_processes(tmp_path: Path):
    """After each test, kill any QEMU or dnsmasq still serving its tmp_path.

    VMs outlive their embedder by design, so a test failing half-way would
    otherwise leave guests (and DHCP servers) running on the machine.
    """
    yield
    needle = str(tmp_path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and (b"qemu-system" in cmdline or b"dnsmasq" in cmdline):
            try:
                os.kill(int(entry.name), 9)
            except ProcessLookupError:
                pass
