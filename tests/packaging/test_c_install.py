"""vman for C, as `scripts/install` installs it (docs/install.md): a program
builds with nothing but pkg-config, against the shared library and against
the static one, and the static one keeps its SQLite to itself."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from packaging_support import REPO, require, require_file, run, version

# A release build of vman-ffi and its dependencies when nothing is cached.
pytestmark = pytest.mark.timeout(1800)

PROGRAM = REPO / "tests/packaging/program.c"
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def pkg_config(prefix: Path, *args: str) -> list:
    out = run(["pkg-config", *args], env={**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib/pkgconfig")})
    return shlex.split(out.stdout)


def elf_dynamic(path: Path) -> str:
    return run(["readelf", "-d", "-W", path]).stdout


def sections(path: Path) -> set:
    out = run(["readelf", "-S", "-W", path]).stdout
    return set(re.findall(r"\]\s+(\.\S+)", out))


def exported(path: Path) -> list:
    """Defined global symbols: the dynamic table of a .so, every member's of a .a."""
    args = ["-D"] if path.suffix != ".a" else []
    out = run(["nm", *args, "-g", "--defined-only", "--format=posix", path]).stdout
    return [line.split()[0] for line in out.splitlines() if len(line.split()) >= 2 and not line.endswith(":")]


def test_install_lays_out_versioned_libraries_header_and_pkg_config_file(prefix: Path) -> None:
    v = version()
    major = v.split(".")[0]
    lib = prefix / "lib"
    assert (lib / f"libvman.so.{v}").is_file() and not (lib / f"libvman.so.{v}").is_symlink()
    assert os.readlink(lib / f"libvman.so.{major}") == f"libvman.so.{v}"
    assert os.readlink(lib / "libvman.so") == f"libvman.so.{major}"
    assert (lib / "libvman.a").is_file()
    assert (prefix / "include/vman.h").read_bytes() == (REPO / "include/vman.h").read_bytes()
    assert f"Library soname: [libvman.so.{major}]" in elf_dynamic(lib / f"libvman.so.{v}")
    pc = (lib / "pkgconfig/vman.pc").read_text()
    assert f"prefix={prefix}\n" in pc
    assert f"Version: {v}\n" in pc
    assert pkg_config(prefix, "--modversion", "vman") == [v]


def test_pkg_config_names_what_the_static_library_needs(prefix: Path) -> None:
    shared = pkg_config(prefix, "--libs", "vman")
    assert shared == [f"-L{prefix / 'lib'}", "-lvman"]
    static = pkg_config(prefix, "--static", "--libs", "vman")
    # What rustc prints for a staticlib of vman-ffi (the bundled SQLite needs
    # -lm, Rust's runtime -lgcc_s, -lpthread, -ldl...).
    for lib in ("-lm", "-lpthread", "-ldl", "-lgcc_s", "-lc"):
        assert lib in static, static


def test_release_artefacts_are_stripped(prefix: Path) -> None:
    so = prefix / "lib" / f"libvman.so.{version()}"
    assert not {s for s in sections(so) if s.startswith(".debug")}, "debug information in libvman.so"
    assert ".symtab" not in sections(so), "libvman.so is not stripped"
    # The archive's one object: no debug information, no LLVM bitcode.
    out = run(["readelf", "-S", "-W", prefix / "lib/libvman.a"]).stdout
    assert ".debug_" not in out and ".llvmbc" not in out


def test_only_the_vman_api_is_exported(prefix: Path) -> None:
    lib = prefix / "lib"
    header = (REPO / "include/vman.h").read_text()
    declared = set(re.findall(r"\b(vman_\w+)\(", header))
    for path in (lib / f"libvman.so.{version()}", lib / "libvman.a"):
        symbols = exported(path)
        assert not [s for s in symbols if s.startswith("sqlite3")], f"{path.name} exports SQLite's symbols"
        assert not [s for s in symbols if not s.startswith("vman_")], f"{path.name} exports non-API symbols"
        assert set(symbols) == declared, f"{path.name}: exported and declared functions differ"


def test_program_builds_with_pkg_config_and_runs_against_the_shared_library(prefix: Path, tmp_path: Path) -> None:
    exe = tmp_path / "shared"
    run(["cc", *STRICT, PROGRAM, "-o", exe, *pkg_config(prefix, "--cflags", "--libs", "vman")])
    assert f"Shared library: [libvman.so.{version().split('.')[0]}]" in elf_dynamic(exe)
    out = run([exe, tmp_path / "state"], env={**os.environ, "LD_LIBRARY_PATH": str(prefix / "lib")})
    assert "all checks passed" in out.stdout


def test_program_links_the_static_library_next_to_the_system_sqlite(prefix: Path, tmp_path: Path) -> None:
    """libvman.a by name (`-l:libvman.a`, what docs/install.md says), the
    system libraries from `pkg-config --static`, and the system's shared
    SQLite: the program's own SQLite calls reach the system's library (the
    program checks the version against the header it was compiled with)."""
    require_file(Path("/usr/include/sqlite3.h"), "libsqlite3-dev")
    flags = [("-l:libvman.a" if f == "-lvman" else f) for f in pkg_config(prefix, "--static", "--cflags", "--libs", "vman")]
    exe = tmp_path / "static"
    run(["cc", *STRICT, "-DWITH_SQLITE", PROGRAM, "-o", exe, *flags, "-lsqlite3"])
    dynamic = elf_dynamic(exe)
    assert "libvman" not in dynamic, "linked the shared libvman"
    assert "Shared library: [libsqlite3.so.0]" in dynamic
    out = run([exe, tmp_path / "state"], env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    assert "all checks passed" in out.stdout and "system sqlite" in out.stdout


def test_destdir_stages_the_files_for_the_final_prefix(tmp_path: Path) -> None:
    """A package build: files under DESTDIR, vman.pc naming the final prefix.
    (Reuses the build of the `prefix` fixture: nothing is compiled again.)"""
    stage = tmp_path / "stage"
    run([REPO / "scripts/install", "--prefix", "/opt/vman"], env={**os.environ, "DESTDIR": str(stage)})
    lib = stage / "opt/vman/lib"
    assert (lib / f"libvman.so.{version()}").is_file()
    assert (stage / "opt/vman/include/vman.h").is_file()
    pc = (lib / "pkgconfig/vman.pc").read_text()
    assert "prefix=/opt/vman\n" in pc and str(stage) not in pc


def test_install_refuses_a_relative_prefix(tmp_path: Path) -> None:
    out = subprocess.run([REPO / "scripts/install", "--prefix", "relative"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and "absolute" in out.stderr
