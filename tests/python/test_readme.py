"""README.md's examples, run as written, so they cannot rot.

The Python example boots the test guest (TCG, isolated NICs: the tests'
rules, applied by a prelude rather than by editing the example); its
placeholders (kernel, initrd, the login prompt) are replaced, each found
exactly once. A `print(...)  # expected` line must print what its comment
says (``…`` stands for anything). The C snippet is compiled against
include/vman.h with strict warnings and run under valgrind; the Rust lines
must be lines of examples/rust/quickstart.rs (run by test_examples.py); the
command-line block runs line by line.
(scripts/test also runs `mypy --strict` over the Python blocks.)
"""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vman
from conftest import READY, REPO, _skip_or_fail
from readme import blocks

# The tests' rules for any manager the examples open (see conftest.tcg).
PRELUDE = """\
import functools
import vman
vman.Manager = functools.partial(vman.Manager, accel="tcg", network="isolated")
"""


def substitute(text: str, replacements: dict[str, str]) -> str:
    for placeholder, value in replacements.items():
        assert text.count(placeholder) == 1, f"the README example should contain {placeholder} once"
        text = text.replace(placeholder, value)
    return text


def expected_prints(block: str) -> list[re.Pattern[str]]:
    """For each `print(...)  # comment` line, the comment as a pattern."""
    patterns = []
    for line in block.splitlines():
        m = re.match(r"\s*print\(.*\)\s+#\s(.*)$", line)
        if m:
            parts = [re.escape(p) for p in m.group(1).split("…")]
            patterns.append(re.compile(".*".join(parts) + "$"))
    return patterns


@pytest.mark.timeout(600)
def test_the_python_examples_run_as_the_readme_says(tmp_path: Path, guest: dict) -> None:
    example, follow, _storage = blocks("python")
    state = tmp_path / "state"
    program = PRELUDE + substitute(example, {
        '"/path/vmlinuz"': repr(guest["kernel"]),
        '"/path/initrd.img"': repr(guest["initrd"]),
        'r"login:"': repr(READY),
    })
    env = {**os.environ, "VMAN_STATE_DIR": str(state)}  # vman.default_state_dir()
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    printed = out.stdout.splitlines()
    patterns = expected_prints(example)
    assert len(patterns) == 2 and len(printed) == len(patterns), printed
    for line, pattern in zip(printed, patterns):
        assert pattern.match(line), f"printed {line!r}, the README says {pattern.pattern!r}"

    with vman.Manager(state, accel="tcg", network="isolated") as m:
        assert m.vms() == [], "web1 was deleted"
        assert m.allocations("lan") == [], "both addresses were released"
        history = [(e.id, e.object_name, e.action) for e in m.recent_events(1000)]
    assert ("web1", "deleted") in [(name, action) for _, name, action in history]

    # The follower: the whole history first (after=0), then what another
    # writer commits, live; Ctrl-C ends it.
    program = PRELUDE + follow + "\nimport sys\nfollow(sys.argv[1])\n"
    child = subprocess.Popen([sys.executable, "-u", "-c", program, str(state)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = Lines(child)
    try:
        seen = lines.read(len(history))
        assert seen == [f"{i} {name} {action}" for i, name, action in history]
        with vman.Manager(state, accel="tcg", network="isolated") as m:
            m.create_template("later", vcpus=1, memory_mib=256, disk_gib=1)
        (line,) = lines.read(1)
        assert line == f"{history[-1][0] + 1} later created", line
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        assert child.returncode != 0 and b"KeyboardInterrupt" in err, err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.timeout(300)
def test_the_storage_example_runs_as_the_readme_says(tmp_path: Path) -> None:
    storage = blocks("python")[2]
    image = tmp_path / "debian-12.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    program = PRELUDE + substitute(storage, {
        '"/path/debian-12.qcow2"': repr(str(image)),
        '"/path/id_ed25519.pub"': repr(str(key) + ".pub"),
    })
    state = tmp_path / "state"
    env = {**os.environ, "VMAN_STATE_DIR": str(state)}
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    printed, patterns = out.stdout.splitlines(), expected_prints(storage)
    assert len(patterns) == 2 and len(printed) == len(patterns), printed
    for line, pattern in zip(printed, patterns):
        assert pattern.match(line), f"printed {line!r}, the README says {pattern.pattern!r}"
    with vman.Manager(state, accel="tcg", network="isolated") as m:
        assert [i.name for i in m.images()] == ["debian-12"] and m.vms() == []
        assert m.allocations("db") == [], "db1's address was released"


class Lines:
    """A child's stdout, line by line, with a deadline (select sees only the
    pipe, so the buffering is done here)."""

    def __init__(self, child: subprocess.Popen) -> None:
        self.child, self.pending = child, b""

    def read(self, count: int, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while self.pending.count(b"\n") < count:
            fd = self.child.stdout.fileno()
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"only {self.pending!r} after {timeout} s"
            chunk = os.read(fd, 65536)
            assert chunk, f"the follower exited: {self.child.stderr.read()}"
            self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n", count)
        return [line.decode() for line in lines]


def cargo_artifact(package: str, target: str) -> Path:
    """Builds `package` (a no-op when fresh) and returns `target`'s library."""
    out = subprocess.run(["cargo", "build", "-q", "-p", package, "--message-format=json"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == target:
            for f in msg["filenames"]:
                if f.endswith(".so"):
                    return Path(f)
    raise AssertionError(f"cargo built no {target} library")


@pytest.mark.timeout(900)
def test_the_c_example_compiles_strictly_and_runs(tmp_path: Path) -> None:
    for tool in ("gcc", "valgrind", "cargo"):
        if shutil.which(tool) is None:
            _skip_or_fail(f"{tool} is not installed")
    (snippet,) = blocks("c")
    state = tmp_path / "state"
    source = tmp_path / "example.c"
    source.write_text(substitute(snippet, {'"/var/lib/vman"': json.dumps(str(state))}))
    lib = cargo_artifact("vman-ffi", "vman").parent
    exe = tmp_path / "example"
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(REPO / "include"),
                    str(source), "-o", str(exe), "-L", str(lib), f"-Wl,-rpath,{lib}", "-lvman"], check=True)
    valgrind = ["valgrind", "--quiet", "--error-exitcode=97", "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect"]
    out = subprocess.run([*valgrind, str(exe)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout == "small: 1 vCPU\n", out.stdout + out.stderr
    # Its error path: the template exists now, and the message says so.
    out = subprocess.run([*valgrind, str(exe)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and out.stdout == "", out.stdout + out.stderr
    assert out.stderr.startswith("vman: ") and '"small"' in out.stderr, out.stderr


def test_the_rust_example_is_the_quickstart() -> None:
    """The Rust lines are lines of examples/rust/quickstart.rs, which
    test_examples.py runs."""
    (snippet,) = blocks("rust")
    example = (REPO / "examples" / "rust" / "quickstart.rs").read_text().splitlines()
    # Every line the README shows is a line of the example, in order (the
    # README leaves out the rest).
    position = 0
    for line in filter(None, (l.strip() for l in snippet.splitlines())):
        stripped = [l.strip() for l in example[position:]]
        assert line in stripped, f"quickstart.rs has no line {line!r} (after line {position})"
        position += stripped.index(line) + 1


@pytest.mark.timeout(900)
def test_the_command_line_example_runs(tmp_path: Path, boot_media: dict) -> None:
    """The ```shell block, line by line, as a shell runs it, against a state
    directory made with the tests' rules (TCG, isolated NICs); the image is
    the test guest's disk. A line whose comment says it is interactive is
    left out (its stdin is no terminal here)."""
    (block,) = blocks("shell")
    vman_bin = Path(sys.executable).parent / "vman"
    if not vman_bin.exists():
        _skip_or_fail("the vman command is not installed (maturin develop)")
    state = tmp_path / "state"
    vman.Manager(state, accel="tcg", network="isolated").close()
    env = {**os.environ, "VMAN_STATE_DIR": str(state), "PATH": f"{vman_bin.parent}:{os.environ['PATH']}"}
    text = substitute(block, {"./debian-12.qcow2": boot_media["qcow2"]})
    ran = []
    for line in filter(None, text.splitlines()):
        if "(interactive" in line:
            continue
        out = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{line}\n{out.stdout}{out.stderr}"
        ran.append((line, out.stdout))
    shown = dict(ran)
    assert json.loads(shown["vman --json vm show web1      # what scripts read"])["nics"][0]["network"] == "lan"
    with vman.Manager(state) as m:
        assert m.vm("web1").state == "stopped"
        assert [v.name for v in m.vms()] == ["web1"], "the batch was deleted by prefix"
        m.delete_vm("web1")
