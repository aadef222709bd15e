"""vman for asyncio: :class:`AsyncManager`, awaitable forms of every
:class:`vman.Manager` method, ``async for`` over live events, and an
awaitable console.

Every call runs off the event loop, in an executor (by default the loop's
default thread pool; pass ``executor=`` to give vman threads of its own):
the loop never blocks on the disk, a lock or QEMU, so other tasks run
while a VM boots or stops. Waiting for events or console output holds no
thread at all: it waits for the descriptor in the loop itself.

Cancelling the task that awaits a call (``task.cancel()``,
``asyncio.wait_for``, a request handler whose client went away, Ctrl-C
under :func:`asyncio.run`) cancels the call's :class:`vman.Cancel` token:
the call winds down and leaves the VM as its ``cancel`` documentation says
(a graceful stop cancelled before it forced anything leaves the VM
running), and only once it has returned does :class:`asyncio.CancelledError`
propagate. A call that takes no token (a create, a delete) is let finish.

>>> import asyncio, tempfile, vman.aio
>>> async def main() -> None:
...     async with await vman.aio.AsyncManager.open(tempfile.mkdtemp()) as am:
...         t = await am.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
...         print(t.name, [t.name for t in await am.templates()])
>>> asyncio.run(main())
small ['small']
"""

from __future__ import annotations

import asyncio
import functools
import os
import pathlib
from concurrent.futures import Executor
from typing import Any, Callable, Literal, Optional, Sequence, TypeVar, Union

from . import _errors
from ._vman import (
    DEFAULTS,
    Allocation,
    Batch,
    Cancel,
    Console,
    Disk,
    Event,
    EventStream,
    HostHealth,
    HostStats,
    Image,
    Manager,
    Network,
    NicSpec,
    ReconcileReport,
    Settings,
    Snapshot,
    SshKey,
    Template,
    Vm,
)

__all__ = ["AsyncManager", "AsyncEventStream", "AsyncConsole"]

T = TypeVar("T")
_Path = Union[str, "os.PathLike[str]"]
_VmState = Literal["created", "starting", "running", "paused", "stopping", "stopped", "error", "deleted"]
_DiskState = Literal["creating", "available", "attaching", "attached", "detaching", "deleting", "error"]
_DiskFormat = Literal["qcow2", "raw"]
_Firmware = Literal["bios", "uefi"]
_Display = Literal["none", "vnc-unix", "vnc-tcp"]


async def _finish(future: asyncio.Future[T], cancel: Optional[Cancel], keep: Optional[Callable[[T], None]] = None) -> T:
    """Awaits a call running in an executor. If the awaiting task is
    cancelled, cancels ``cancel`` (if any), waits until the call has
    returned (cancelling again does not cut that short), hands a result it
    still produced to ``keep``, then re-raises :class:`asyncio.CancelledError`."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if cancel is not None:
            cancel.cancel()
        while not future.done():
            try:
                await asyncio.wait({future})
            except asyncio.CancelledError:
                continue
        if not future.cancelled() and future.exception() is None and keep is not None:
            keep(future.result())
        raise


async def _readable(fd: int, timeout: Optional[float]) -> bool:
    """Waits in the event loop (no thread) until ``fd`` is readable; False
    if ``timeout`` seconds passed first."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def _left(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    return max(0.0, deadline - asyncio.get_running_loop().time())


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if timeout < 0:
        raise _errors.InvalidArgumentError(f"Invalid timeout: {timeout} is negative")
    return asyncio.get_running_loop().time() + timeout


class AsyncManager:
    """A :class:`vman.Manager` for asyncio: the same methods, awaitable.

    Open one with ``await AsyncManager.open(state_dir, **options)`` (the
    options of :class:`vman.Manager`), or wrap a manager you have with
    ``AsyncManager(manager)``. Use ``async with`` to close it. Like
    :class:`vman.Manager`, it may be used by many tasks at once: calls on
    one VM wait for each other, other calls run side by side (as many as
    the executor has threads).

    Each method's documentation is the :class:`vman.Manager` method's. The
    waiting ones (``start``, ``stop``, ``restart``, ``detach_disk``, the
    snapshot methods, ``wait_for_console``) are cancelled with their task
    as the module documentation says; they take no ``cancel=``: cancel the
    task.
    """

    def __init__(self, manager: Manager, *, executor: Optional[Executor] = None) -> None:
        self._m = manager
        self._executor = executor

    @classmethod
    async def open(cls, state_dir: _Path, *, executor: Optional[Executor] = None, **options: Any) -> "AsyncManager":
        """Opens ``state_dir`` off the event loop (opening reconciles, which
        may wait for QEMU); ``options`` are :class:`vman.Manager`'s keyword
        arguments. Raises what :class:`vman.Manager` raises."""
        loop = asyncio.get_running_loop()
        manager = await _finish(loop.run_in_executor(executor, functools.partial(Manager, state_dir, **options)), None)
        return cls(manager, executor=executor)

    @property
    def manager(self) -> Manager:
        """The :class:`vman.Manager` underneath, for synchronous code."""
        return self._m

    @property
    def state_dir(self) -> pathlib.Path:
        """The state directory."""
        return self._m.state_dir

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs a call that takes no token in the executor."""
        loop = asyncio.get_running_loop()
        return await _finish(loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs)), None)

    async def _wait(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs a waiting call in the executor with a token of its own,
        cancelled if the awaiting task is."""
        cancel = Cancel()
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, cancel=cancel, **kwargs)
        return await _finish(loop.run_in_executor(self._executor, call), cancel)

    async def close(self) -> None:
        """Closes the manager (see :meth:`vman.Manager.close`), waiting off
        the loop for calls in progress."""
        await self._call(self._m.close)

    async def __aenter__(self) -> "AsyncManager":
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncManager({self._m!r})"

    # ----- templates and networks -------------------------------------------

    async def create_template(
        self, name: str, *, vcpus: int, memory_mib: int, disk_gib: int, description: Optional[str] = None
    ) -> Template:
        return await self._call(
            self._m.create_template, name, vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib, description=description
        )

    async def template(self, name: str) -> Template:
        return await self._call(self._m.template, name)

    async def templates(self) -> list[Template]:
        return await self._call(self._m.templates)

    async def delete_template(self, name: str) -> None:
        await self._call(self._m.delete_template, name)

    async def create_network(
        self,
        name: str,
        *,
        vlan: int,
        cidr: str,
        gateway: Optional[str] = None,
        reserved: Optional[Sequence[str]] = None,
        dns: Optional[Sequence[str]] = None,
        uplink: Optional[str] = None,
    ) -> Network:
        return await self._call(
            self._m.create_network, name, vlan=vlan, cidr=cidr, gateway=gateway, reserved=reserved, dns=dns, uplink=uplink
        )

    async def network(self, name: str) -> Network:
        return await self._call(self._m.network, name)

    async def networks(self) -> list[Network]:
        return await self._call(self._m.networks)

    async def delete_network(self, name: str) -> None:
        await self._call(self._m.delete_network, name)

    async def allocations(self, network: str) -> list[Allocation]:
        return await self._call(self._m.allocations, network)

    # ----- SSH keys ---------------------------------------------------------

    async def import_ssh_key(self, name: str, public_key: str) -> SshKey:
        return await self._call(self._m.import_ssh_key, name, public_key)

    async def ssh_key(self, name: str) -> SshKey:
        return await self._call(self._m.ssh_key, name)

    async def ssh_keys(self) -> list[SshKey]:
        return await self._call(self._m.ssh_keys)

    async def delete_ssh_key(self, name: str) -> None:
        await self._call(self._m.delete_ssh_key, name)

    # ----- VMs --------------------------------------------------------------

    async def create_vm(
        self,
        name: str,
        *,
        template: str,
        nics: Optional[Sequence[Union[str, NicSpec]]] = None,
        kernel: Optional[str] = None,
        initrd: Optional[str] = None,
        cmdline: Optional[str] = None,
        image: Optional[str] = None,
        blank_disk: bool = False,
        firmware: Optional[_Firmware] = None,
        cdrom: Optional[_Path] = None,
        boot_from_cdrom: bool = False,
        display: _Display = "none",
        cloud_init: bool = False,
        user_data: Optional[str] = None,
        ssh_keys: Optional[Sequence[str]] = None,
    ) -> Vm:
        return await self._call(
            self._m.create_vm,
            name,
            template=template,
            nics=nics,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            image=image,
            blank_disk=blank_disk,
            firmware=firmware,
            cdrom=cdrom,
            boot_from_cdrom=boot_from_cdrom,
            display=display,
            cloud_init=cloud_init,
            user_data=user_data,
            ssh_keys=ssh_keys,
        )

    async def vm(self, name: str) -> Vm:
        return await self._call(self._m.vm, name)

    async def vms(self, *, state: Optional[_VmState] = None, name_prefix: Optional[str] = None) -> list[Vm]:
        return await self._call(self._m.vms, state=state, name_prefix=name_prefix)

    async def delete_vm(self, name: str, *, force: bool = False) -> None:
        await self._call(self._m.delete_vm, name, force=force)

    async def start(self, name: str) -> Vm:
        return await self._wait(self._m.start, name)

    async def stop(self, name: str, timeout: float = DEFAULTS["stop_timeout"]) -> Vm:
        return await self._wait(self._m.stop, name, timeout)

    async def force_stop(self, name: str) -> Vm:
        return await self._call(self._m.force_stop, name)

    async def restart(self, name: str, timeout: float = DEFAULTS["stop_timeout"]) -> Vm:
        return await self._wait(self._m.restart, name, timeout)

    async def pause(self, name: str) -> Vm:
        return await self._call(self._m.pause, name)

    async def resume(self, name: str) -> Vm:
        return await self._call(self._m.resume, name)

    async def change_cdrom(self, vm: str, iso: Optional[_Path]) -> Vm:
        return await self._call(self._m.change_cdrom, vm, iso)

    # ----- disks, images, snapshots -----------------------------------------

    async def create_disk(self, name: str, size_bytes: int, *, format: _DiskFormat = "qcow2") -> Disk:
        return await self._call(self._m.create_disk, name, size_bytes, format=format)

    async def import_disk(self, name: str, source: _Path, *, format: Optional[_DiskFormat] = None, copy: bool = True) -> Disk:
        return await self._call(self._m.import_disk, name, source, format=format, copy=copy)

    async def disk(self, name: str) -> Disk:
        return await self._call(self._m.disk, name)

    async def disks(self, *, vm: Optional[str] = None, state: Optional[_DiskState] = None) -> list[Disk]:
        return await self._call(self._m.disks, vm=vm, state=state)

    async def delete_disk(self, name: str) -> None:
        await self._call(self._m.delete_disk, name)

    async def resize_disk(self, name: str, size_bytes: int, *, force: bool = False) -> Disk:
        return await self._call(self._m.resize_disk, name, size_bytes, force=force)

    async def attach_disk(self, vm: str, disk: str) -> Disk:
        return await self._call(self._m.attach_disk, vm, disk)

    async def detach_disk(self, vm: str, disk: str, timeout: float = DEFAULTS["detach_timeout"]) -> Disk:
        return await self._wait(self._m.detach_disk, vm, disk, timeout)

    async def register_image(
        self,
        name: str,
        source: _Path,
        *,
        os: str = "",
        arch: str = "x86_64",
        description: str = "",
        firmware: _Firmware = "bios",
        format: Optional[_DiskFormat] = None,
        copy: bool = True,
    ) -> Image:
        return await self._call(
            self._m.register_image,
            name,
            source,
            os=os,
            arch=arch,
            description=description,
            firmware=firmware,
            format=format,
            copy=copy,
        )

    async def image(self, name: str) -> Image:
        return await self._call(self._m.image, name)

    async def images(self) -> list[Image]:
        return await self._call(self._m.images)

    async def delete_image(self, name: str) -> None:
        await self._call(self._m.delete_image, name)

    async def create_snapshot(self, vm: str, name: str) -> Snapshot:
        return await self._wait(self._m.create_snapshot, vm, name)

    async def snapshots(self, vm: str) -> list[Snapshot]:
        return await self._call(self._m.snapshots, vm)

    async def revert_snapshot(self, vm: str, name: str) -> Snapshot:
        return await self._wait(self._m.revert_snapshot, vm, name)

    async def delete_snapshot(self, vm: str, name: str) -> None:
        await self._wait(self._m.delete_snapshot, vm, name)

    # ----- console, events, history -----------------------------------------

    async def console_tail(self, name: str, max_bytes: int = DEFAULTS["console_tail_bytes"]) -> bytes:
        return await self._call(self._m.console_tail, name, max_bytes)

    async def wait_for_console(self, name: str, pattern: str, timeout: float = DEFAULTS["console_wait_timeout"]) -> str:
        return await self._wait(self._m.wait_for_console, name, pattern, timeout)

    async def console(self, name: str) -> "AsyncConsole":
        """Attaches to the VM's serial console: an :class:`AsyncConsole`
        (see :meth:`vman.Manager.console`)."""
        return AsyncConsole(await self._call(self._m.console, name), self._executor)

    # ----- batches ----------------------------------------------------------

    async def create_batch(
        self,
        pattern: str,
        *,
        count: int,
        template: str,
        nics: Optional[Sequence[Union[str, NicSpec]]] = None,
        kernel: Optional[str] = None,
        initrd: Optional[str] = None,
        cmdline: Optional[str] = None,
        image: Optional[str] = None,
        blank_disk: bool = False,
        firmware: Optional[_Firmware] = None,
        cdrom: Optional[_Path] = None,
        boot_from_cdrom: bool = False,
        display: _Display = "none",
        cloud_init: bool = False,
        user_data: Optional[str] = None,
        ssh_keys: Optional[Sequence[str]] = None,
        start: bool = False,
        name: Optional[str] = None,
        first: int = DEFAULTS["batch_first"],
    ) -> Batch:
        return await self._call(
            self._m.create_batch,
            pattern,
            count=count,
            template=template,
            nics=nics,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            image=image,
            blank_disk=blank_disk,
            firmware=firmware,
            cdrom=cdrom,
            boot_from_cdrom=boot_from_cdrom,
            display=display,
            cloud_init=cloud_init,
            user_data=user_data,
            ssh_keys=ssh_keys,
            start=start,
            name=name,
            first=first,
        )

    async def batches(self) -> list[Batch]:
        return await self._call(self._m.batches)

    async def batch(self, name: str) -> Batch:
        return await self._call(self._m.batch, name)

    async def delete_batch(self, name: str, *, force: bool = False) -> list[str]:
        return await self._call(self._m.delete_batch, name, force=force)

    async def delete_vms(self, *, prefix: str, force: bool = False) -> list[str]:
        return await self._call(self._m.delete_vms, prefix=prefix, force=force)

    # ----- the state directory and the host --------------------------------

    async def settings(self) -> Settings:
        return await self._call(self._m.settings)

    async def set_setting(self, key: str, value: Union[str, int, "os.PathLike[str]", None]) -> Settings:
        return await self._call(self._m.set_setting, key, value)

    async def host_stats(self) -> HostStats:
        return await self._call(self._m.host_stats)

    async def host_health(self) -> HostHealth:
        return await self._call(self._m.host_health)

    async def reconcile(self) -> ReconcileReport:
        return await self._call(self._m.reconcile)

    async def subscribe(self, after: Optional[int] = None) -> "AsyncEventStream":
        """A live stream of events, for ``async for`` (see
        :meth:`vman.Manager.subscribe`): an :class:`AsyncEventStream`."""
        return AsyncEventStream(await self._call(self._m.subscribe, after), self._executor)

    async def vm_history(self, vm: str, limit: int = DEFAULTS["history_limit"]) -> list[Event]:
        return await self._call(self._m.vm_history, vm, limit)

    async def recent_events(self, limit: int = DEFAULTS["history_limit"]) -> list[Event]:
        return await self._call(self._m.recent_events, limit)


class AsyncEventStream:
    """Live events for asyncio: ``async for event in stream``, or
    ``await stream.next(timeout)``. Made by :meth:`AsyncManager.subscribe`.

    While nothing happens, a waiting task holds no thread: the stream's
    descriptor is watched by the event loop. One task at a time reads a
    stream (open one per consumer); cancelling a waiting task loses no
    event. Iteration ends with :class:`vman.ClosedError` once the stream or
    its manager is closed, as the synchronous :class:`vman.EventStream`'s.
    """

    def __init__(self, stream: EventStream, executor: Optional[Executor] = None) -> None:
        self._stream = stream
        self._executor = executor
        self._held: list[Event] = []

    @property
    def stream(self) -> EventStream:
        """The :class:`vman.EventStream` underneath."""
        return self._stream

    async def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, waiting up to ``timeout`` seconds (forever if
        None, not at all if 0); None if none came. Raises
        :class:`vman.ClosedError` once the stream or its manager is closed."""
        deadline = _deadline(timeout)
        loop = asyncio.get_running_loop()
        while True:
            if self._held:
                return self._held.pop(0)
            # Reading takes the manager's database connection, which another
            # thread may hold: off the loop. An event read for a task that
            # was cancelled meanwhile is kept for the next call.
            future = loop.run_in_executor(self._executor, functools.partial(self._stream.next, 0))
            event = await _finish(future, None, lambda e: self._held.append(e) if e is not None else None)
            if event is not None:
                return event
            left = _left(deadline)
            if left == 0 or not await _readable(self._stream.fileno(), left):
                return None

    def close(self) -> None:
        """Ends the stream (see :meth:`vman.EventStream.close`)."""
        self._stream.close()

    def fileno(self) -> int:
        """The stream's descriptor (see :meth:`vman.EventStream.fileno`)."""
        return self._stream.fileno()

    def __aiter__(self) -> "AsyncEventStream":
        return self

    async def __anext__(self) -> Event:
        while True:
            event = await self.next()
            if event is not None:
                return event

    async def __aenter__(self) -> "AsyncEventStream":
        return self

    async def __aexit__(self, *args: object) -> None:
        self.close()


class AsyncConsole:
    """A VM's serial console for asyncio: made by
    :meth:`AsyncManager.console`; see :class:`vman.Console` for the rules
    (one console per VM, what a closed console answers).

    Waiting for output holds no thread: the console's descriptor is watched
    by the event loop. Cancelling a task waiting in :meth:`read` or
    :meth:`read_until` loses no byte: what was already read is returned by
    the next read.
    """

    def __init__(self, console: Console, executor: Optional[Executor] = None) -> None:
        self._console = console
        self._executor = executor
        self._held = b""

    @property
    def console(self) -> Console:
        """The :class:`vman.Console` underneath."""
        return self._console

    @property
    def vm(self) -> str:
        """The name of the VM."""
        return self._console.vm

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._console.closed

    def _keep(self, data: bytes) -> None:
        self._held += data

    async def read(self, size: int = 4096, timeout: Optional[float] = None) -> bytes:
        """Up to ``size`` bytes the guest printed, waiting up to ``timeout``
        seconds (None: no limit); ``b""`` once QEMU closed the console.
        Raises :class:`vman.TimeoutError` if nothing came."""
        deadline = _deadline(timeout)
        loop = asyncio.get_running_loop()
        while True:
            if self._held:
                data, self._held = self._held[:size], self._held[size:]
                return data
            try:
                future = loop.run_in_executor(self._executor, functools.partial(self._console.read, size, 0))
                return await _finish(future, None, self._keep)
            except _errors.TimeoutError:
                pass
            left = _left(deadline)
            if left == 0 or not await _readable(self._console.fileno(), left):
                raise _errors.TimeoutError(f"Timed out after {timeout} s waiting for output on the console of VM {self.vm!r}")

    async def read_until(self, pattern: str, timeout: Optional[float] = DEFAULTS["console_wait_timeout"]) -> bytes:
        """Reads until the output matches the regular expression ``pattern``
        and returns what was read, ending with the match (see
        :meth:`vman.Console.read_until`). Raises :class:`vman.TimeoutError`
        if no match came in ``timeout`` seconds, :class:`vman.ClosedError`
        if QEMU closed the console first."""
        deadline = _deadline(timeout)
        loop = asyncio.get_running_loop()
        # Bytes a cancelled call took go first; the console keeps the rest
        # of what its own read_until read.
        held, self._held = self._held, b""
        try:
            while True:
                try:
                    future = loop.run_in_executor(self._executor, functools.partial(self._console.read_until, pattern, 0))
                    found: bytes = await _finish(future, None, self._keep)
                    return held + found
                except _errors.TimeoutError:
                    pass
                left = _left(deadline)
                if left == 0 or not await _readable(self._console.fileno(), left):
                    raise _errors.TimeoutError(f"Timed out after {timeout} s waiting for {pattern!r} on the console of VM {self.vm!r}")
        except BaseException:
            self._held = held + self._held
            raise

    async def write(self, data: Union[bytes, bytearray, str], timeout: Optional[float] = None) -> int:
        """Sends ``data`` to the guest (see :meth:`vman.Console.write`), off
        the loop; returns the number of bytes sent."""
        loop = asyncio.get_running_loop()
        return await _finish(loop.run_in_executor(self._executor, functools.partial(self._console.write, data, timeout)), None)

    def close(self) -> None:
        """Disconnects, so another console can attach (see
        :meth:`vman.Console.close`)."""
        self._console.close()

    def fileno(self) -> int:
        """The console's descriptor (see :meth:`vman.Console.fileno`)."""
        return self._console.fileno()

    async def __aenter__(self) -> "AsyncConsole":
        return self

    async def __aexit__(self, *args: object) -> None:
        self.close()


def _document() -> None:
    """Gives each awaitable method of AsyncManager the documentation of the
    Manager method it awaits, so ``help()`` says what it does."""
    for name, method in vars(AsyncManager).items():
        sync = getattr(Manager, name, None)
        if name.startswith("_") or sync is None or not asyncio.iscoroutinefunction(method) or method.__doc__:
            continue
        doc = (sync.__doc__ or "").strip()
        method.__doc__ = f"Awaitable :meth:`vman.Manager.{name}` (run off the event loop).\n\n{doc}".rstrip()


_document()
