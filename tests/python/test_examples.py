"""examples/ in all three languages, built and run as a reader would, each
booting the test guest: they must print the same story.

Each example opens its state directory with the default options; the test
makes that directory first with the tests' rules (TCG, isolated NICs), which
the directory keeps for every later opener. The C example is compiled with
strict warnings against include/vman.h and the freshly built libvman, and
runs under AddressSanitizer, LeakSanitizer and UBSan (valgrind 3.19 does not
know pidfd_open, which vman waits on).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vman
from conftest import REPO, _skip_or_fail
from readme import blocks
from test_readme import cargo_artifact

EXAMPLES = REPO / "examples"
MAC = r"52:54:00(:[0-9a-f]{2}){3}"


def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    vman.Manager(state, accel="tcg", network="isolated").close()
    return state


def check_story(out: subprocess.CompletedProcess, subnet: str) -> None:
    """What every quickstart prints, in order, when it boots the guest."""
    assert out.returncode == 0, out.stdout + out.stderr
    net = re.escape(subnet)
    expected = [
        rf"qs-web created {net}\.10 {MAC}",
        rf"qs-db created {net}\.100 {MAC}",
        rf"qs-lan: {net}\.10 held by qs-web \(NIC 0\)",
        rf"qs-lan: {net}\.100 held by qs-db \(NIC 0\)",
        r"disk qs-data: 1073741824 bytes, attached to qs-db at slot 0",
        r"qs-web running \(pid [1-9]\d*, tcg\)",
        r"the guest says .Linux.",
        r"qs-web stopped",
    ]
    lines = [line for line in out.stdout.splitlines() if not line.startswith("state directory ")]
    assert len(lines) >= len(expected), out.stdout
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), f"printed {line!r}, expected {pattern!r}\n{out.stdout}"
    events = [line.split(" ", 2)[2] for line in lines if line.startswith("event ")]
    assert events == [
        "template qs-small created", "network qs-lan created", "vm qs-web created", "vm qs-db created",
        "disk qs-data created", "disk qs-data attached",
        *["vm qs-web state_changed"] * 4,  # created → starting → running → stopping → stopped
        "vm qs-web deleted", "disk qs-data detached", "vm qs-db deleted", "disk qs-data deleted",
        "network qs-lan deleted", "template qs-small deleted",
    ], out.stdout
    ids = [int(line.split()[1]) for line in lines if line.startswith("event ")]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "each event once, in commit order"
    history = [line.split()[2] for line in lines if line.startswith("qs-web history: ")]
    assert history == ["created", *["state_changed"] * 4, "deleted"], out.stdout


def nothing_left(state: Path) -> None:
    with vman.Manager(state) as m:
        assert (m.vms(), m.networks(), m.templates(), m.disks()) == ([], [], [], [])


@pytest.mark.timeout(600)
def test_the_python_example_runs(tmp_path: Path, guest: dict) -> None:
    state = state_dir(tmp_path)
    script = EXAMPLES / "python" / "quickstart.py"
    out = subprocess.run([sys.executable, str(script), str(state), guest["kernel"], guest["initrd"]],
                         capture_output=True, text=True, timeout=300)
    check_story(out, "10.33.1")
    nothing_left(state)
    # Again on the same directory: it cleaned up after itself.
    out = subprocess.run([sys.executable, str(script), str(state)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "qs-web created 10.33.1.10" in out.stdout, out.stdout + out.stderr
    # A vman error is one line on stderr and exit status 1.
    (tmp_path / "file").write_text("")
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "file")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("quickstart: ") and out.stderr.count("\n") == 1, out.stderr


@pytest.mark.timeout(900)
def test_the_c_example_compiles_strictly_and_runs_clean(tmp_path: Path, guest: dict) -> None:
    if shutil.which("gcc") is None:
        _skip_or_fail("gcc is not installed")
    lib = cargo_artifact("vman-ffi", "vman").parent
    exe = tmp_path / "quickstart"
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g",
                    "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-I", str(REPO / "include"),
                    str(EXAMPLES / "c" / "quickstart.c"), "-o", str(exe),
                    "-L", str(lib), f"-Wl,-rpath,{lib}", "-lvman"], check=True)
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:exitcode=97", "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    state = state_dir(tmp_path)
    out = subprocess.run([str(exe), str(state), guest["kernel"], guest["initrd"]],
                         capture_output=True, text=True, timeout=300, env=env)
    check_story(out, "10.33.2")
    assert out.stderr == "", out.stderr
    nothing_left(state)
    # The error path frees what it made (LeakSanitizer) and names the call.
    (tmp_path / "file").write_text("")
    out = subprocess.run([str(exe), str(tmp_path / "file")], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.startswith("vman_manager_open(") and out.stderr.rstrip().endswith(")"), out.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and out.stderr.startswith("usage: "), out.stderr


@pytest.mark.timeout(900)
def test_the_rust_example_runs(tmp_path: Path, guest: dict) -> None:
    if shutil.which("cargo") is None:
        _skip_or_fail("cargo is not installed")
    state = state_dir(tmp_path)
    out = subprocess.run(["cargo", "run", "-q", "-p", "vman-core", "--example", "quickstart", "--",
                          str(state), guest["kernel"], guest["initrd"]],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    check_story(out, "10.33.3")
    nothing_left(state)


def test_the_c_guides_code_compiles_strictly(tmp_path: Path) -> None:
    """Each C block of docs/c.md is a translation unit that compiles with
    strict warnings (as C and, for the header, C++-compatible C)."""
    if shutil.which("gcc") is None:
        _skip_or_fail("gcc is not installed")
    snippets = blocks("c", REPO / "docs" / "c.md")
    assert len(snippets) >= 3, "docs/c.md shows ownership, errors, events and the console in C"
    for i, code in enumerate(snippets):
        source = tmp_path / f"snippet{i}.c"
        source.write_text(code)
        out = subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wc++-compat",
                              "-I", str(REPO / "include"), "-c", str(source), "-o", str(tmp_path / f"snippet{i}.o")],
                             capture_output=True, text=True)
        assert out.returncode == 0, f"docs/c.md C block {i + 1}:\n{code}\n{out.stderr}"


def test_the_c_guides_status_table_is_the_headers() -> None:
    """docs/c.md lists every VmanStatus with its number, and nothing else:
    a status added to the header must be explained there too."""
    header = (REPO / "include" / "vman.h").read_text()
    enum = header[header.index("typedef enum VmanStatus {"):]
    enum = enum[: enum.index("} VmanStatus;")]
    declared = {name: int(value) for name, value in re.findall(r"^\s*(VMAN_STATUS_\w+) = (\d+),", enum, re.M)}
    guide = (REPO / "docs" / "c.md").read_text()
    documented = {name: int(value) for name, value in re.findall(r"^\| `(VMAN_STATUS_\w+)` \| (\d+) \|", guide, re.M)}
    assert len(declared) > 10 and documented == declared
