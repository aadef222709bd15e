"""``vman vm console`` and ``vman vm tail``: the serial console for a
person at a terminal, for a script, and as a log."""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from typing import List, Sequence, Tuple

import vman

from .exits import CliError
from .output import Output, reader_gone
from .progress import console_reader, waiting
from .terminal import new_bytes, strip_escapes

# Ctrl-] ends an interactive session, as in virsh and telnet.
ESCAPE = b"\x1d"

# How often `tail --follow` looks at the log again.
FOLLOW_INTERVAL = 0.5

Step = Tuple[str, str]  # ("send", text) or ("expect", regex)


def emit(data: bytes, raw: bool) -> None:
    """Console output to stdout: as the guest wrote it with ``raw``, else
    as plain text."""
    if raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(strip_escapes(data))
        sys.stdout.flush()


def scripted(m: vman.Manager, out: Output, name: str, steps: Sequence[Step], timeout: float, raw: bool) -> None:
    """Runs ``--send``/``--expect`` steps in the order given; prints what
    each expect read (up to and including its match)."""
    transcript: List[str] = []
    with m.console(name) as console:
        for kind, value in steps:
            if kind == "send":
                console.write(value + "\n", timeout=timeout)
                continue
            pattern = value
            got = waiting(
                lambda _: f"{name}: waiting for {pattern!r} on the console",
                console_reader(m, name),
                lambda **cancel: console.read_until(pattern, timeout=timeout, **cancel),
            )
            if out.json:
                transcript.append(got.decode("utf-8", errors="replace") if raw else strip_escapes(got))
            else:
                emit(got, raw)
    if out.json:
        out.data({"vm": name, "output": transcript})
    elif steps and steps[-1][0] == "expect" and not raw:
        sys.stdout.write("\n")


def interactive(m: vman.Manager, name: str) -> None:
    """A terminal on the guest's serial console: the local terminal in raw
    mode (every key goes to the guest, Ctrl-C included) until Ctrl-] or
    until the VM stops."""
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    with m.console(name) as console:
        saved = termios.tcgetattr(stdin)
        ended = "disconnected"
        try:
            tty.setraw(stdin)
            # Said once keys go to the guest, so whoever waits for it may type.
            sys.stderr.write(f"Connected to the console of {name} (escape character is ^])\r\n")
            sys.stderr.flush()
            fd = console.fileno()
            while True:
                ready, _, _ = select.select([stdin, fd], [], [])
                if fd in ready:
                    try:
                        data = console.read(4096, timeout=0)
                    except vman.TimeoutError:
                        data = None
                    if data == b"":
                        ended = f"the console of {name} closed (the VM stopped)"
                        break
                    if data:
                        os.write(stdout, data)
                if stdin in ready:
                    keys = os.read(stdin, 1024)
                    if not keys:
                        break
                    if ESCAPE in keys:
                        before = keys.split(ESCAPE, 1)[0]
                        if before:
                            console.write(before)
                        break
                    console.write(keys)
        finally:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sys.stderr.write(f"\n{ended}\n")


def console(m: vman.Manager, out: Output, name: str, steps: Sequence[Step], timeout: float, raw: bool) -> None:
    if steps:
        scripted(m, out, name, steps, timeout, raw)
    elif out.json:
        raise CliError("invalid_argument", "an interactive console has no --json form: script it with --send TEXT and --expect REGEX")
    elif sys.stdin.isatty():
        interactive(m, name)
    else:
        raise CliError("invalid_argument", "stdin is not a terminal: script the console with --send TEXT and --expect REGEX")


def tail(m: vman.Manager, name: str, max_bytes: int, follow: bool, raw: bool) -> None:
    """The end of the console log; with ``follow``, then what the guest
    prints next, until Ctrl-C. (The library has no call that streams the
    log, so following re-reads its tail and prints what is new.)"""
    window = max(max_bytes, 65536) if follow else max_bytes
    seen = m.console_tail(name, window)
    emit(seen[-max_bytes:] if max_bytes else b"", raw)
    while follow:
        time.sleep(FOLLOW_INTERVAL)
        if reader_gone():
            raise BrokenPipeError("stdout's reader went away")  # main exits quietly
        now = m.console_tail(name, window)
        if now != seen:
            emit(new_bytes(seen, now), raw)
            seen = now
