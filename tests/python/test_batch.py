"""Batches through `import vman`: N VMs from one spec and a naming pattern,
all or none; deleted by batch or by prefix; a started batch whose third
QEMU really fails is rolled back whole (real QEMU, TCG)."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

import vman
from conftest import alive, snapshot


@pytest.fixture
def cluster(base: vman.Manager, tmp_path: Path) -> vman.Manager:
    """`base` plus image "base" (a 64 MiB qcow2)."""
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    base.register_image("base", image)
    return base


def state_files(m: vman.Manager, *dirs: str) -> list[str]:
    root = Path(m.state_dir)
    return sorted(str(p.relative_to(root)) for d in dirs for p in (root / d).iterdir())


def test_a_batch_is_made_listed_and_deleted(cluster):
    m = cluster
    b = m.create_batch("worker{:02}", count=3, template="small", image="base", nics=["lan"], cloud_init=True)
    assert (b.name, b.pattern, b.count, b.state) == ("worker", "worker{:02}", 3, "created")
    assert b.vms == ["worker01", "worker02", "worker03"]
    assert repr(b) == 'Batch(name="worker", pattern="worker{:02}", state="created", vms=["worker01", "worker02", "worker03"])'
    assert m.batches() == [b] and m.batch("worker") == b and hash(m.batch("worker")) == hash(b)
    assert [(a.vm_name, a.ip) for a in m.allocations("lan")] == [
        ("worker01", "10.100.0.2"),
        ("worker02", "10.100.0.3"),
        ("worker03", "10.100.0.4"),
    ]
    vm = m.vm("worker02")
    assert (vm.template, vm.cloud_init, [n.network for n in vm.nics]) == ("small", True, ["lan"])
    assert m.disk("worker02.boot").image == "base"
    assert [e.action for e in m.recent_events(1000) if e.object_kind == "batch"] == ["creating", "created"]

    # Numbered on, under another name, started or not.
    more = m.create_batch("worker{:02}", count=2, first=4, name="more", template="small", image="base")
    assert more.vms == ["worker04", "worker05"]
    assert [x.name for x in m.batches()] == ["more", "worker"]

    assert m.delete_vms(prefix="worker0") == ["worker01", "worker02", "worker03", "worker04", "worker05"]
    assert m.batches() == []
    with pytest.raises(vman.NotFoundError):
        m.batch("worker")
    assert m.vms() == [] and m.allocations("lan") == [] and m.disks() == []
    assert state_files(m, "disks", "seeds") == []

    m.create_batch("db{}", count=2, template="small")
    assert m.delete_batch("db") == ["db1", "db2"]
    with pytest.raises(vman.NotFoundError):
        m.delete_batch("db")


def test_bad_and_taken_names_change_nothing(cluster):
    m = cluster
    m.create_vm("web02", template="small")
    before = snapshot(m)
    for kwargs in [
        dict(pattern="web", count=3),  # no placeholder
        dict(pattern="web{:2}", count=3),  # pads with spaces
        dict(pattern="web{}", count=0),
        dict(pattern="web{}", count=101),
        dict(pattern="web{}", count=2**70),
        dict(pattern="web{}", count=2, first=-1),
        dict(pattern="{}", count=2),  # no batch name to take from it
        dict(pattern="web{}", count=2, nics=[vman.NicSpec("lan", ip="10.100.0.9")]),  # a shared address
    ]:
        with pytest.raises(vman.InvalidArgumentError):
            m.create_batch(template="small", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # InvalidArgumentError is one
        m.create_batch("web{:02", count=3, template="small")
    with pytest.raises(vman.AlreadyExistsError, match='"web02"'):
        m.create_batch("web{:02}", count=3, template="small")
    with pytest.raises(vman.NotFoundError):
        m.create_batch("web{:02}", count=3, first=3, template="nope")
    with pytest.raises(TypeError):
        m.create_batch("web{}", count="3", template="small")  # type: ignore[arg-type]
    assert snapshot(m) == before


def test_a_batch_whose_third_vm_finds_no_address_leaves_nothing(cluster):
    m = cluster
    m.create_network("small", vlan=9, cidr="10.9.0.0/29", reserved=["10.9.0.4-10.9.0.6"])  # .2 and .3 free
    before = (snapshot(m), state_files(m, "disks", "seeds", "locks", "run"))
    with pytest.raises(vman.ExhaustedError):
        m.create_batch("node{}", count=3, template="small", image="base", nics=["lan", "small"])
    assert (snapshot(m), state_files(m, "disks", "seeds", "locks", "run")) == before
    assert m.create_batch("node{}", count=2, template="small", nics=["small"]).vms == ["node1", "node2"]


def qemus_of(state_dir: Path) -> list[int]:
    """Live QEMU processes serving this state directory."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and f"{state_dir}/run/".encode() in cmdline and alive(int(entry.name)):
            out.append(int(entry.name))
    return out


def test_a_started_batch_whose_third_qemu_fails_is_rolled_back_whole(tcg, guest, tmp_path):
    state = Path(tcg.state_dir)
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    tcg.register_image("base", image)
    # QEMU fails for real for worker03: its kernel file does not exist. The
    # wrapper runs as QEMU's unprivileged user, so anyone may read it.
    wrapper = tmp_path / "qemu"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$*" in *guest=worker03,*) exec qemu-system-x86_64 "$@" -kernel /nonexistent/vmlinuz;; esac\n'
        'exec qemu-system-x86_64 "$@"\n'
    )
    wrapper.chmod(0o755)
    tcg.set_setting("qemu_binary", wrapper)  # the directory's: every opener uses it
    failing = vman.Manager(state)
    spec = dict(template="tiny", image="base", nics=["lan"], cloud_init=True, start=True, **guest)
    before = state_files(tcg, "disks", "seeds", "run")
    with pytest.raises(vman.QemuError, match="/nonexistent/vmlinuz"):
        failing.create_batch("worker{:02}", count=3, **spec)  # type: ignore[arg-type]
    assert tcg.vms() == [] and tcg.batches() == [] and tcg.allocations("lan") == [] and tcg.disks() == []
    assert state_files(tcg, "disks", "seeds", "run") == before
    assert qemus_of(state) == []
    actions = [e.action for e in tcg.recent_events(1000) if e.object_kind == "batch"]
    assert actions == ["creating", "rolling_back", "deleted"]
    failing.close()

    # Whole, running, then deleted with its QEMUs.
    b = tcg.create_batch("node{}", count=2, **spec)  # type: ignore[arg-type]
    pids = [tcg.vm(n).pid for n in b.vms]
    assert all(p is not None and alive(p) for p in pids) and sorted(qemus_of(state)) == sorted(pids)
    # Without force neither delete kills them, and nothing is deleted.
    with pytest.raises(vman.InvalidStateError, match="node1, node2.*force"):
        tcg.delete_batch("node")
    with pytest.raises(vman.InvalidStateError, match="node1, node2"):
        tcg.delete_vms(prefix="no")
    assert tcg.batch("node").vms == ["node1", "node2"] and sorted(qemus_of(state)) == sorted(pids)
    assert tcg.delete_batch("node", force=True) == ["node1", "node2"]
    assert qemus_of(state) == [] and tcg.vms() == [] and tcg.disks() == []
    assert os.listdir(state / "disks") == []
    assert not any(stat.S_ISREG(p.stat().st_mode) for p in (state / "seeds").iterdir())
