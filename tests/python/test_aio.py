"""vman.aio: awaitable calls that run off the event loop, async iteration
over events, and task cancellation that leaves VMs consistent."""

import asyncio
import inspect
from pathlib import Path

import pytest

import vman
import vman.aio
from conftest import READY, alive


def test_every_manager_method_has_an_awaitable_form_with_its_parameters():
    public = {n for n in dir(vman.Manager) if not n.startswith("_")}
    awaitable = {n for n in dir(vman.aio.AsyncManager) if not n.startswith("_")}
    assert public - awaitable == set(), "Manager methods AsyncManager lacks"
    for name in public - {"state_dir"}:
        method = getattr(vman.aio.AsyncManager, name)
        assert inspect.iscoroutinefunction(method), name
        sync = inspect.signature(getattr(vman.Manager, name))
        params = [p for p in sync.parameters.values() if p.name not in {"self", "cancel"}]
        theirs = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
        assert [(p.name, p.kind, p.default) for p in theirs] == [(p.name, p.kind, p.default) for p in params], name
        assert method.__doc__ and "Awaitable" in method.__doc__ or name in {"close", "console", "subscribe"}, name


def test_calls_are_awaited_and_errors_keep_their_classes(tmp_path: Path):
    async def main() -> None:
        async with await vman.aio.AsyncManager.open(tmp_path / "state") as am:
            assert am.state_dir == am.manager.state_dir
            t = await am.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
            assert await am.templates() == [t]
            with pytest.raises(vman.NotFoundError):
                await am.vm("nope")
            with pytest.raises(vman.InvalidArgumentError):
                await am.create_template("bad name!", vcpus=1, memory_mib=512, disk_gib=10)
        with pytest.raises(vman.ClosedError):
            await am.templates()

    asyncio.run(main())


def test_async_for_over_events_holds_no_thread_and_a_cancelled_wait_loses_nothing(tmp_path: Path):
    async def main() -> None:
        am = await vman.aio.AsyncManager.open(tmp_path / "state")
        stream = await am.subscribe()
        # A consumer cancelled while it waits: the stream goes on.
        waiter = asyncio.create_task(stream.next())
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await stream.next(timeout=0) is None

        async def produce() -> None:
            for name in ["a", "b", "c"]:
                await am.create_template(name, vcpus=1, memory_mib=256, disk_gib=1)

        producer = asyncio.create_task(produce())
        seen = []
        async for event in stream:
            seen.append((event.object_name, event.action))
            if len(seen) == 3:
                break
        await producer
        assert seen == [("a", "created"), ("b", "created"), ("c", "created")]
        assert await stream.next(timeout=0.05) is None
        await am.close()
        with pytest.raises(vman.ClosedError):
            await stream.next()

    asyncio.run(main())


def test_a_cancelled_task_cancels_the_wait_and_the_loop_runs_meanwhile(tcg, guest):
    """`await am.stop(vm, timeout=60)` of a guest that ignores ACPI,
    cancelled: CancelledError only after the stop returned, the VM running;
    meanwhile the loop ran other tasks and another call."""
    cmdline = guest["cmdline"] + " vman.acpi=ignore"
    tcg.create_vm("stubborn", template="tiny", **{**guest, "cmdline": cmdline})

    async def main() -> None:
        am = vman.aio.AsyncManager(tcg)
        pid = (await am.start("stubborn")).pid
        assert pid is not None
        assert await am.wait_for_console("stubborn", READY, timeout=90) == "VMAN-GUEST-READY"

        async with await am.console("stubborn") as console:
            await console.write("echo sum-$((40+2))\n")
            assert b"sum-42" in await console.read_until(r"sum-42", timeout=20)
            # A read cancelled while it waits loses nothing.
            with pytest.raises(vman.TimeoutError):
                while True:  # what the shell printed after the match
                    await console.read(timeout=1)
            reader = asyncio.create_task(console.read(timeout=None))
            await asyncio.sleep(0.2)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            await console.write("echo again-$((6*7))\n")
            assert b"again-42" in await console.read_until(r"again-42", timeout=20)

        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        stop = asyncio.create_task(am.stop("stubborn", timeout=60))
        while (await am.vm("stubborn")).state != "stopping":
            await asyncio.sleep(0.05)
        # Two awaits at once: this call returns while the stop still waits.
        before = ticks
        assert [t.name for t in await am.templates()] == ["tiny"]
        await asyncio.sleep(0.3)
        assert not stop.done() and ticks > before, "the loop ran while the stop waited"
        stop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stop
        ticker.cancel()

        vm = await am.vm("stubborn")
        assert (vm.state, vm.pid) == ("running", pid) and alive(pid)
        history = await am.vm_history("stubborn")
        assert [e.details["operation"] for e in history if e.action == "cancelled"] == ["stop"]
        assert "forced" not in [e.action for e in history]
        assert (await am.reconcile()).drifts == []

        # A task cancelled again while the stop winds down still waits for it.
        stop = asyncio.create_task(am.stop("stubborn", timeout=60))
        while (await am.vm("stubborn")).state != "stopping":
            await asyncio.sleep(0.05)
        stop.cancel()
        await asyncio.sleep(0)
        stop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stop
        assert (await am.vm("stubborn")).state == "running"

        assert (await am.force_stop("stubborn")).state == "stopped"
        assert not alive(pid)

    asyncio.run(main())


def test_a_timeout_around_an_awaited_wait_is_a_cancel(tcg, guest):
    tcg.create_vm("g", template="tiny", **guest)

    async def main() -> None:
        am = vman.aio.AsyncManager(tcg)
        await am.start("g")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(am.wait_for_console("g", "^NEVER-PRINTED$", timeout=600), 0.5)
        assert (await am.vm("g")).state == "running"
        await am.force_stop("g")

    asyncio.run(main())
