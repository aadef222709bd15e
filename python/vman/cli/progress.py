"""Long waits: progress on one rewritten stderr line when stderr is a
terminal, nothing when it is not; and the one place that decides how
Ctrl-C ends a wait."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from types import TracebackType
from typing import Callable, Optional, Type, TypeVar

import vman

from .terminal import last_line

T = TypeVar("T")

# How often the line is redrawn (and the console's last line read again).
INTERVAL = 0.25


class Progress:
    """While a wait runs: ``<what> <elapsed> s | <the guest's last console
    line>`` on one stderr line, redrawn in place, removed at the end. Off
    unless stderr is a terminal, so piped or redirected output stays clean.

    ``describe`` says what is being waited for, given the seconds elapsed
    (so a stop can say when it will force); ``console`` reads the last
    console line (called from the drawing thread)."""

    def __init__(self, describe: Callable[[float], str], console: Optional[Callable[[], Optional[str]]] = None) -> None:
        self._describe = describe
        self._console = console
        self._stream = sys.stderr
        self.enabled = self._stream.isatty()
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._started = 0.0

    def __enter__(self) -> "Progress":
        self._started = time.monotonic()
        if self.enabled:
            self._draw()  # at once: a quick wait shows its line too
            self._thread = threading.Thread(target=self._run, name="vman-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.enabled:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def _run(self) -> None:
        while not self._done.wait(INTERVAL):
            self._draw()

    def _draw(self) -> None:
        elapsed = time.monotonic() - self._started
        text = f"{self._describe(elapsed)} {elapsed:.0f} s"
        line = self._console() if self._console is not None else None
        if line:
            text += f" | {line}"
        width = shutil.get_terminal_size().columns - 1
        self._stream.write("\r" + text[:width] + "\x1b[K")
        self._stream.flush()


def console_reader(m: vman.Manager, vm: str) -> Callable[[], Optional[str]]:
    """Reads the last line VM ``vm`` printed (escape codes removed), or None."""

    def read() -> Optional[str]:
        try:
            return last_line(m.console_tail(vm, 4096))
        except vman.VmanError:
            return None

    return read


def waiting(describe: Callable[[float], str], console: Optional[Callable[[], Optional[str]]], call: Callable[..., T]) -> T:
    """Runs ``call``, a library wait, with progress shown. ``call`` takes
    keyword arguments for the library method it wraps
    (``lambda **cancel: m.stop(name, timeout=t, **cancel)``).

    Ctrl-C: the library's waiting methods, called on the main thread,
    answer it themselves: the wait is cancelled, what the cancel leaves is
    recorded (a graceful stop cancelled leaves the VM running, a start
    cancelled before QEMU answered leaves it stopped), and only then is
    KeyboardInterrupt raised, which the CLI turns into exit 130. So an
    interrupted command leaves each VM in a state ``vman vm status`` shows
    truthfully."""
    with Progress(describe, console):
        return call()
