"""The file-like object `Manager.console()` returns."""

from __future__ import annotations

import re
import socket
import time
from typing import Optional, Union


class Console:
    """A VM's serial console: read what the guest prints, write its input.

    QEMU serves one console client at a time; the serial log keeps recording
    either way. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, size: int = 4096, timeout: Optional[float] = None) -> bytes:
        """Up to ``size`` bytes; ``b""`` once QEMU closed the console.

        Raises :class:`TimeoutError` if nothing arrives within ``timeout``.
        """
        self._sock.settimeout(timeout)
        try:
            return self._sock.recv(size)
        except socket.timeout as e:
            raise TimeoutError(f"no console output within {timeout} s") from e

    def write(self, data: Union[bytes, str]) -> int:
        if isinstance(data, str):
            data = data.encode()
        self._sock.sendall(data)
        return len(data)

    def read_until(self, pattern: str, timeout: float) -> bytes:
        """Reads until the output so far matches the regex ``pattern``."""
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        seen = b""
        while not regex.search(seen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{pattern!r} not seen on the console within {timeout} s")
            chunk = self.read(4096, timeout=left)
            if not chunk:
                raise EOFError("the console closed")
            seen += chunk
        return seen

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<vman.Console fd={self._sock.fileno()}>"
