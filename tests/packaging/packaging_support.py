"""Helpers of the packaging tests."""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def version() -> str:
    """The workspace's version, as Cargo reads it."""
    out = subprocess.run(["cargo", "pkgid", "-p", "vman-ffi"], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip().rsplit("@", 1)[-1].rsplit("#", 1)[-1]


def require(tool: str) -> None:
    """Outside CI a missing tool skips with a reason; in CI it fails."""
    if shutil.which(tool) is not None:
        return
    reason = f"{tool} is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: scripts/setup must install it)")
    pytest.skip(f"{reason}; run scripts/setup")


def require_file(path: Path, package: str) -> None:
    """Like require, for a file that a Debian package installs."""
    if path.exists():
        return
    reason = f"{path} is missing (Debian package {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: scripts/setup must install it)")
    pytest.skip(f"{reason}; run scripts/setup")


def run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command; on failure the assertion shows its output."""
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{argv} exited {out.returncode}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    return out


def wheel(dists: Path) -> Path:
    (found,) = dists.glob("*.whl")
    return found


def sdist(dists: Path) -> Path:
    (found,) = dists.glob("*.tar.gz")
    return found


def fresh_venv(path: Path) -> Path:
    """A new virtual environment with pip and nothing of vman's: its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def clean_env(**extra: str) -> dict:
    """This process's environment without the project's virtual environment
    (so nothing resolves to .venv or to the source tree)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    bindir = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bindir)
    env.update(extra)
    return env
