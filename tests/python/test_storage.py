"""Disks, images and a VM's boot, display and cloud-init options through
`import vman`: real qemu-img, a real SQLite file and, for hot-plug, a real
guest under TCG whose kernel reports its disks over the serial console."""

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import vman
from conftest import READY, snapshot

MIB = 1024 * 1024


def files_under(manager: vman.Manager) -> list:
    """Every file vman keeps for disks and images."""
    root = Path(manager.state_dir)
    return sorted(str(p.relative_to(root)) for d in ["disks", "images"] if (root / d).exists() for p in (root / d).iterdir())


def unchanged(manager, exc, fn, *args, **kwargs):
    """Asserts the call raises `exc` and leaves every table and file as it was."""
    before, files = snapshot(manager), files_under(manager)
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert snapshot(manager) == before, f"{info.value!r} changed the store"
    assert files_under(manager) == files, f"{info.value!r} changed the files"
    return info.value


def qemu_img_info(path: str) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def m(manager: vman.Manager) -> vman.Manager:
    manager.create_template("small", vcpus=1, memory_mib=64, disk_gib=1)
    return manager


def test_disks_are_created_imported_resized_attached_detached_and_deleted(m, tmp_path):
    d = m.create_disk("data", 64 * MIB)
    assert (d.name, d.format, d.size_bytes, d.state, d.owned) == ("data", "qcow2", 64 * MIB, "available", True)
    assert (d.vm, d.slot, d.image, d.delete_with_vm, d.last_error) == (None, None, None, False, None)
    assert d.path.startswith(str(m.state_dir)) and os.path.exists(d.path) and d.created_at_ms > 0
    assert repr(d) == f'Disk(name="data", format="qcow2", size_bytes={64 * MIB}, state="available")'
    assert m.disk("data") == d and hash(m.disk("data")) == hash(d)  # equal by value
    with pytest.raises(AttributeError):
        d.size_bytes = 1  # records are frozen

    raw = m.create_disk("scratch", 8 * MIB, format="raw")
    assert raw.format == "raw" and os.path.getsize(raw.path) == 8 * MIB
    assert [x.name for x in m.disks()] == ["data", "scratch"]
    assert m.disks(state="attached") == [] and len(m.disks(state="available")) == 2
    assert vman.DISK_STATES == ["creating", "available", "attaching", "attached", "detaching", "deleting", "error"]

    # Imported: copied in with its format probed, or used in place (inside the state directory).
    source = tmp_path / "import.raw"
    source.write_bytes(b"\x07" * (4 * MIB))
    imported = m.import_disk("imported", source)
    assert (imported.format, imported.size_bytes, imported.owned) == ("raw", 4 * MIB, True)
    assert imported.path != str(source) and Path(imported.path).read_bytes() == source.read_bytes()
    inside = Path(m.state_dir) / "kept.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(inside), "2M"], check=True)
    kept = m.import_disk("kept", str(inside), format="qcow2", copy=False)
    assert (kept.path, kept.owned, kept.format) == (str(inside), False, "qcow2")
    m.delete_disk("kept")
    assert inside.exists(), "a file used in place is never removed"
    m.delete_disk("imported")
    assert not os.path.exists(imported.path)

    # Grow; a shrink loses data, so it needs force.
    assert m.resize_disk("data", 96 * MIB).size_bytes == 96 * MIB
    assert qemu_img_info(d.path)["virtual-size"] == 96 * MIB
    unchanged(m, vman.InvalidArgumentError, m.resize_disk, "data", 32 * MIB)
    assert m.resize_disk("data", 32 * MIB, force=True).size_bytes == 32 * MIB

    # To a VM that does not run: recorded, in slot order, for its next start.
    m.create_vm("v", template="small")
    a = m.attach_disk("v", "data")
    assert (a.state, a.vm, a.slot) == ("attached", "v", 0)
    assert repr(a).endswith('vm="v", slot=0)')
    assert m.attach_disk("v", "scratch").slot == 1
    assert [x.name for x in m.disks(vm="v")] == ["data", "scratch"]
    unchanged(m, vman.InvalidStateError, m.attach_disk, "v", "data")
    err = unchanged(m, vman.InvalidStateError, m.delete_disk, "data")
    assert "detach it first" in str(err)
    det = m.detach_disk("v", "data")
    assert (det.state, det.vm, det.slot) == ("available", None, None)
    assert m.disk("scratch").slot == 1, "the others keep their slots"
    assert m.attach_disk("v", "data").slot == 0, "the lowest free slot"
    actions = [(e.object_kind, e.object_name, e.action) for e in m.recent_events(100) if e.object_kind == "disk"]
    assert ("disk", "data", "attached") in actions and ("disk", "data", "detached") in actions

    # Deleting the VM detaches the disks it did not make; they stay.
    m.delete_vm("v")
    assert [(x.name, x.state, x.vm) for x in m.disks()] == [("data", "available", None), ("scratch", "available", None)]
    m.delete_disk("data")
    assert not os.path.exists(d.path)
    unchanged(m, vman.NotFoundError, m.disk, "data")


def test_wrong_types_are_type_errors_and_change_nothing(m, tmp_path):
    m.create_disk("taken", 8 * MIB)
    m.create_vm("v", template="small")
    calls = [
        (m.create_disk, (1, MIB), {}),
        (m.create_disk, ("a", "64M"), {}),
        (m.create_disk, ("a", 1.5 * MIB), {}),
        (m.create_disk, ("a", MIB), {"format": 2}),
        (m.import_disk, ("a", 5), {}),
        (m.import_disk, ("a", str(tmp_path / "x")), {"copy": "yes"}),
        (m.disks, (), {"vm": 3}),
        (m.resize_disk, ("taken", "big"), {}),
        (m.resize_disk, ("taken", 16 * MIB), {"force": 1}),
        (m.attach_disk, ("v", None), {}),
        (m.detach_disk, ("v", "taken"), {"timeout": "soon"}),
        (m.register_image, ("i", str(tmp_path / "x")), {"os": 12}),
        (m.register_image, ("i", None), {}),
        (m.create_vm, ("w",), {"template": "small", "blank_disk": "yes"}),
        (m.create_vm, ("w",), {"template": "small", "cdrom": 7}),
        (m.create_vm, ("w",), {"template": "small", "display": None}),
        (m.create_vm, ("w",), {"template": "small", "user_data": b"#cloud-config"}),
    ]
    for fn, args, kwargs in calls:
        unchanged(m, TypeError, fn, *args, **kwargs)


def test_bad_values_are_typed_errors_and_change_nothing(m, tmp_path):
    m.create_disk("taken", 8 * MIB)
    m.create_vm("v", template="small")
    img = tmp_path / "x.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "16M"], check=True)
    link = tmp_path / "link.qcow2"
    link.symlink_to(img)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(img), str(overlay)], check=True)
    not_utf8 = os.fsdecode(str(tmp_path).encode() + b"/\xff.img")
    iso = tmp_path / "install.iso"
    iso.write_bytes(b"\0" * MIB)

    invalid = [
        (m.create_disk, ("a", 0), {}, "disk size"),
        (m.create_disk, ("a", -MIB), {}, "disk size"),
        (m.create_disk, ("a", 2**64), {}, "disk size"),
        (m.create_disk, ("a", 2**200), {}, "disk size"),
        (m.create_disk, ("a", MIB + 1), {}, "512"),
        (m.create_disk, ("a", MIB), {"format": "vmdk"}, "qcow2, raw"),
        (m.create_disk, ("../a", MIB), {}, "disk name"),
        (m.import_disk, ("a", "x.qcow2"), {}, "absolute"),
        (m.import_disk, ("a", "/dev/zero"), {}, "regular file"),
        (m.import_disk, ("a", link), {}, "symlink"),
        (m.import_disk, ("a", text), {"format": "qcow2"}, "not a readable disk image"),
        (m.import_disk, ("a", overlay), {}, "backing file"),
        (m.import_disk, ("a", img), {"copy": False}, "state directory"),
        (m.import_disk, ("a", not_utf8), {}, "not UTF-8"),
        (m.import_disk, ("a", img), {"format": "iso"}, "qcow2, raw"),
        (m.disks, (), {"state": "asleep"}, "disk state"),
        (m.resize_disk, ("taken", MIB), {}, "force"),
        (m.resize_disk, ("taken", 0), {"force": True}, "disk size"),
        (m.detach_disk, ("v", "taken"), {"timeout": -1}, "timeout"),
        (m.register_image, ("i", img), {"arch": "aarch64"}, "x86_64"),
        (m.register_image, ("i", img), {"firmware": "efi"}, "bios, uefi"),
        (m.register_image, ("i", img), {"copy": False}, "state directory"),
        (m.register_image, ("i", "/dev/zero"), {}, "regular file"),
        (m.register_image, ("i", img), {"description": "x" * 100_000}, "description"),
        (m.create_vm, ("w",), {"template": "small", "display": "sdl"}, "vnc-unix"),
        (m.create_vm, ("w",), {"template": "small", "firmware": "efi"}, "bios, uefi"),
        (m.create_vm, ("w",), {"template": "small", "image": "i", "blank_disk": True}, "not both"),
        (m.create_vm, ("w",), {"template": "small", "boot_from_cdrom": True}, "CD-ROM"),
        (m.create_vm, ("w",), {"template": "small", "cdrom": "/dev/zero"}, "regular file"),
        (m.create_vm, ("w",), {"template": "small", "user_data": "#cloud-config\n"}, "cloud_init"),
    ]
    for fn, args, kwargs, needle in invalid:
        err = unchanged(m, vman.InvalidArgumentError, fn, *args, **kwargs)
        assert isinstance(err, ValueError)
        assert needle in str(err), f"{fn.__name__}{args}{kwargs}: {err}"
    for fn, args, kwargs, cls in [
        (m.create_disk, ("taken", MIB), {}, vman.AlreadyExistsError),
        (m.disk, ("nope",), {}, vman.NotFoundError),
        (m.disks, (), {"vm": "nope"}, vman.NotFoundError),
        (m.attach_disk, ("nope", "taken"), {}, vman.NotFoundError),
        (m.attach_disk, ("v", "nope"), {}, vman.NotFoundError),
        (m.detach_disk, ("v", "taken"), {}, vman.InvalidStateError),
        (m.delete_disk, ("nope",), {}, vman.NotFoundError),
        (m.image, ("nope",), {}, vman.NotFoundError),
        (m.delete_image, ("nope",), {}, vman.NotFoundError),
        (m.create_vm, ("w",), {"template": "small", "image": "nope"}, vman.NotFoundError),
    ]:
        unchanged(m, cls, fn, *args, **kwargs)
    assert [d.name for d in m.disks()] == ["taken"] and m.images() == []


def test_images_are_hashed_cloned_and_kept_while_a_clone_exists(m, tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(b"\x07" * (4 * MIB))
    image = m.register_image("base", base, os="test-os", description="four MiB of sevens")
    assert (image.name, image.os, image.arch, image.description) == ("base", "test-os", "x86_64", "four MiB of sevens")
    assert (image.format, image.virtual_size, image.firmware, image.owned) == ("raw", 4 * MIB, "bios", True)
    assert image.sha256 == hashlib.sha256(base.read_bytes()).hexdigest()
    assert image.path.startswith(str(m.state_dir)) and Path(image.path).read_bytes() == base.read_bytes()
    assert repr(image) == f'Image(name="base", os="test-os", format="raw", virtual_size={4 * MIB}, firmware="bios")'
    assert m.images() == [image] and m.image("base") == image
    unchanged(m, vman.AlreadyExistsError, m.register_image, "base", base)
    uefi = m.register_image("uefi", str(base), firmware="uefi", format="raw")
    assert uefi.firmware == "uefi"

    vm = m.create_vm("c1", template="small", image="base")
    assert vm.firmware == "bios"
    assert m.create_vm("c2", template="small", image="uefi").firmware == "uefi", "the image's firmware by default"
    assert m.create_vm("c3", template="small", image="uefi", firmware="bios").firmware == "bios"
    (boot,) = m.disks(vm="c1")
    assert (boot.name, boot.image, boot.slot, boot.state, boot.delete_with_vm) == ("c1.boot", "base", 0, "attached", True)
    assert boot.size_bytes == 1024 * MIB, "sized by the template"
    info = qemu_img_info(boot.path)
    assert info["backing-filename"] == image.path and info["format"] == "qcow2"

    err = unchanged(m, vman.InUseError, m.delete_image, "base")
    assert "c1.boot" in str(err)
    m.delete_vm("c1")
    assert not os.path.exists(boot.path), "a boot disk goes with its VM"
    m.delete_image("base")
    assert not os.path.exists(image.path)
    assert [i.name for i in m.images()] == ["uefi"]
    kinds = {(e.object_kind, e.action) for e in m.recent_events(100)}
    assert {("image", "created"), ("image", "deleted"), ("disk", "created"), ("disk", "deleted")} <= kinds


def test_a_vm_records_its_cdrom_display_firmware_and_cloud_init(m, tmp_path):
    iso = tmp_path / "install.iso"
    iso.write_bytes(b"\0" * MIB)
    vm = m.create_vm(
        "opts", template="small", blank_disk=True, firmware="uefi", cdrom=iso, boot_from_cdrom=True,
        display="vnc-tcp", cloud_init=True, user_data="#cloud-config\nruncmd: [true]\n",
    )
    assert (vm.firmware, vm.cdrom, vm.boot_from_cdrom, vm.display) == ("uefi", str(iso), True, "vnc-tcp")
    assert (vm.cloud_init, vm.user_data, vm.display_address) == (True, "#cloud-config\nruncmd: [true]\n", None)
    (boot,) = m.disks(vm="opts")
    assert (boot.name, boot.image, boot.size_bytes) == ("opts.boot", None, 1024 * MIB)
    assert m.vm("opts") == vm

    plain = m.create_vm("plain", template="small")
    assert (plain.firmware, plain.cdrom, plain.boot_from_cdrom, plain.display) == ("bios", None, False, "none")
    assert (plain.cloud_init, plain.user_data, plain.display_address) == (False, None, None)
    assert m.disks(vm="plain") == []


def guest_disk_sectors(m: vman.Manager, vm: str, dev: str):
    """`/sys/block/<dev>/size` read in the guest over its console; None if
    the guest has no such disk."""
    with m.console(vm) as console:
        console.write(f"cat /sys/block/{dev}/size 2>/dev/null || echo NODISK\n")
        out = console.read_until(r"(?m)^(\d+|NODISK)\r?$", timeout=30).decode(errors="replace")
    last = [line.strip() for line in out.splitlines() if re.fullmatch(r"\d+|NODISK", line.strip())][-1]
    return None if last == "NODISK" else int(last)


def wait_for_sectors(m: vman.Manager, vm: str, dev: str, want, tries: int = 60):
    """Reads the guest's view until it is `want` (hot-plug is asynchronous
    in the guest), and returns the last reading."""
    seen = None
    for _ in range(tries):
        seen = guest_disk_sectors(m, vm, dev)
        if seen == want:
            break
        time.sleep(0.5)
    return seen


@pytest.mark.timeout(600)
def test_a_disk_hot_plugged_into_a_running_guest_appears_grows_and_goes(tcg, guest):
    tcg.create_vm("g", template="tiny", **guest)
    tcg.create_disk("hot", 48 * MIB)
    tcg.start("g")
    tcg.wait_for_console("g", READY, timeout=90)
    assert guest_disk_sectors(tcg, "g", "vda") is None

    d = tcg.attach_disk("g", "hot")
    assert (d.state, d.vm, d.slot) == ("attached", "g", 0)
    assert wait_for_sectors(tcg, "g", "vda", 48 * MIB // 512) == 48 * MIB // 512
    err = unchanged(tcg, vman.InvalidStateError, tcg.delete_disk, "hot")
    assert "attached" in str(err)
    # A shrink under a running guest is refused; growing is live.
    unchanged(tcg, vman.UnsupportedError, tcg.resize_disk, "hot", 32 * MIB, force=True)
    assert tcg.resize_disk("hot", 64 * MIB).size_bytes == 64 * MIB
    assert wait_for_sectors(tcg, "g", "vda", 64 * MIB // 512) == 64 * MIB // 512

    d = tcg.detach_disk("g", "hot", timeout=30)
    assert (d.state, d.vm, d.slot) == ("available", None, None)
    assert guest_disk_sectors(tcg, "g", "vda") is None
    assert tcg.reconcile().drifts == []

    # A paused guest cannot release the device: the detach times out and
    # the disk stays attached, with QEMU and the store agreeing.
    tcg.attach_disk("g", "hot")
    assert wait_for_sectors(tcg, "g", "vda", 64 * MIB // 512) == 64 * MIB // 512
    tcg.pause("g")
    with pytest.raises(vman.TimeoutError) as info:
        tcg.detach_disk("g", "hot", timeout=2)
    assert "did not" in str(info.value)
    assert tcg.disk("hot").state == "attached"
    tcg.force_stop("g")
    # Without QEMU the detach is a record.
    assert tcg.detach_disk("g", "hot").state == "available"


def qemu_io(path: str, command: str) -> subprocess.CompletedProcess:
    """Runs one qemu-io command on a qcow2 file (`read -P` fails on a mismatch)."""
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path], capture_output=True, text=True)


def test_an_offline_snapshot_restores_written_data(m):
    m.create_vm("v", template="small")
    unchanged(m, vman.InvalidStateError, m.create_snapshot, "v", "s0")  # no disk yet
    disk = m.create_disk("data", 8 * MIB)
    m.attach_disk("v", "data")
    assert qemu_io(disk.path, "write -P 0xaa 0 64k").returncode == 0
    s1 = m.create_snapshot("v", "s1")
    assert (s1.vm, s1.name, s1.live, s1.state) == ("v", "s1", False, "ready")
    assert repr(s1) == 'Snapshot(vm="v", name="s1", live=False, state="ready")'
    assert qemu_io(disk.path, "write -P 0xbb 0 64k").returncode == 0
    m.create_snapshot("v", "s2")
    assert [s.name for s in m.snapshots("v")] == ["s1", "s2"]

    unchanged(m, vman.AlreadyExistsError, m.create_snapshot, "v", "s1")
    unchanged(m, vman.InvalidArgumentError, m.create_snapshot, "v", "a/b")
    unchanged(m, vman.NotFoundError, m.revert_snapshot, "v", "nope")
    unchanged(m, vman.NotFoundError, m.delete_snapshot, "v", "nope")
    unchanged(m, vman.NotFoundError, m.snapshots, "nope")
    unchanged(m, TypeError, m.create_snapshot, "v", 1)

    assert m.revert_snapshot("v", "s1") == m.snapshots("v")[0]
    assert qemu_io(disk.path, "read -P 0xaa 0 64k").returncode == 0, "s1's data is back"
    m.revert_snapshot("v", "s2")
    assert qemu_io(disk.path, "read -P 0xbb 0 64k").returncode == 0, "and s2's"
    m.delete_snapshot("v", "s1")
    assert [s.name for s in m.snapshots("v")] == ["s2"]
    info = subprocess.run(["qemu-img", "snapshot", "-l", disk.path], capture_output=True, text=True, check=True).stdout
    assert "s2" in info and "s1" not in info, info
    actions = [e.action for e in m.vm_history("v")]
    assert actions.count("snapshot_created") == 2 and "snapshot_reverted" in actions and "snapshot_deleted" in actions

    # A raw disk cannot hold snapshots.
    m.create_disk("flat", 8 * MIB, format="raw")
    m.attach_disk("v", "flat")
    err = unchanged(m, vman.UnsupportedError, m.create_snapshot, "v", "s3")
    assert "raw" in str(err)


def test_the_cdrom_of_a_stopped_vm_is_inserted_changed_and_ejected(m, tmp_path):
    iso, other = tmp_path / "a.iso", tmp_path / "b.iso"
    iso.write_bytes(b"\0" * MIB)
    other.write_bytes(b"\1" * MIB)
    m.create_vm("v", template="small", cdrom=iso)
    assert m.change_cdrom("v", other).cdrom == str(other)
    unchanged(m, vman.InvalidArgumentError, m.change_cdrom, "v", "/dev/zero")
    unchanged(m, vman.InvalidArgumentError, m.change_cdrom, "v", "b.iso")
    unchanged(m, vman.NotFoundError, m.change_cdrom, "nope", iso)
    unchanged(m, TypeError, m.change_cdrom, "v", 3)
    unchanged(m, TypeError, m.change_cdrom, "v")  # ejecting is said, not defaulted
    assert m.change_cdrom("v", None).cdrom is None
    assert [e.action for e in m.vm_history("v")][-2:] == ["cdrom_inserted", "cdrom_ejected"]
    m.create_vm("installer", template="small", cdrom=iso, boot_from_cdrom=True)
    err = unchanged(m, vman.InvalidArgumentError, m.change_cdrom, "installer", None)
    assert "boots from its CD-ROM" in str(err)


def guest_run(m: vman.Manager, vm: str, command: str, answer: str) -> str:
    """Runs a shell command in the guest over its console; returns the
    first line matching `answer`."""
    with m.console(vm) as console:
        console.write(command + "\n")
        out = console.read_until(f"(?m)^{answer}\\r?$", timeout=60).decode(errors="replace")
    return [line.strip() for line in out.splitlines() if re.fullmatch(answer, line.strip())][-1]


@pytest.mark.timeout(600)
def test_a_live_snapshot_of_a_running_guest_reverts_what_it_wrote(tcg, guest, tmp_path):
    tcg.create_vm("g", template="tiny", **guest)
    tcg.create_disk("data", 16 * MIB)
    tcg.attach_disk("g", "data")  # cold: part of the start
    tcg.start("g")
    tcg.wait_for_console("g", READY, timeout=90)
    write = "printf 'vman-%s' {} | dd of=/dev/vda bs=512 count=1 conv=sync,notrunc,fsync 2>/dev/null; echo WROTE"
    read = "echo \"got-$(dd if=/dev/vda bs=8 count=1 2>/dev/null)\""
    assert guest_run(tcg, "g", write.format("one"), "WROTE") == "WROTE"

    s = tcg.create_snapshot("g", "before")
    assert (s.live, s.state) == (True, "ready")
    assert guest_run(tcg, "g", write.format("two"), "WROTE") == "WROTE"
    assert guest_run(tcg, "g", read, r"got-vman-\w+") == "got-vman-two"
    tcg.revert_snapshot("g", "before")
    assert tcg.vm("g").state == "running"
    assert guest_run(tcg, "g", read, r"got-vman-\w+") == "got-vman-one", "the guest is back where the snapshot was taken"

    # Disks alone cannot be reverted under a running guest.
    tcg.force_stop("g")
    tcg.create_snapshot("g", "offline")
    tcg.start("g")
    err = unchanged(tcg, vman.UnsupportedError, tcg.revert_snapshot, "g", "offline")
    assert "stop the VM first" in str(err)

    # The CD-ROM changes live.
    iso = tmp_path / "live.iso"
    iso.write_bytes(b"\0" * MIB)
    assert tcg.change_cdrom("g", iso).cdrom == str(iso)
    assert tcg.change_cdrom("g", None).cdrom is None
    assert [e.details["live"] for e in tcg.vm_history("g") if e.action.startswith("cdrom_")] == [True, True]
    tcg.delete_snapshot("g", "before")
    assert [x.name for x in tcg.snapshots("g")] == ["offline"]
    tcg.force_stop("g")
