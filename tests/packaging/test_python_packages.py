"""vman's Python distributions, as `scripts/package` builds them
(docs/install.md): the wheel is abi3 and manylinux2014, stripped, with full
metadata and both licences; it and the sdist each install into a fresh
virtual environment where a program uses vman and the `vman` command runs."""

import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from packaging_support import REPO, clean_env, fresh_venv, require, run, sdist, version, wheel

# The release build of the wheel, then the sdist's (its own vman crates; the
# dependencies are reused from the wheel's build).
pytestmark = pytest.mark.timeout(2400)

LICENSES = ("LICENSE-MIT", "LICENSE-APACHE")

# What a user's program does once `pip install` is done: run outside the
# repository, so it can only import the installed package.
PROGRAM = """
import pathlib, sys, tempfile
import vman
assert pathlib.Path(vman.__file__).is_relative_to(sys.prefix), vman.__file__
with tempfile.TemporaryDirectory() as tmp:
    with vman.Manager(pathlib.Path(tmp) / "state") as m:
        t = m.create_template("small", vcpus=2, memory_mib=512, disk_gib=10)
        assert (t.name, t.vcpus) == ("small", 2), t
        assert [x.name for x in m.templates()] == ["small"]
        try:
            m.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
        except vman.VmanError as e:
            print("refused:", type(e).__name__)
        else:
            raise AssertionError("a second template 'small' was accepted")
print("vman", vman.__version__, "ok")
"""


def metadata(text: str) -> dict:
    """The header fields of a METADATA / PKG-INFO file: name -> [values]."""
    fields: dict = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(": ")
        fields.setdefault(name, []).append(value)
    return fields


def check_metadata(fields: dict) -> None:
    assert fields["Name"] == ["vman"] and fields["Version"] == [version()]
    assert fields["License-Expression"] == ["MIT OR Apache-2.0"]
    assert sorted(fields["License-File"]) == sorted(LICENSES)
    assert fields["Description-Content-Type"][0].startswith("text/markdown")
    assert fields["Requires-Python"] == [">=3.9"]
    assert fields["Keywords"] and fields["Summary"]
    classifiers = fields["Classifier"]
    assert "Operating System :: POSIX :: Linux" in classifiers and "Typing :: Typed" in classifiers
    assert {u.split(",")[0] for u in fields["Project-URL"]} >= {"Homepage", "Repository", "Documentation"}


def test_wheel_is_abi3_and_manylinux2014(dists: Path) -> None:
    whl = wheel(dists)
    assert re.fullmatch(rf"vman-{re.escape(version())}-cp39-abi3-(manylinux\w*\.)*manylinux_2_17_x86_64(\.\w+)*\.whl", whl.name), whl.name
    with zipfile.ZipFile(whl) as z:
        tags = [line.split(": ")[1] for line in z.read(f"vman-{version()}.dist-info/WHEEL").decode().splitlines() if line.startswith("Tag:")]
    assert "cp39-abi3-manylinux_2_17_x86_64" in tags and "cp39-abi3-manylinux2014_x86_64" in tags


def test_auditwheel_finds_the_wheel_consistent_with_manylinux2014(dists: Path) -> None:
    """auditwheel reads the native module's versioned symbols and libraries:
    nothing newer than glibc 2.17, nothing outside the manylinux set."""
    require("auditwheel")
    out = run(["auditwheel", "show", wheel(dists)]).stdout
    flat = " ".join(out.split())
    assert 'consistent with the following platform tag: "manylinux_2_17_x86_64"' in flat, out


def test_wheel_is_stripped_and_carries_licences_and_metadata(dists: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel(dists)) as z:
        names = z.namelist()
        (module,) = [n for n in names if n.startswith("vman/_vman") and n.endswith(".so")]
        assert module == "vman/_vman.abi3.so"
        so = tmp_path / "module.so"
        so.write_bytes(z.read(module))
        for lic in LICENSES:
            assert z.read(f"vman-{version()}.dist-info/licenses/{lic}") == (REPO / lic).read_bytes()
        check_metadata(metadata(z.read(f"vman-{version()}.dist-info/METADATA").decode()))
        assert "vman/py.typed" in names and "vman/_vman.pyi" in names
    section_names = run(["readelf", "-S", "-W", so]).stdout
    assert ".symtab" not in section_names and ".debug_" not in section_names, "the native module is not stripped"


def test_sdist_carries_sources_licences_and_metadata(dists: Path) -> None:
    root = f"vman-{version()}"
    with tarfile.open(sdist(dists)) as tar:
        names = set(tar.getnames())
        for needed in ("pyproject.toml", "Cargo.toml", "Cargo.lock", "README.md", *LICENSES, "vman-core/src/lib.rs",
                       "vman-py/src/lib.rs", "python/vman/__init__.py", "python/vman/py.typed", "python/vman/_vman.pyi"):
            assert f"{root}/{needed}" in names, needed
        assert not [n for n in names if "/target/" in n or "/.venv/" in n]
        for lic in LICENSES:
            member = tar.extractfile(f"{root}/{lic}")
            assert member is not None and member.read() == (REPO / lic).read_bytes()
        info = tar.extractfile(f"{root}/PKG-INFO")
        assert info is not None
        check_metadata(metadata(info.read().decode()))


def installs_and_runs(python: Path, tmp_path: Path) -> None:
    """The program above and the console script, from the fresh environment."""
    env = clean_env()
    out = run([python, "-c", PROGRAM], cwd=tmp_path, env=env)
    assert f"vman {version()} ok" in out.stdout and "refused: AlreadyExistsError" in out.stdout, out.stdout
    script = python.parent / "vman"
    assert script.exists(), "no vman console script"
    out = run([script, "--version"], cwd=tmp_path, env=env)
    assert version() in out.stdout


def test_wheel_installs_into_a_fresh_venv_and_runs(dists: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    run([python, "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", wheel(dists)], env=clean_env())
    installs_and_runs(python, tmp_path)


def test_sdist_builds_and_installs_into_a_fresh_venv_and_runs(dists: Path, tmp_path: Path) -> None:
    """pip builds the sdist as a user's pip would: maturin (from PyPI, in
    pip's isolated build environment) compiles the Rust crates it carries
    with this machine's C toolchain. In Cargo profile `dist` and the
    project's target directory, where scripts/install (the `prefix` fixture,
    run first in this session) compiled the same dependencies with the same
    options: Cargo reuses them. The sdist's own crates are compiled anew
    (their path is the unpacked sdist's)."""
    python = fresh_venv(tmp_path / "venv")
    env = clean_env(CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", str(REPO / "target")), MATURIN_PEP517_ARGS="--profile dist")
    # --no-cache-dir: pip would otherwise keep the wheel it built and reuse it
    # for the next sdist of the same hash, building nothing.
    pip = [python, "-m", "pip", "install", "-q", "--no-cache-dir", "--disable-pip-version-check"]
    run([*pip, sdist(dists)], env=env, cwd=tmp_path)
    installs_and_runs(python, tmp_path)
