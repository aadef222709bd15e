"""Exit codes: one table, one code per vman error kind.

docs/cli.md prints this table and tests/python/test_cli.py checks that the
two agree and that every kind vman-core has is here with a code of its own.
"""

from __future__ import annotations

from typing import Dict

import vman

OK = 0
# An error outside vman's kinds (a Python exception that is a bug in the CLI).
FAILURE = 1
# argparse's code for a malformed command line.
USAGE = 2
# Interrupted by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
# stdout's reader went away (`vman events --follow | head -1`): the command
# stops quietly with 128 + SIGPIPE, the status a shell reports for any
# program a closed pipe ended (`yes | head -1`).
BROKEN_PIPE = 141

# vman error kind (vman.VmanError.kind, the C API's status) -> exit code.
EXIT_CODES: Dict[str, int] = {
    "invalid_argument": 3,
    "not_found": 4,
    "already_exists": 5,
    "in_use": 6,
    "exhausted": 7,
    "invalid_state": 8,
    "permission_denied": 9,
    "unsupported": 10,
    "timeout": 11,
    "io": 12,
    "database": 13,
    "qemu": 14,
    "internal": 15,
    "closed": 16,
    "setting_conflict": 17,
    "cancelled": 18,
}


def kind_exit_code(kind: str) -> int:
    """The exit code of an error kind."""
    return EXIT_CODES.get(kind, FAILURE)


def exit_code(error: vman.VmanError) -> int:
    """The exit code of a vman error, by its kind."""
    return kind_exit_code(error.kind)


class CliError(Exception):
    """A failure the CLI itself detects, reported like a vman error of
    ``kind`` (so it exits with that kind's code)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
