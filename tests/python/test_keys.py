"""The SSH key catalogue and VMs' keys via `import vman`, against keys made
by the real ssh-keygen, whose fingerprints are the oracle."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vman
from conftest import _SNAPSHOT


@pytest.fixture(scope="module")
def keygen(tmp_path_factory):
    """Makes a key pair with ssh-keygen; answers the private key's path."""
    if shutil.which("ssh-keygen") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ssh-keygen is missing (CI=true: scripts/setup installs openssh-client)")
        pytest.skip("ssh-keygen is not installed; run scripts/setup")
    keys = tmp_path_factory.mktemp("keys")

    def make(name: str, key_type: str, bits=None, comment=None) -> Path:
        path = keys / name
        if not path.exists():
            args = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", name if comment is None else comment, "-f", str(path)]
            if bits:
                args += ["-b", str(bits)]
            subprocess.run(args, check=True, capture_output=True)
        return path

    return make


def public(private: Path) -> str:
    return private.with_suffix(".pub").read_text()


def ssh_keygen_l(private: Path, hash: str) -> tuple[int, str]:
    """What `ssh-keygen -l -E <hash>` prints: bits, fingerprint."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", hash, "-f", str(private.with_suffix(".pub"))], capture_output=True, text=True, check=True)
    bits, fingerprint = out.stdout.split()[:2]
    return int(bits), fingerprint


def snapshot(manager: vman.Manager) -> list:
    """The rows of the tables a key operation may touch (read by another process)."""
    tables = ["ssh_keys", "vm_ssh_keys", "vms", "nics", "free_ranges", "events"]
    db = str(Path(manager.state_dir) / "vman.db")
    out = subprocess.run([sys.executable, "-c", _SNAPSHOT, db, *tables], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def unchanged(manager, exc, says, fn, *args, **kwargs):
    before = snapshot(manager)
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert says in str(info.value), f"{info.value!r} does not say {says!r}"
    assert snapshot(manager) == before, f"{info.value!r} changed the store"
    return info.value


@pytest.mark.parametrize(
    ("key_type", "bits", "expected_type"),
    [
        ("ed25519", None, "ssh-ed25519"),
        ("ecdsa", 256, "ecdsa-sha2-nistp256"),
        ("ecdsa", 384, "ecdsa-sha2-nistp384"),
        ("ecdsa", 521, "ecdsa-sha2-nistp521"),
        ("rsa", 2048, "ssh-rsa"),
        ("rsa", 3072, "ssh-rsa"),
        ("rsa", 4096, "ssh-rsa"),
    ],
)
def test_fingerprints_and_bits_are_what_ssh_keygen_prints(manager, keygen, key_type, bits, expected_type):
    private = keygen(f"{key_type}{bits or ''}", key_type, bits, comment="me@host with spaces")
    key = manager.import_ssh_key("mine", public(private))
    sha_bits, sha256 = ssh_keygen_l(private, "sha256")
    md5_bits, md5 = ssh_keygen_l(private, "md5")
    assert (key.bits, key.bits) == (sha_bits, md5_bits)
    assert key.fingerprint_sha256 == sha256
    assert key.fingerprint_md5 == md5
    assert key.key_type == expected_type
    assert key.comment == "me@host with spaces"
    assert key.public_key == public(private).strip()
    assert manager.ssh_key("mine") == key
    assert manager.ssh_keys() == [key]
    assert repr(key).startswith('SshKey(name="mine"')


def test_bad_keys_and_names_raise_typed_errors_and_change_nothing(manager, keygen):
    good = public(keygen("good", "ed25519"))
    manager.import_ssh_key("taken", good)
    weak = keygen("weak", "rsa", 1024)
    dsa = keygen("dsa", "dsa")
    data = good.split()[1]
    invalid = vman.InvalidArgumentError
    unchanged(manager, invalid, "1024 bits", manager.import_ssh_key, "weak", public(weak))
    unchanged(manager, invalid, "DSA", manager.import_ssh_key, "dsa", public(dsa))
    unchanged(manager, invalid, "is a private key", manager.import_ssh_key, "private", weak.read_text())
    unchanged(manager, invalid, "empty", manager.import_ssh_key, "empty", "")
    unchanged(manager, invalid, "base64", manager.import_ssh_key, "malformed", f"ssh-ed25519 {data[:-1]}*")
    unchanged(manager, invalid, "truncated", manager.import_ssh_key, "short", f"ssh-ed25519 {data[:40]}")
    unchanged(manager, invalid, "options", manager.import_ssh_key, "opts", f'command="/bin/true" {good}')
    unchanged(manager, invalid, "SSH key name", manager.import_ssh_key, "a b", good)
    unchanged(manager, vman.AlreadyExistsError, "taken", manager.import_ssh_key, "taken", good)
    unchanged(manager, vman.NotFoundError, "nope", manager.ssh_key, "nope")
    unchanged(manager, vman.NotFoundError, "nope", manager.delete_ssh_key, "nope")
    # Bad input is also a ValueError, as the exception tree promises.
    with pytest.raises(ValueError):
        manager.import_ssh_key("empty", "")
    with pytest.raises(TypeError):
        manager.import_ssh_key("bytes", good.encode())


def test_import_and_delete_are_events_and_a_twin_name_is_allowed(manager, keygen):
    line = public(keygen("twin", "ed25519"))
    key = manager.import_ssh_key("alice", line)
    twin = manager.import_ssh_key("alice2", line)
    assert twin.fingerprint_sha256 == key.fingerprint_sha256 and twin.id != key.id
    manager.delete_ssh_key("alice")
    assert [k.name for k in manager.ssh_keys()] == ["alice2"]
    events = [(e.object_kind, e.object_name, e.action) for e in manager.recent_events(10) if e.object_id == str(key.id)]
    assert events == [("ssh_key", "alice", "created"), ("ssh_key", "alice", "deleted")]


def test_a_vm_keeps_copies_of_its_keys(base, keygen):
    a = base.import_ssh_key("a", public(keygen("a", "ed25519")))
    b = base.import_ssh_key("b", public(keygen("b", "ecdsa", 384)))
    vm = base.create_vm("web1", template="small", nics=["lan"], ssh_keys=["b", "a"])
    assert [(k.name, k.public_key, k.fingerprint_sha256) for k in vm.ssh_keys] == [
        ("b", b.public_key, b.fingerprint_sha256),
        ("a", a.public_key, a.fingerprint_sha256),
    ]
    assert base.vm_history("web1", 1)[0].details["ssh_keys"] == ["b", "a"]
    assert base.create_vm("web0", template="small").ssh_keys == []

    base.delete_ssh_key("a")
    assert base.vm("web1").ssh_keys == vm.ssh_keys
    assert hash(base.vm("web1").ssh_keys[1]) == hash(vm.ssh_keys[1])

    unchanged(base, vman.NotFoundError, '"a"', base.create_vm, "web2", template="small", nics=["lan"], ssh_keys=["b", "a"])
    unchanged(base, vman.InvalidArgumentError, "twice", base.create_vm, "web2", template="small", nics=["lan"], ssh_keys=["b", "b"])

    before = len(snapshot(base)[1][1])
    base.delete_vm("web1")
    assert len(snapshot(base)[1][1]) == before - 2, "the VM's copies went with it"
