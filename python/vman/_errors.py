"""The exception tree of vman.

Every error vman raises derives from :class:`VmanError`. Bad input is also a
:class:`ValueError`, a missing object a :class:`LookupError`, and operating
system failures :class:`OSError` subclasses, so callers can catch at the level
they care about. ``kind`` is the stable identifier the C API also uses.
"""

import builtins

__all__ = [
    "VmanError",
    "InvalidArgumentError",
    "NotFoundError",
    "AlreadyExistsError",
    "InUseError",
    "ExhaustedError",
    "InvalidStateError",
    "PermissionDeniedError",
    "UnsupportedError",
    "TimeoutError",
    "IoError",
    "DatabaseError",
    "QemuError",
    "InternalError",
    "ClosedError",
    "SettingConflictError",
    "CancelledError",
]


class VmanError(Exception):
    """Base class of every vman error."""

    kind = "internal"


class InvalidArgumentError(VmanError, ValueError):
    """An argument was malformed or out of range; nothing was changed."""

    kind = "invalid_argument"


class NotFoundError(VmanError, LookupError):
    """The named template, network or VM does not exist."""

    kind = "not_found"


class AlreadyExistsError(VmanError):
    """An object with that name, VLAN id, address or MAC already exists."""

    kind = "already_exists"


class InUseError(VmanError):
    """The object is still used by another and cannot be deleted."""

    kind = "in_use"


class ExhaustedError(VmanError):
    """A network has no free address left."""

    kind = "exhausted"


class InvalidStateError(VmanError):
    """The operation is not allowed in the VM's current state."""

    kind = "invalid_state"


class PermissionDeniedError(VmanError, PermissionError):
    """The caller lacks a privilege the operation needs."""

    kind = "permission_denied"


class UnsupportedError(VmanError):
    """The host cannot do this (missing kernel feature or program)."""

    kind = "unsupported"


class TimeoutError(VmanError, builtins.TimeoutError):
    """A wait ran out of time."""

    kind = "timeout"


class IoError(VmanError, OSError):
    """An operating-system call failed."""

    kind = "io"


class DatabaseError(VmanError):
    """The state database failed or is corrupt."""

    kind = "database"


class QemuError(VmanError):
    """QEMU refused or failed an operation."""

    kind = "qemu"


class InternalError(VmanError):
    """A bug in vman; please report it."""

    kind = "internal"


class ClosedError(VmanError):
    """The manager, stream or console was closed; nothing more will come."""

    kind = "closed"


class SettingConflictError(VmanError):
    """The opener asked for a setting (network mode, accelerator, a binary...)
    that differs from the one the state directory keeps; nothing was opened.
    The message names the setting, both values and the command that
    changes it."""

    kind = "setting_conflict"


class CancelledError(VmanError):
    """A wait was cancelled through its :class:`vman.Cancel` token.

    Each cancellable method says what it leaves (a cancelled graceful
    ``stop`` leaves the VM running, for instance). Not to be confused with
    :class:`asyncio.CancelledError`, which :mod:`vman.aio` raises when the
    awaiting task itself is cancelled; and Ctrl-C stays
    :class:`KeyboardInterrupt`.
    """

    kind = "cancelled"
