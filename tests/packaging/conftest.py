"""Fixtures of the packaging tests: what scripts/install and scripts/package
make, built once per session into a temporary directory.

These tests are slow (release builds) and run once, as their own step of
scripts/test: `python -m pytest tests/packaging`.
"""

from pathlib import Path

import pytest

from packaging_support import REPO, require, run


@pytest.fixture(scope="session")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vman installed for C by `scripts/install --prefix` into a fresh prefix."""
    for tool in ("cc", "pkg-config", "ld", "objcopy", "nm", "readelf"):
        require(tool)
    prefix = tmp_path_factory.mktemp("c") / "prefix"
    run([REPO / "scripts/install", "--prefix", prefix])
    return prefix


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist that `scripts/package` builds."""
    out = tmp_path_factory.mktemp("dist")
    run([REPO / "scripts/package", "--out", out])
    return out
