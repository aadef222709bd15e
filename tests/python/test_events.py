"""Live events from every writer through `import vman`: another process,
another manager, resume after an id, ClosedError, Manager.close()."""

import concurrent.futures
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import vman

WRITER = textwrap.dedent("""
    import sys, vman
    m = vman.Manager(sys.argv[1])
    for i in range(10):
        m.create_template(f"p{i}", vcpus=1, memory_mib=256, disk_gib=1)
    m.create_network("plan", vlan=300, cidr="10.30.0.0/24")
    m.create_vm("pvm", template="p0", nics=["plan"])
    m.delete_vm("pvm")
    m.delete_network("plan")
    m.create_template("p-last", vcpus=1, memory_mib=256, disk_gib=1)
""")


def key(e: vman.Event) -> tuple:
    return (e.id, e.object_kind, e.object_name, e.action, e.pid)


def test_events_of_another_process_and_manager_arrive_once_in_order(manager):
    manager.create_template("before", vcpus=1, memory_mib=256, disk_gib=1)
    before = manager.recent_events(1)[0].id
    with manager.subscribe() as stream:
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(manager.state_dir)])
        other = vman.Manager(manager.state_dir)  # a second manager in this process
        for i in range(5):
            other.create_template(f"local{i}", vcpus=1, memory_mib=256, disk_gib=1)
        got = []
        for event in stream:
            got.append(event)
            names = {e.object_name for e in got}
            if {"p-last", "local4"} <= names:
                break
        assert child.wait(timeout=60) == 0
        assert stream.next(timeout=0.2) is None, "nothing more"
    history = [e for e in manager.recent_events(1000) if e.id > before]
    assert [key(e) for e in got] == [key(e) for e in history]
    assert {e.pid for e in got} == {os.getpid(), child.pid}
    assert [e.action for e in got if e.object_name == "pvm"] == ["created", "deleted"]


def test_a_consumer_resumes_after_an_id_with_exactly_what_it_missed(manager):
    for i in range(5):
        manager.create_template(f"t{i}", vcpus=1, memory_mib=256, disk_gib=1)
    events = manager.recent_events(5)
    with manager.subscribe(after=events[1].id) as stream:
        replay = [stream.next(timeout=0) for _ in range(3)]
        assert [key(e) for e in replay] == [key(e) for e in events[2:]]
        assert stream.next(timeout=0) is None
        manager.delete_template("t0")
        live = stream.next(timeout=30)
        assert (live.id, live.object_name, live.action) == (events[-1].id + 1, "t0", "deleted")
    with manager.subscribe(after=0) as everything:
        assert everything.next(timeout=0).id == 1
    for bad in (-1, events[-1].id + 100):
        with pytest.raises(vman.InvalidArgumentError):
            manager.subscribe(after=bad)
    with manager.subscribe() as fresh:
        assert fresh.next(timeout=0) is None, "the past is not replayed"


def test_a_closed_stream_raises_closed_error_even_in_a_waiting_thread(manager):
    stream = manager.subscribe()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(stream.next, 60)
        time.sleep(0.1)
        stream.close()
        with pytest.raises(vman.ClosedError):
            waiting.result(timeout=30)
    stream.close()  # idempotent
    manager.create_template("t", vcpus=1, memory_mib=256, disk_gib=1)
    with pytest.raises(vman.ClosedError):
        stream.next(timeout=0)
    with pytest.raises(vman.ClosedError):
        next(iter(stream))
    with manager.subscribe() as scoped:
        pass
    with pytest.raises(vman.ClosedError):
        scoped.next(timeout=0)
    assert issubclass(vman.ClosedError, vman.VmanError)


def test_manager_close_closes_every_method_and_stream(tmp_path):
    m = vman.Manager(tmp_path / "state")
    m.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
    unread = m.subscribe(after=0)
    blocked = m.subscribe()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(blocked.next, 60)
        time.sleep(0.1)
        m.close()
        with pytest.raises(vman.ClosedError):
            waiting.result(timeout=30)
    m.close()  # idempotent
    calls = [
        m.templates,
        lambda: m.create_template("x", vcpus=1, memory_mib=1, disk_gib=1),
        lambda: m.vm("x"),
        m.subscribe,
        m.recent_events,
        m.reconcile,
        m.__enter__,
    ]
    for call in calls:
        with pytest.raises(vman.ClosedError):
            call()
    with pytest.raises(vman.ClosedError):
        unread.next(timeout=0)  # closed, even with history unread
    assert m.state_dir == tmp_path / "state"
    assert repr(m).endswith(", closed)")

    with vman.Manager(tmp_path / "state") as reopened:
        assert [t.name for t in reopened.templates()] == ["small"]
        stream = reopened.subscribe()
    with pytest.raises(vman.ClosedError):
        reopened.templates()
    with pytest.raises(vman.ClosedError):
        stream.next(timeout=0)


def test_fileno_wakes_select_and_drains_with_next_zero(manager):
    with manager.subscribe() as stream:
        assert select.select([stream], [], [], 0)[0] == []
        other = vman.Manager(manager.state_dir)
        other.create_template("t", vcpus=1, memory_mib=256, disk_gib=1)
        assert select.select([stream], [], [], 10)[0] == [stream]
        assert stream.next(timeout=0).object_name == "t"
        assert stream.next(timeout=0) is None
        assert select.select([stream], [], [], 0)[0] == [], "quiet once drained"
        other.close()


def test_iterating_a_stream_blocks_but_answers_ctrl_c(manager):
    stream = manager.subscribe()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in stream:
                pass
    finally:
        timer.cancel()
