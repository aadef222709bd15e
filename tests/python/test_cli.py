"""The `vman` command, driven as people and scripts drive it.

Most commands run in this process (`vman.cli.main(argv)`, fast); what only
a real process shows (the console script, its exit status, a terminal,
Ctrl-C, stdin) runs the installed `vman` script. Every state directory is
real and in tmp; one real guest covers start, the console (scripted and
interactive), escape codes in tail, pause, snapshots, Ctrl-C and stop.
"""

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import vman
from conftest import READY, REPO
from vman import cli
from vman.cli import exits
from vman.cli.common import size_arg
from vman.cli.terminal import new_bytes, strip_escapes

VMAN = str(Path(sys.executable).parent / "vman")  # the console script pip installed
DOCS = REPO / "docs" / "cli.md"


@pytest.fixture
def state(tmp_path: Path) -> str:
    """A state directory made by the library (TCG, isolated NICs: the
    settings every later opener uses)."""
    d = tmp_path / "state"
    vman.Manager(d, accel="tcg", network="isolated").close()
    return str(d)


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self):
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def run(state, capsys):
    """`vman --state-dir STATE ARGS...` in this process."""

    def call(*args: str) -> Run:
        code = cli.main([*args, "--state-dir", state])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return call


def vman_process(*args: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    # stdin is never the terminal pytest may run in: it decides whether a console is interactive.
    return subprocess.run([VMAN, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout)


def assert_one_line_error(err: str) -> None:
    assert err.startswith("vman: ") and err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err


# --- the command line itself ---------------------------------------------------


def test_version_and_help():
    assert vman_process("--version").stdout == f"vman {vman.__version__}\n"
    top = vman_process("--help")
    assert top.returncode == 0
    for group in ["template", "network", "image", "disk", "key", "vm", "snapshot", "batch", "events", "host", "settings", "reconcile"]:
        assert re.search(rf"^\s+{group}\s", top.stdout, re.M), f"{group} missing from --help"
    verbs = vman_process("vm", "--help").stdout
    vm_verbs = ["create", "list", "show", "delete", "start", "stop", "restart", "pause", "resume", "status", "history", "display"]
    for verb in vm_verbs + ["console", "tail", "cdrom"]:
        assert re.search(rf"^\s+{verb}\b", verbs, re.M), f"vm {verb} missing from vm --help"
    # The exit codes --help lists are the table's, every one of them.
    epilog = " ".join(top.stdout.split())
    for kind, code in exits.EXIT_CODES.items():
        assert f"{code} {kind}" in epilog


def test_global_options_are_accepted_anywhere(state, capsys):
    lines = []
    for argv in (
        ["--state-dir", state, "--json", "template", "list"],
        ["template", "--json", "list", "--state-dir", state],
        ["template", "list", f"--state-dir={state}", "--json"],
        ["--json", "template", "--state-dir", state, "ls"],
    ):
        assert cli.main(argv) == 0
        lines.append(capsys.readouterr().out)
    assert len(set(lines)) == 1 and json.loads(lines[0]) == []
    # The console script too, with a global option after the verb's own argument.
    vman_process("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1", "--state-dir", state).check_returncode()
    shown = vman_process("template", "show", "small", "--json", "--state-dir", state)
    assert json.loads(shown.stdout)["memory_mib"] == 256


def test_only_the_default_state_directory_is_made_when_missing(tmp_path):
    default = tmp_path / "default"
    env = {**os.environ, "VMAN_STATE_DIR": str(default)}
    mistyped = tmp_path / "stat"
    r = vman_process("--state-dir", str(mistyped), "ls", env=env)
    assert r.returncode == exits.EXIT_CODES["not_found"] and str(mistyped) in r.stderr
    assert_one_line_error(r.stderr)
    assert not mistyped.exists(), "a mistyped state directory is never created"

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("not vman's")
    r = vman_process("ls", "--state-dir", str(busy), env=env)
    assert r.returncode == exits.EXIT_CODES["invalid_argument"] and "not a vman state directory" in r.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert vman_process("ls", "--state-dir", str(empty), env=env).returncode == 0
    assert (empty / "vman.db").exists(), "an empty directory the user made becomes a state directory"

    assert not default.exists()
    assert vman_process("ls", env=env).returncode == 0
    assert (default / "vman.db").exists(), "the default state directory is made on first use"


# --- records and their JSON ----------------------------------------------------


def ssh_public_key(tmp_path: Path) -> Path:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f", str(key)], check=True)
    return Path(str(key) + ".pub")


def test_catalogue_and_vm_records_as_json(run, state, tmp_path, monkeypatch):
    t = run("template", "create", "small", "--vcpus", "2", "--memory", "512", "--disk", "1", "--description", "web tier", "--json").json()
    assert (t["name"], t["vcpus"], t["memory_mib"], t["disk_gib"], t["description"]) == ("small", 2, 512, 1, "web tier")
    assert run("--json", "template", "show", "small").json() == t
    assert run("--json", "template", "list").json() == [t]

    n = run(
        "network", "create", "lan", "--vlan", "100", "--cidr", "10.100.0.0/24",
        "--reserve", "10.100.0.2-10.100.0.9", "--reserve", "10.100.0.20", "--dns", "10.100.0.1", "--json",
    ).json()  # fmt: skip
    assert (n["vlan"], n["cidr"], n["gateway"], n["reserved"], n["dns"], n["uplink"]) == (
        100, "10.100.0.0/24", "10.100.0.1", ["10.100.0.2-10.100.0.9", "10.100.0.20"], ["10.100.0.1"], None,
    )  # fmt: skip

    pub = ssh_public_key(tmp_path)
    k = run("key", "import", "me", str(pub), "--json").json()
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]
    assert (k["key_type"], k["bits"], k["comment"], k["fingerprint_sha256"]) == ("ssh-ed25519", 256, "me@host", fingerprint)
    monkeypatch.setattr(sys, "stdin", io.StringIO(pub.read_text()))
    assert run("key", "import", "again", "-", "--json").json()["fingerprint_sha256"] == fingerprint

    d = run("disk", "create", "data", "--size", "64M", "--json").json()
    assert (d["state"], d["format"], d["size_bytes"], d["vm"]) == ("available", "qcow2", 64 << 20, None)
    assert run("disk", "resize", "data", "128M", "--json").json()["size_bytes"] == 128 << 20

    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "32M"], check=True)
    i = run("image", "register", "base", str(base), "--os", "test-os", "--description", "a base", "--json").json()
    assert (i["os"], i["format"], i["virtual_size"], i["firmware"], i["owned"]) == ("test-os", "qcow2", 32 << 20, "bios", True)
    assert len(i["sha256"]) == 64
    imported = run("disk", "import", "copy", str(base), "--json").json()
    assert imported["size_bytes"] == 32 << 20 and imported["path"] != str(base)

    v = run(
        "vm", "create", "web1", "--template", "small", "--image", "base", "--nic", "lan", "--nic", "lan=10.100.0.50",
        "--disk", "data", "--key", "me", "--cloud-init", "--json",
    ).json()  # fmt: skip
    assert (v["name"], v["state"], v["template"], v["vcpus"], v["pid"]) == ("web1", "created", "small", 2, None)
    assert [(nic["network"], nic["ip"], nic["prefix_len"]) for nic in v["nics"]] == [("lan", "10.100.0.10", 24), ("lan", "10.100.0.50", 24)]
    assert v["cloud_init"] is True and [key["name"] for key in v["ssh_keys"]] == ["me"]
    assert run("--json", "show", "web1").json() == v, "top-level verbs are the vm verbs"
    disks = run("disk", "list", "--vm", "web1", "--json").json()
    assert [(x["name"], x["vm"], x["image"]) for x in disks] == [("data", "web1", None), ("web1.boot", "web1", "base")]

    shown = run("network", "show", "lan", "--json").json()
    assert [(a["ip"], a["vm"], a["nic_index"]) for a in shown["allocations"]] == [("10.100.0.10", "web1", 0), ("10.100.0.50", "web1", 1)]
    assert "allocations" not in run("network", "list", "--json").json()[0]

    assert run("status", "web1", "--json").json() == {"name": "web1", "state": "created", "pid": None, "accel": None, "last_error": None}
    assert run("vm", "display", "web1", "--json").json() == {"name": "web1", "display": "none", "address": None}
    run("vm", "create", "db1", "--template", "small", "--json").json()
    assert [x["name"] for x in run("vm", "list", "--prefix", "web", "--json").json()] == ["web1"]
    assert [x["name"] for x in run("ls", "--state", "created", "--json").json()] == ["db1", "web1"]

    detached = run("disk", "detach", "web1", "data", "--json").json()
    assert (detached["state"], detached["vm"]) == ("available", None)
    snap = run("snapshot", "create", "web1", "clean", "--json").json()
    assert (snap["vm"], snap["name"], snap["live"], snap["state"]) == ("web1", "clean", False, "ready")
    assert run("snapshot", "revert", "web1", "clean", "--json").json()["name"] == "clean"
    assert [s["name"] for s in run("snapshot", "list", "web1", "--json").json()] == ["clean"]
    deleted = run("snapshot", "delete", "web1", "clean", "--json")
    assert (deleted.code, deleted.out) == (0, ""), "a command that returns nothing prints nothing with --json"

    history = [json.loads(line) for line in run("vm", "history", "web1", "--json").out.splitlines()]
    assert [e["action"] for e in history] == ["created", "snapshot_created", "snapshot_reverted", "snapshot_deleted"]
    assert history[0]["object_name"] == "web1" and history[0]["details"]["template"] == "small"

    r = run("vm", "delete", "web1")
    assert (r.code, r.out) == (0, "deleted VM web1\n")
    assert run("network", "show", "lan", "--json").json()["allocations"] == []
    assert run("--json", "reconcile").json() == {"drifts": [], "adopted": []}


def test_tables_for_people(run):
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    run("network", "create", "lan", "--vlan", "7", "--cidr", "10.7.0.0/24")
    run("create", "web1", "--template", "small", "--nic", "lan")
    listing = run("vm", "list")
    assert listing.code == 0
    header, row = listing.out.splitlines()
    assert header.split() == ["NAME", "STATE", "TEMPLATE", "VCPUS", "MEMORY", "ADDRESSES", "PID"]
    assert row.split() == ["web1", "created", "small", "1", "256", "MiB", "lan:10.7.0.2", "-"]
    assert run("ls").out == listing.out, "vman ls is vman vm list"
    shown = run("template", "show", "small").out
    assert re.search(r"^memory:\s+256 MiB$", shown, re.M)
    assert run("vm", "status", "web1").out == "created\n"


def documented_shapes() -> dict:
    """The JSON examples of docs/cli.md, by the name in their marker."""
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(r"<!-- json: (\w+) -->\n```json\n(.*?)```", DOCS.read_text(), re.S)}


def fields(value, path="") -> set:
    """Every field path of a JSON value (a list by its first element)."""
    if isinstance(value, dict):
        # An event's "details" depend on its action: only the key is fixed.
        nested = {f for k, v in value.items() if k != "details" for f in fields(v, f"{path}.{k}")}
        return {f"{path}.{k}" for k in value} | nested
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        return fields(value[0], path + "[]")
    return set()


def assert_documented(docs: dict, name: str, value) -> None:
    """What the CLI printed has the fields docs/cli.md shows for it."""
    documented = fields(docs[name])
    # A nested list empty in the real output cannot show its fields.
    shown = fields(value)
    assert shown <= documented, f"{name}: printed but not documented: {sorted(shown - documented)}"
    top = {f for f in documented if f.count(".") == 1}
    assert top == {f for f in shown if f.count(".") == 1}, f"{name}: documented but not printed"


def test_docs_show_every_json_shape_the_cli_prints(run, tmp_path):
    """docs/cli.md has an example of each record; its fields are the ones
    printed, no more, no fewer (nested objects too)."""
    docs = documented_shapes()
    records = "template network image disk key vm status display console tail snapshot event reconcile".split()
    assert set(records) <= set(docs)
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    run("network", "create", "lan", "--vlan", "7", "--cidr", "10.7.0.0/24")
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "32M"], check=True)
    run("image", "register", "base", str(base))
    run("disk", "create", "data", "--size", "1M")
    run("key", "import", "me", str(ssh_public_key(tmp_path)))
    run("vm", "create", "web1", "--template", "small", "--nic", "lan", "--key", "me", "--disk", "data")
    run("snapshot", "create", "web1", "s")
    printed = {
        "template": run("template", "show", "small", "--json").json(),
        "network": run("network", "show", "lan", "--json").json(),
        "image": run("image", "show", "base", "--json").json(),
        "disk": run("disk", "show", "data", "--json").json(),
        "key": run("key", "show", "me", "--json").json(),
        "vm": run("vm", "show", "web1", "--json").json(),
        "status": run("vm", "status", "web1", "--json").json(),
        "display": run("vm", "display", "web1", "--json").json(),
        "tail": run("vm", "tail", "web1", "--json").json(),
        "snapshot": run("snapshot", "list", "web1", "--json").json()[0],
        "event": json.loads(run("events", "-n", "1", "--json").out),
        "reconcile": run("reconcile", "--json").json(),
    }
    for name, value in printed.items():
        assert_documented(docs, name, value)
    assert set(docs["console"]) == {"vm", "output"}


# --- errors and exit codes -----------------------------------------------------


def test_the_exit_code_table_covers_every_kind_and_is_documented():
    kinds = [kind for kind, _ in vman._vman._error_classes()]
    codes = exits.EXIT_CODES
    assert set(kinds) <= set(codes), f"error kinds without an exit code: {sorted(set(kinds) - set(codes))}"
    assert len(set(codes.values())) == len(codes), "one code per kind"
    assert not set(codes.values()) & {exits.OK, exits.FAILURE, exits.USAGE, exits.INTERRUPTED}
    assert all(3 <= c <= 125 for c in codes.values()), "clear of the codes shells give signals and missing commands"
    documented = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\| (\d+) \| `(\w+)` \|", DOCS.read_text(), re.M)}
    assert documented == codes, "docs/cli.md's table is the CLI's"


def test_each_error_kind_exits_with_its_code_and_one_line(run, state):
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    run("network", "create", "lan", "--vlan", "7", "--cidr", "10.7.0.0/30")
    run("create", "web1", "--template", "small", "--nic", "lan")
    cases = [
        ("not_found", ["template", "show", "nope"]),
        ("not_found", ["vm", "start", "nope"]),
        ("invalid_argument", ["template", "create", "bad", "--vcpus", "0", "--memory", "256", "--disk", "1"]),
        ("invalid_argument", ["network", "create", "n2", "--vlan", "8", "--cidr", "10.8.0.0/33"]),
        ("already_exists", ["template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1"]),
        ("in_use", ["template", "delete", "small"]),
        ("in_use", ["network", "delete", "lan"]),
        ("exhausted", ["create", "web2", "--template", "small", "--nic", "lan"]),
        ("invalid_state", ["stop", "web1"]),
        ("invalid_state", ["vm", "console", "web1", "--expect", "x"]),
        ("not_found", ["vm", "create", "web3", "--template", "small", "--disk", "nope"]),
        ("invalid_argument", ["vm", "create", "web3", "--template", "small", "--user-data", "/nonexistent/user-data"]),
        ("not_found", ["events", "--vm", "nope", "--follow"]),
    ]
    for kind, argv in cases:
        r = run(*argv)
        assert r.code == exits.EXIT_CODES[kind], f"{argv}: {r.code} {r.err}"
        assert_one_line_error(r.err)
        assert r.out == ""
    assert [v["name"] for v in run("ls", "--json").json()] == ["web1"], "a refused create leaves nothing"

    for argv in (["vm", "frobnicate"], ["template", "create", "x"], ["disk", "create", "d", "--size", "10X"], []):
        r = run(*argv)
        assert r.code == exits.USAGE, argv
        assert_one_line_error(r.err)

    # The console script exits with the same codes and never shows a traceback.
    p = vman_process("vm", "show", "nope", "--state-dir", state)
    assert p.returncode == exits.EXIT_CODES["not_found"] and p.stdout == ""
    assert_one_line_error(p.stderr)


def test_batch_host_and_settings_print_the_documented_shapes(run):
    """batch, host and settings: their --json output has the shape
    docs/cli.md documents."""
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    docs = documented_shapes()
    for argv, shape in [
        (["batch", "create", "w{:02}", "--count", "2", "--template", "small", "--name", "ws"], "batch"),
        (["batch", "list"], None),
        (["batch", "delete", "--prefix", "w"], None),
        (["host", "health"], "health"),
        (["host", "stats"], "stats"),
        (["settings", "show"], "settings"),
        (["settings", "set", "accel", "tcg"], "settings"),
    ]:
        r = run(*argv, "--json")
        assert r.code == 0, r.err
        printed = r.json()
        if shape is not None:
            assert_documented(docs, shape, printed)
    assert run("batch", "list", "--json").json() == []
    assert run("vm", "list", "--json").json() == []


def events_of(run, vm: str) -> list:
    return [json.loads(line)["action"] for line in run("vm", "history", vm, "--json").out.splitlines()]


def test_arguments_are_checked_before_anything_is_done(run, tmp_path):
    """A command refuses a bad argument before it acts: exit 3 (or 2)
    means nothing changed. The VM has no boot source, so a start that were
    tried would fail with invalid_state (8), not 3."""
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    run("create", "web1", "--template", "small")  # no boot source: it cannot start
    run("create", "web2", "--template", "small")
    run("disk", "create", "data", "--size", "1M")
    run("disk", "attach", "web2", "data")
    before = events_of(run, "web1")
    for argv, code, words in [
        # Regular expressions are the library's (Rust), not Python's.
        (["start", "web1", "--wait-console", "("], exits.EXIT_CODES["invalid_argument"], "--wait-console '(' is not a regular expression"),
        (["start", "web1", "--wait-console", "(?=x)"], exits.EXIT_CODES["invalid_argument"], "look-around"),
        (["console", "web1", "--send", "reboot", "--expect", "("], exits.EXIT_CODES["invalid_argument"], "--expect '('"),
        (["start", "web1", "--wait-console", "x", "--timeout", "-1"], exits.USAGE, "--timeout"),
        (["start", "web1", "--timeout", "nan"], exits.USAGE, "--timeout"),
        (["stop", "web1", "--timeout", "-1"], exits.USAGE, "--timeout"),
        (["restart", "web1", "--timeout", "1e9"], exits.USAGE, "--timeout"),
        (["console", "web1", "--expect", "x", "--timeout", "-1"], exits.USAGE, "--timeout"),
        (["disk", "detach", "web2", "data", "--timeout", "-1"], exits.USAGE, "--timeout"),
        (["tail", "web1", "--bytes", "-5"], exits.USAGE, "--bytes"),
    ]:
        r = run(*argv)
        assert r.code == code and words in r.err, f"{argv}: {r.code} {r.err}"
        assert "max_bytes" not in r.err
        assert_one_line_error(r.err)
    # A pattern Rust takes and Python's re does not passes the check: the
    # start is tried (and refused for want of a boot source).
    r = run("start", "web1", "--wait-console", r"\p{Lu}")
    assert r.code == exits.EXIT_CODES["invalid_state"] and "boot source" in r.err, r.err
    assert events_of(run, "web1") == before, "nothing was done"
    assert run("disk", "show", "data", "--json").json()["vm"] == "web2"


def test_a_missing_file_is_an_invalid_argument_wherever_it_is_named(run, tmp_path):
    """The library answers invalid_argument for a path it cannot open; the
    CLI, reading a key or user-data file itself, answers the same."""
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    nope = str(tmp_path / "nope")
    for argv in (
        ["image", "register", "x", nope],
        ["disk", "import", "x", nope],
        ["create", "x", "--template", "small", "--kernel", nope],
        ["create", "x", "--template", "small", "--user-data", nope],
        ["key", "import", "x", nope],
    ):
        r = run(*argv)
        assert r.code == exits.EXIT_CODES["invalid_argument"] and "nope" in r.err, f"{argv}: {r.code} {r.err}"
    # An attached disk: delete and attach are refused for its state.
    run("create", "web1", "--template", "small")
    run("create", "web2", "--template", "small")
    run("disk", "create", "data", "--size", "1M")
    run("disk", "attach", "web1", "data")
    assert run("disk", "delete", "data").code == exits.EXIT_CODES["invalid_state"]
    assert run("disk", "attach", "web2", "data").code == exits.EXIT_CODES["invalid_state"]


def test_sizes_for_settings_and_what_revert_says(run):
    assert run("settings", "set", "serial_log_cap_bytes", "1M", "--json").json()["serial_log_cap_bytes"] == 1 << 20
    r = run("settings", "set", "serial_log_cap_bytes", "1X")
    assert r.code == exits.EXIT_CODES["invalid_argument"] and "serial_log_cap_bytes" in r.err and "digit" not in r.err
    assert run("settings", "show", "--json").json()["serial_log_cap_bytes"] == 1 << 20

    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    run("create", "web1", "--template", "small", "--blank-disk")
    run("snapshot", "create", "web1", "clean")
    r = run("snapshot", "revert", "web1", "clean")
    assert (r.code, r.out) == (0, "web1: reverted to snapshot clean (disks)\n"), r.err


def test_batch_create_takes_the_options_of_vm_create(run, tmp_path):
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    kernel, initrd, user_data = tmp_path / "vmlinuz", tmp_path / "initrd", tmp_path / "user-data"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    user_data.write_text("#cloud-config\nruncmd: [echo hi]\n")
    b = run(
        "batch", "create", "k{:02}", "--count", "2", "--first", "5", "--template", "small", "--kernel", str(kernel),
        "--initrd", str(initrd), "--cmdline", "console=ttyS0", "--user-data", str(user_data), "--json",
    ).json()  # fmt: skip
    assert b["vms"] == ["k05", "k06"]
    v = run("vm", "show", "k06", "--json").json()
    assert (v["kernel"], v["initrd"], v["cmdline"]) == (str(kernel), str(initrd), "console=ttyS0")
    assert v["cloud_init"] is True and "echo hi" in v["user_data"]
    blank = run("batch", "create", "b{}", "--count", "1", "--template", "small", "--blank-disk", "--json").json()
    shown = run("vm", "show", blank["vms"][0], "--json").json()
    assert [(d["slot"], d["size_bytes"]) for d in shown["disks"]] == [(0, 1 << 30)]


def test_vm_show_lists_disks_and_cdrom_changes(run, tmp_path):
    run("template", "create", "small", "--vcpus", "1", "--memory", "256", "--disk", "1")
    run("create", "web1", "--template", "small", "--blank-disk")
    run("disk", "create", "data", "--size", "64M")
    run("disk", "attach", "web1", "data")
    v = run("vm", "show", "web1", "--json").json()
    assert v["disks"] == [{"name": "web1.boot", "slot": 0, "size_bytes": 1 << 30}, {"name": "data", "slot": 1, "size_bytes": 64 << 20}]
    text = run("vm", "show", "web1").out
    assert re.search(r"^disks:\s+web1.boot \(slot 0, 1 GiB\), data \(slot 1, 64 MiB\)$", text, re.M), text

    iso = tmp_path / "install.iso"
    iso.write_bytes(b"\0" * 2048)
    r = run("vm", "cdrom", "web1", str(iso))
    assert (r.code, r.out) == (0, f"web1: CD-ROM {iso} (from its next start)\n"), r.err
    assert run("vm", "show", "web1", "--json").json()["cdrom"] == str(iso)
    assert run("cdrom", "web1", "--eject", "--json").json()["cdrom"] is None
    assert run("vm", "cdrom", "web1").code == exits.USAGE, "an ISO or --eject"


def test_a_reader_that_goes_away_ends_the_command_quietly(state, tmp_path):
    """`vman events --follow | head -1`: the line comes at once (flushed),
    and once the reader is gone the command ends, before any new event."""
    with vman.Manager(state) as m:
        for name in ("a", "b"):
            m.create_template(name, vcpus=1, memory_mib=256, disk_gib=1)
    for json_flag in ([], ["--json"]):
        follow = subprocess.Popen(
            [VMAN, *json_flag, "events", "--follow", "--state-dir", state],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert follow.stdout.readline(), "the history's first line came before the command ended"
            follow.stdout.close()  # as head does after its line
            assert follow.wait(timeout=60) == exits.BROKEN_PIPE
            assert follow.stderr.read() == b""
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
            follow.stderr.close()
    # A command that prints once: the same code, nothing said.
    out = subprocess.run(f"'{VMAN}' events -n 1000 --state-dir '{state}' | head -c 1", shell=True, capture_output=True, timeout=60)
    assert out.stderr == b""


# --- events --------------------------------------------------------------------


def test_events_history_resume_and_follow(run, state):
    for name in ("a", "b", "c"):
        run("template", "create", name, "--vcpus", "1", "--memory", "256", "--disk", "1")
    newest = [json.loads(line) for line in run("events", "-n", "2", "--json").out.splitlines()]
    assert [(e["object_name"], e["action"]) for e in newest] == [("b", "created"), ("c", "created")]
    after = [json.loads(line) for line in run("events", "--after", str(newest[0]["id"]), "--json").out.splitlines()]
    assert [e["object_name"] for e in after] == ["c"]
    assert run("events", "-n", "1").out.split()[4:6] == ["c", "created"]

    follow = subprocess.Popen(
        [VMAN, "--json", "events", "--follow", "-n", "1", "--state-dir", state],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(follow.stdout.readline())["object_name"] == "c", "history first"
        with vman.Manager(state) as m:  # another process writes
            m.create_template("d", vcpus=1, memory_mib=256, disk_gib=1)
        live = json.loads(follow.stdout.readline())
        assert (live["object_name"], live["action"]) == ("d", "created")
    finally:
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=30)
    assert follow.returncode == exits.INTERRUPTED and err == "vman: interrupted\n"


# --- pure helpers --------------------------------------------------------------


def test_sizes():
    assert [size_arg(s) for s in ["1048576", "512M", "512m", "10G", "10GiB", "1.5G", "1T", "4k"]] == [
        1 << 20, 512 << 20, 512 << 20, 10 << 30, 10 << 30, 3 << 29, 1 << 40, 4096,
    ]  # fmt: skip
    for bad in ["", "G", "10X", "-1G", "1.3B"]:
        with pytest.raises(Exception):
            size_arg(bad)


def test_escape_codes_are_removed_and_text_kept():
    raw = (
        b"\x1b[2J\x1b[H\x1b[1;31mred\x1b[0m plain\r\n"  # CSI: clear, home, colour
        b"\x1b]0;a title\x07tab\there\r\n"  # OSC title ended by BEL, a tab kept
        b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\r\n"  # OSC 8 hyperlink ended by ST
        b"\x1b(B\x1b=keypad\x08\x07 bytes \xff\xfe end\n"  # charset, keypad mode, BS, BEL, invalid UTF-8
        b"caf\xc3\xa9\n"
    )
    assert strip_escapes(raw) == "red plain\ntab\there\nlink\nkeypad bytes \ufffd\ufffd end\ncafé\n"


def test_following_a_log_prints_each_byte_once():
    stream = b"".join(b"line %d\n" % i for i in range(2000))
    tail = 4096
    previous = stream[:1000][-tail:]
    printed = bytearray(previous)
    for end in [1000, 1000, 1500, 9000, 9100, 30000, len(stream)]:
        current = stream[:end][-tail:]
        printed += new_bytes(previous, current)
        previous = current
    assert bytes(printed).endswith(stream[-tail:])
    assert b"line 1999\n" in printed and printed.count(b"line 1999\n") == 1
    # Repeated lines: the shortest advance that matches is taken.
    assert new_bytes(b"ok\nok\nok\n", b"ok\nok\nok\nok\n") == b"ok\n"
    # A new boot's log shares nothing with the old one: all of it is new.
    assert new_bytes(b"old boot\n", b"new boot\n") == b"new boot\n"


# --- a real guest --------------------------------------------------------------


def run_with_tty_stderr(args, timeout=180):
    """Runs the console script with stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([VMAN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    got = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = proc.communicate(timeout=timeout)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, out.decode(), bytes(got)


def interactive_console(state: str, vm: str) -> tuple:
    """`vman console VM` on a terminal: types a command, reads the answer,
    leaves with Ctrl-]."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([VMAN, "console", vm, "--state-dir", state], stdin=slave, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        banner = proc.stderr.readline()  # written once the terminal is in raw mode
        os.write(master, b"echo tty-$((6*7))\r")  # Enter on a terminal is CR
        seen = bytearray()
        deadline = time.monotonic() + 60
        while b"tty-42\r\n" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 4096)
        os.write(master, b"\x1d")
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return proc.returncode, banner + err, bytes(seen)


@pytest.mark.timeout(900)
def test_a_guest_through_the_cli(state, guest):
    def vm(*args, **kw):
        return vman_process(*args, "--state-dir", state, **kw)

    assert vm("template", "create", "tiny", "--vcpus", "1", "--memory", "256", "--disk", "1").returncode == 0
    assert vm("disk", "create", "data", "--size", "64M").returncode == 0
    made = vm("create", "g1", "--template", "tiny", "--kernel", guest["kernel"], "--initrd", guest["initrd"],
              "--cmdline", guest["cmdline"], "--disk", "data")  # fmt: skip
    assert made.returncode == 0, made.stderr

    # Start and wait for the guest, piped: the result and no progress line.
    started = vm("start", "g1", "--wait-console", READY, "--timeout", "300", timeout=400)
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[-1] == "g1: console: VMAN-GUEST-READY"
    assert started.stderr == "", "no progress when stderr is not a terminal"

    # Scripted console: steps in order, what came printed.
    said = vm("console", "g1", "--send", "echo cli-$((6*7))", "--expect", "(?m)^cli-42", "--send", "echo two", "--expect", "(?m)^two")
    assert said.returncode == 0, said.stderr
    # Each expect prints what came up to its match; the rest of the line comes with the next one.
    assert re.search(r"^cli-42", said.stdout, re.M) and said.stdout.rstrip().endswith("two")
    as_json = json.loads(vm("--json", "console", "g1", "--send", "echo j-$((1+1))", "--expect", "(?m)^j-2").stdout)
    assert as_json["vm"] == "g1" and as_json["output"][0].endswith("j-2")
    late = vm("console", "g1", "--expect", "NEVER-PRINTED", "--timeout", "1")
    assert late.returncode == exits.EXIT_CODES["timeout"]
    assert_one_line_error(late.stderr)

    # Escape codes: the guest prints a coloured word; tail shows the word only.
    colour = vm("console", "g1", "--send", r"printf '\033[31mX%sX\033[0m\n' Y", "--expect", "XYX")
    assert colour.returncode == 0 and "\x1b" not in colour.stdout
    tail = vm("tail", "g1", "--bytes", "4000")
    assert re.search(r"^XYX$", tail.stdout, re.M) and "\x1b" not in tail.stdout and "\r" not in tail.stdout
    raw = subprocess.run(
        [VMAN, "tail", "g1", "--raw", "--bytes", "4000", "--state-dir", state], stdin=subprocess.DEVNULL, capture_output=True, timeout=60
    )
    assert b"\x1b[31mXYX\x1b[0m" in raw.stdout

    # Following: what the guest prints next comes out, once, until Ctrl-C.
    follow = subprocess.Popen([VMAN, "tail", "g1", "--follow", "--bytes", "200", "--state-dir", state],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert vm("console", "g1", "--send", "echo follow-$((2+3))", "--expect", "(?m)^follow-5").returncode == 0
        followed = ""
        while not re.search(r"^follow-5$", followed, re.M):
            line = follow.stdout.readline()
            assert line, "tail --follow ended early"
            followed += line
    finally:
        follow.send_signal(signal.SIGINT)
        rest, err = follow.communicate(timeout=60)
    assert follow.returncode == exits.INTERRUPTED and err == "vman: interrupted\n"
    assert (followed + rest).count("follow-5\n") == 1

    # Interactive: raw mode, keys to the guest, Ctrl-] leaves.
    code, err, seen = interactive_console(state, "g1")
    assert code == 0, err
    assert b"tty-42\r\n" in seen
    assert b"escape character is ^]" in err and b"disconnected" in err

    # Ctrl-C during a wait: exit 130, the VM still running and usable.
    waiting = subprocess.Popen([VMAN, "console", "g1", "--expect", "NEVER-PRINTED", "--timeout", "600", "--state-dir", state],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(2)  # not a timing assertion: SIGINT before or during the wait must both end it with 130
    waiting.send_signal(signal.SIGINT)
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == exits.INTERRUPTED and err == "vman: interrupted\n"
    assert vm("status", "g1").stdout == "running\n"
    assert vm("console", "g1", "--send", "echo still-here", "--expect", "(?m)^still-here").returncode == 0, "the console was released"
    refused = vman_process("console", "g1", "--state-dir", state)  # stdin is not a terminal here
    assert refused.returncode == exits.EXIT_CODES["invalid_argument"] and "--send" in refused.stderr

    assert vm("pause", "g1").stdout.startswith("g1: paused")
    assert vm("status", "g1").stdout == "paused\n"
    assert vm("resume", "g1").stdout.startswith("g1: running")
    # Deleting by prefix never kills a running VM without --force.
    kept = vm("batch", "delete", "--prefix", "g")
    assert kept.returncode == exits.EXIT_CODES["invalid_state"] and "g1" in kept.stderr and "force" in kept.stderr
    assert vm("status", "g1").stdout == "running\n"

    snap = json.loads(vm("snapshot", "create", "g1", "live1", "--json").stdout)
    assert (snap["live"], snap["state"]) == (True, "ready")
    assert [s["name"] for s in json.loads(vm("snapshot", "list", "g1", "--json").stdout)] == ["live1"]
    assert vm("snapshot", "delete", "g1", "live1").returncode == 0

    # Stop on a terminal: progress on one rewritten stderr line, removed at the end.
    code, out, err = run_with_tty_stderr(["stop", "g1", "--timeout", "120", "--state-dir", state])
    assert (code, out) == (0, "g1: stopped\n"), err
    assert err.startswith(b"\rg1: stopping (ACPI power button; forced after 120 s) 0 s")
    assert err.endswith(b"\r\x1b[K") and b"\n" not in err, "one line, rewritten in place, then cleared"

    events = [json.loads(line) for line in vm("--json", "events", "--vm", "g1").stdout.splitlines()]
    moves = [(e["details"].get("from"), e["details"].get("to")) for e in events if e["action"] == "state_changed"]
    assert ("running", "paused") in moves and moves[-1] == ("stopping", "stopped")
    assert json.loads(vm("status", "g1", "--json").stdout)["state"] == "stopped"
    assert vm("delete", "g1").returncode == 0
