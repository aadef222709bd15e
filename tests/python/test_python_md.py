"""docs/python.md's examples, run as written and type-checked, so they
cannot rot.

Its Python blocks are one program, run in order against the test guest
(TCG, isolated NICs: the tests' rules, applied by a prelude rather than by
editing the page); its placeholders (the state directory, kernel, initrd,
the login prompt) are replaced, each found exactly once. Each
`print(...)  # expected` line must have printed a line matching its
comment (``…`` stands for anything). The blocks also pass
`mypy --strict`.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import READY, REPO
from readme import blocks
from test_readme import PRELUDE, expected_prints, substitute

DOC = REPO / "docs" / "python.md"


def program() -> str:
    return "\n\n".join(f"# docs/python.md, Python block {i + 1}\n{b}" for i, b in enumerate(blocks("python", DOC)))


@pytest.mark.timeout(600)
def test_the_examples_of_docs_python_md_run_as_the_page_says(tmp_path: Path, guest: dict) -> None:
    state = tmp_path / "state"
    code = PRELUDE + substitute(program(), {
        '"/var/lib/vman"': repr(str(state)),
        '"/path/vmlinuz"': repr(guest["kernel"]),
        '"/path/initrd.img"': repr(guest["initrd"]),
        'r"login:"': repr(READY),
    })
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=480)
    assert out.returncode == 0, out.stdout + out.stderr
    printed = out.stdout.splitlines()
    patterns = expected_prints(program())
    assert len(patterns) >= 15, "the page's examples print what they show"
    for pattern in patterns:
        assert any(pattern.match(line) for line in printed), f"nothing printed matches {pattern.pattern!r}: {printed}"


@pytest.mark.timeout(300)
def test_the_examples_of_docs_python_md_pass_mypy_strict(tmp_path: Path) -> None:
    source = tmp_path / "python_md.py"
    source.write_text(program())
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(source)],
                         capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stdout + out.stderr
