"""Templates, networks, allocation, VM records and history via `import vman`."""

import json
import logging
import multiprocessing
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import vman
from conftest import REPO, snapshot


def unchanged(manager, exc, fn, *args, **kwargs):
    """Asserts the call raises `exc` and leaves every table as it was."""
    before = snapshot(manager)
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert snapshot(manager) == before, f"{info.value!r} changed the store"
    return info.value


def test_version_is_the_same_in_python_rust_and_c():
    cargo = (REPO / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    header = (REPO / "include" / "vman.h").read_text()
    assert vman.__version__ == version
    assert f'#define VMAN_VERSION "{version}"' in header


def test_default_state_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VMAN_STATE_DIR", str(tmp_path / "here"))
    assert vman.default_state_dir() == tmp_path / "here"
    monkeypatch.delenv("VMAN_STATE_DIR")
    expected = "/var/lib/vman" if os.geteuid() == 0 else None
    if expected:
        assert str(vman.default_state_dir()) == expected


def test_state_directory_is_created_private(tmp_path):
    m = vman.Manager(tmp_path / "a" / "b")
    assert m.state_dir == tmp_path / "a" / "b"
    st = os.stat(m.state_dir)
    if os.geteuid() == 0:
        # QEMU's unprivileged user may pass through to its run directory,
        # through its group: no listing, no reading, nothing for others.
        import grp
        import pwd

        try:
            qemu = pwd.getpwnam("vman-qemu")
        except KeyError:
            qemu = pwd.getpwnam("nobody")
        assert stat.S_IMODE(st.st_mode) == 0o710
        assert st.st_gid == qemu.pw_gid, grp.getgrgid(st.st_gid)
    else:
        assert stat.S_IMODE(st.st_mode) == 0o700
    assert repr(m).startswith("Manager(")


def test_templates(base):
    t = base.template("small")
    assert (t.vcpus, t.memory_mib, t.disk_gib, t.description) == (1, 512, 10, "")
    assert repr(t) == 'Template(name="small", vcpus=1, memory_mib=512, disk_gib=10)'
    base.create_template("large", vcpus=8, memory_mib=16384, disk_gib=100, description="big")
    assert [t.name for t in base.templates()] == ["large", "small"]
    with pytest.raises(AttributeError):
        t.vcpus = 4  # records are frozen
    base.create_vm("web1", template="large")
    unchanged(base, vman.InUseError, base.delete_template, "large")
    base.delete_vm("web1")
    base.delete_template("large")
    unchanged(base, vman.NotFoundError, base.template, "large")


def test_networks(base):
    n = base.create_network(
        "svc", vlan=200, cidr="10.200.0.0/24", gateway="10.200.0.254",
        reserved=["10.200.0.1-10.200.0.9", "10.200.0.100"], dns=["1.1.1.1"],
    )
    assert (n.vlan, n.cidr, n.gateway, n.reserved, n.dns) == (
        200, "10.200.0.0/24", "10.200.0.254", ["10.200.0.1-10.200.0.9", "10.200.0.100"], ["1.1.1.1"])
    assert [x.name for x in base.networks()] == ["lan", "svc"]
    vm = base.create_vm("a", template="small", nics=["svc"])
    assert vm.nics[0].ip == "10.200.0.10"  # first address after the reservation
    unchanged(base, vman.InUseError, base.delete_network, "svc")
    base.delete_vm("a")
    base.delete_network("svc")
    unchanged(base, vman.NotFoundError, base.network, "svc")


def test_allocation_automatic_fixed_exhaustion_release(base):
    base.create_network("tiny", vlan=7, cidr="10.7.0.0/29", reserved=["10.7.0.6"])
    a = base.create_vm("a", template="small", nics=["tiny"])
    assert (a.nics[0].ip, a.nics[0].gateway, a.nics[0].prefix_len) == ("10.7.0.2", "10.7.0.1", 29)
    assert a.nics[0].mac.startswith("52:54:00:")
    b = base.create_vm("b", template="small", nics=[vman.NicSpec("tiny", ip="10.7.0.4", mac="52:54:00:aa:bb:cc")])
    assert (b.nics[0].ip, b.nics[0].mac) == ("10.7.0.4", "52:54:00:aa:bb:cc")
    unchanged(base, vman.AlreadyExistsError, base.create_vm, "c", template="small", nics=[vman.NicSpec("tiny", ip="10.7.0.4")])
    for ip, reason in [("10.7.0.1", "gateway"), ("10.7.0.6", "reserved"), ("10.7.0.7", "broadcast"), ("10.8.0.2", "not inside")]:
        err = unchanged(base, vman.InvalidArgumentError, base.create_vm, "c", template="small", nics=[vman.NicSpec("tiny", ip=ip)])
        assert reason in str(err)
    base.create_vm("c", template="small", nics=["tiny"])
    base.create_vm("d", template="small", nics=["tiny"])
    unchanged(base, vman.ExhaustedError, base.create_vm, "e", template="small", nics=["tiny"])
    assert [(x.ip, x.vm_name) for x in base.allocations("tiny")] == [
        ("10.7.0.2", "a"), ("10.7.0.3", "c"), ("10.7.0.4", "b"), ("10.7.0.5", "d")]
    base.delete_vm("b")
    e = base.create_vm("e", template="small", nics=[vman.NicSpec("tiny", mac="52:54:00:aa:bb:cc")])
    assert e.nics[0].ip == "10.7.0.4"  # the released address and MAC are reusable


def test_three_nics_where_the_third_is_exhausted_leave_nothing(base):
    base.create_network("second", vlan=200, cidr="10.200.0.0/24")
    base.create_network("full", vlan=300, cidr="10.30.0.0/30")
    base.create_vm("holder", template="small", nics=["full"])
    unchanged(base, vman.ExhaustedError, base.create_vm, "multi", template="small", nics=["lan", "second", "full"])
    assert base.allocations("lan") == [] and base.allocations("second") == []
    multi = base.create_vm("multi", template="small", nics=["lan", "second"])
    assert [(n.index, n.network, n.vlan) for n in multi.nics] == [(0, "lan", 100), (1, "second", 200)]
    assert repr(multi) == 'Vm(name="multi", state="created", template="small", ips=["10.100.0.2", "10.200.0.2"])'


def test_vm_listing_state_and_soft_delete(base):
    for name in ["web1", "web2", "db1"]:
        base.create_vm(name, template="small", nics=["lan"])
    assert [v.name for v in base.vms()] == ["db1", "web1", "web2"]
    assert [v.name for v in base.vms(name_prefix="web")] == ["web1", "web2"]
    assert len(base.vms(state="created")) == 3 and base.vms(state="running") == []
    assert vman.VM_STATES == ["created", "starting", "running", "paused", "stopping", "stopped", "error", "deleted"]
    unchanged(base, vman.InvalidArgumentError, base.vms, state="sleepy")
    old = base.vm("web1")
    assert old.state == "created"
    base.delete_vm("web1")
    unchanged(base, vman.NotFoundError, base.vm, "web1")
    unchanged(base, vman.NotFoundError, base.delete_vm, "web1")
    new = base.create_vm("web1", template="small")
    assert new.id != old.id
    assert [e.action for e in base.vm_history(old.id)] == ["created", "deleted"]


def test_history_records_every_mutation_with_the_actor(base):
    base.create_vm("web1", template="small", nics=["lan"])
    base.delete_vm("web1")
    events = base.recent_events()
    assert [(e.object_kind, e.object_name, e.action) for e in events] == [
        ("template", "small", "created"), ("network", "lan", "created"),
        ("vm", "web1", "created"), ("vm", "web1", "deleted")]
    assert all(e.pid == os.getpid() and e.os_user for e in events)
    assert events[-1].details == {"released": ["10.100.0.2"], "deleted_disks": []}
    assert json.loads(events[2].details_json)["nics"][0]["ip"] == "10.100.0.2"
    assert [e.id for e in base.recent_events(2)] == [events[2].id, events[3].id]
    # The name is free again; the deleted VM's history is reached by its id.
    unchanged(base, vman.NotFoundError, base.vm_history, "web1")
    assert [e.action for e in base.vm_history(events[2].object_id)] == ["created", "deleted"]
    unchanged(base, vman.InvalidArgumentError, base.recent_events, 0)


BAD_NAMES = ["", "x" * 64, "a/b", "..", "a..b", "a b", "a\0b", "a;b", "$(id)", "`id`", "a|b", "é"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected_without_change(base, name):
    unchanged(base, vman.InvalidArgumentError, base.create_template, name, vcpus=1, memory_mib=512, disk_gib=1)
    unchanged(base, vman.InvalidArgumentError, base.create_network, name, vlan=9, cidr="10.9.0.0/24")
    unchanged(base, vman.InvalidArgumentError, base.create_vm, name, template="small")


def test_bad_numbers_and_addresses_are_rejected_without_change(base):
    t = base.create_template
    for kwargs in [dict(vcpus=0), dict(vcpus=-1), dict(memory_mib=0), dict(memory_mib=-512),
                   dict(memory_mib=1 << 40), dict(disk_gib=0), dict(vcpus=2**70)]:
        args = dict(vcpus=1, memory_mib=512, disk_gib=1) | kwargs
        unchanged(base, vman.InvalidArgumentError, t, "t", **args)
    n = base.create_network
    for vlan, cidr in [(0, "10.9.0.0/24"), (4095, "10.9.0.0/24"), (-5, "10.9.0.0/24"), (9, "10.9.0.1/24"),
                       (9, "10.9.0.0/31"), (9, "10.9.0.0/32"), (9, "fd00::/64"), (9, "banana")]:
        unchanged(base, vman.InvalidArgumentError, n, "n9", vlan=vlan, cidr=cidr)
    unchanged(base, vman.InvalidArgumentError, n, "n9", vlan=9, cidr="10.9.0.0/24", gateway="10.8.0.1")
    unchanged(base, vman.AlreadyExistsError, n, "lan", vlan=9, cidr="10.9.0.0/24")
    unchanged(base, vman.AlreadyExistsError, n, "other", vlan=100, cidr="10.9.0.0/24")
    unchanged(base, vman.NotFoundError, base.create_vm, "v", template="nope")
    unchanged(base, vman.NotFoundError, base.create_vm, "v", template="small", nics=["lan", "nope"])
    unchanged(base, vman.InvalidArgumentError, base.create_vm, "v", template="small", nics=[vman.NicSpec("lan", mac="01:00:5e:00:00:01")])


def test_wrong_types_raise_type_error_without_change(base):
    unchanged(base, TypeError, base.create_template, "t", vcpus="1", memory_mib=512, disk_gib=1)
    unchanged(base, TypeError, base.create_template, "t", vcpus=1.5, memory_mib=512, disk_gib=1)
    unchanged(base, TypeError, base.create_network, "n", vlan=9, cidr=None)
    unchanged(base, TypeError, base.create_vm, "v", template="small", nics=[42])
    unchanged(base, TypeError, base.create_vm, 7, template="small")
    with pytest.raises(TypeError):
        vman.Manager(None)


def test_exception_tree():
    assert issubclass(vman.InvalidArgumentError, vman.VmanError) and issubclass(vman.InvalidArgumentError, ValueError)
    assert issubclass(vman.NotFoundError, LookupError)
    assert issubclass(vman.PermissionDeniedError, PermissionError)
    assert issubclass(vman.IoError, OSError)
    assert issubclass(vman.TimeoutError, TimeoutError)
    assert vman.ExhaustedError.kind == "exhausted"


def test_opening_a_file_as_state_dir_is_an_os_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(vman.IoError) as info:
        vman.Manager(f / "state")
    assert isinstance(info.value.__cause__, OSError)


def test_gil_is_released_while_waiting_for_the_database(base):
    """A thread blocked on the store's write lock must not freeze Python."""
    # The lock is held by another process: see conftest.snapshot for why not
    # by this one.
    hold = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.readline(); c.execute('COMMIT')"
    )
    blocker = subprocess.Popen(
        [sys.executable, "-c", hold, str(Path(base.state_dir) / "vman.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert blocker.stdout.readline().strip() == "locked"
    done = threading.Event()

    def writer():
        base.create_template("waits", vcpus=1, memory_mib=512, disk_gib=1)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    ticks, deadline = 0, time.monotonic() + 0.5
    while time.monotonic() < deadline:
        ticks += 1
        time.sleep(0.001)
    assert not done.is_set(), "the write should still be waiting for the lock"
    assert ticks > 100, f"main thread ran only {ticks} times while vman waited: GIL held"
    blocker.communicate("go\n", timeout=10)
    thread.join(timeout=10)
    assert done.is_set()


def _race(state_dir, ready, start, results):
    m = vman.Manager(state_dir)
    ready.put(os.getpid())
    start.wait()
    got = 0
    while True:
        try:
            m.create_vm(f"p{os.getpid()}-{got}", template="small", nics=["race"])
            got += 1
            time.sleep(0.001)  # some work between allocations, so both really race
        except vman.ExhaustedError:
            results.put(got)
            return


def test_two_processes_racing_never_share_an_address(base):
    base.create_network("race", vlan=6, cidr="10.6.0.0/24")  # 253 assignable
    ctx = multiprocessing.get_context("spawn")
    ready, start, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(base.state_dir, ready, start, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)  # both processes have the store open
    start.set()
    counts = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    ips = [a.ip for a in base.allocations("race")]
    assert sum(counts) == 253 and all(c > 0 for c in counts), counts
    assert len(ips) == len(set(ips)) == 253


def test_stubs_match_the_native_module():
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "vman._vman"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_uplink_without_kernel_8021q_is_unsupported(base):
    if os.path.exists("/proc/net/vlan"):
        pytest.skip("this kernel has 802.1Q; the refusal cannot be shown")
    err = unchanged(base, vman.UnsupportedError, base.create_network, "up", vlan=9, cidr="10.9.0.0/24", uplink="eth0")
    assert "802.1Q" in str(err)
    unchanged(base, vman.InvalidArgumentError, base.create_network, "up", vlan=9, cidr="10.9.0.0/24", uplink="x" * 16)


# ----- bad input accepted before issue 7 ------------------------------------

HUGE = [2**63, 2**64, -(2**63) - 1, 2**200, -(2**200)]


def _int_calls(m):
    """Every integer parameter of the API, as (name, call taking the value)."""
    return [
        ("busy_timeout_ms", lambda v: vman.Manager(Path(m.state_dir) / "never", busy_timeout_ms=v)),
        ("serial_log_cap_bytes", lambda v: vman.Manager(Path(m.state_dir) / "never", serial_log_cap_bytes=v)),
        ("vcpus", lambda v: m.create_template("t", vcpus=v, memory_mib=512, disk_gib=1)),
        ("memory_mib", lambda v: m.create_template("t", vcpus=1, memory_mib=v, disk_gib=1)),
        ("disk_gib", lambda v: m.create_template("t", vcpus=1, memory_mib=512, disk_gib=v)),
        ("vlan", lambda v: m.create_network("n9", vlan=v, cidr="10.9.0.0/24")),
        ("max_bytes", lambda v: m.console_tail("web1", max_bytes=v)),
        ("vm_history limit", lambda v: m.vm_history("web1", limit=v)),
        ("recent_events limit", lambda v: m.recent_events(limit=v)),
    ]


def test_integers_beyond_64_bits_are_invalid_arguments_on_every_parameter(base):
    base.create_vm("web1", template="small")
    # A tail of 2**63 bytes is a valid "all of it" (the field is 64 bits wide).
    assert base.console_tail("web1", max_bytes=2**63) == b""
    for name, call in _int_calls(base):
        for value in HUGE:
            if name == "max_bytes" and value == 2**63:
                continue
            before = snapshot(base)
            with pytest.raises(vman.InvalidArgumentError) as info:
                call(value)
            assert not isinstance(info.value, OverflowError), name
            assert snapshot(base) == before, f"{name}={value} changed the store"
        with pytest.raises(TypeError):
            call(1.5)  # not an integer at all: still a TypeError
    assert not (Path(base.state_dir) / "never").exists()
    assert len(base.console_tail("web1", max_bytes=True)) == 0  # bool is an int, as in Python
    assert len(base.recent_events()) == 3  # defaults still apply


def test_bad_open_options_are_refused_before_anything_is_created(tmp_path):
    state = tmp_path / "state"
    for kwargs in [dict(busy_timeout_ms=0), dict(busy_timeout_ms=-1), dict(busy_timeout_ms=3_600_001),
                   dict(serial_log_cap_bytes=0), dict(serial_log_cap_bytes=4095), dict(serial_log_cap_bytes=2**41),
                   dict(qemu_binary=""), dict(dnsmasq_binary=""), dict(accel="hvf"), dict(network="nat")]:
        with pytest.raises(vman.InvalidArgumentError):
            vman.Manager(state, **kwargs)
        assert not state.exists(), kwargs
    # None (the signature's default) means vman-core's default.
    m = vman.Manager(state, busy_timeout_ms=None, accel=None, serial_log_cap_bytes=None, network=None)
    assert m.state_dir == state
    # The limits themselves are accepted (a new directory: an existing one keeps its settings).
    vman.Manager(tmp_path / "limits", busy_timeout_ms=1, serial_log_cap_bytes=4096, qemu_binary="qemu-system-x86_64")


def test_a_state_directory_too_long_for_sockets_is_refused_at_open(tmp_path):
    long = tmp_path / ("d" * (120 - len(str(tmp_path))))
    with pytest.raises(vman.InvalidArgumentError) as info:
        vman.Manager(long)
    assert str(long) in str(info.value) and "at most" in str(info.value)
    assert not long.exists()


@pytest.mark.parametrize("cidr", ["127.0.0.0/8", "127.0.0.0/24", "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/24",
                                  "239.0.0.0/8", "240.0.0.0/8", "255.255.255.0/24", "96.0.0.0/3"])
def test_networks_in_unusable_blocks_are_refused(base, cidr):
    err = unchanged(base, vman.InvalidArgumentError, base.create_network, "n9", vlan=9, cidr=cidr)
    assert "overlaps" in str(err)


def test_leading_zeros_are_refused_wherever_an_address_is_given(base):
    n = base.create_network
    for kwargs in [dict(cidr="10.09.0.0/24"), dict(cidr="10.9.0.0/024"), dict(cidr="10.9.0.0/24", gateway="10.9.0.01"),
                   dict(cidr="10.9.0.0/24", reserved=["10.9.0.010"]), dict(cidr="10.9.0.0/24", dns=["8.8.08.8"])]:
        err = unchanged(base, vman.InvalidArgumentError, n, "n9", vlan=9, **kwargs)
        assert "leading zero" in str(err), kwargs
    err = unchanged(base, vman.InvalidArgumentError, base.create_vm, "v", template="small",
                    nics=[vman.NicSpec("lan", ip="10.100.0.050")])
    assert "octal" in str(err)


def test_a_subnet_overlapping_a_live_network_is_refused_naming_it(base):
    for cidr in ["10.100.0.0/24", "10.100.0.0/23", "10.100.0.64/26", "10.0.0.0/8"]:
        err = unchanged(base, vman.AlreadyExistsError, base.create_network, "other", vlan=9, cidr=cidr)
        assert '"lan"' in str(err) and "10.100.0.0/24" in str(err), cidr
    base.create_network("next", vlan=9, cidr="10.101.0.0/24")


def _create_overlapping(state_dir, vlan, cidr, start, results):
    m = vman.Manager(state_dir)
    start.wait()
    try:
        m.create_network(f"net{vlan}", vlan=vlan, cidr=cidr)
        results.put("won")
    except vman.AlreadyExistsError as e:
        results.put(f"lost: {e}")


def test_two_processes_creating_overlapping_networks_exactly_one_wins(base):
    ctx = multiprocessing.get_context("spawn")
    for round in range(3):
        start, results = ctx.Event(), ctx.Queue()
        cidrs = [f"10.{50 + round}.0.0/16", f"10.{50 + round}.3.0/24"]
        procs = [ctx.Process(target=_create_overlapping, args=(base.state_dir, 500 + 10 * round + i, cidr, start, results))
                 for i, cidr in enumerate(cidrs)]
        for p in procs:
            p.start()
        time.sleep(0.5)  # both are (nearly always) open and waiting
        start.set()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        assert outcomes[1] == "won" and outcomes[0].startswith("lost: ") and "overlaps" in outcomes[0], outcomes
    assert len(base.networks()) == 1 + 3


# ----- records compare by value ----------------------------------------------

def test_records_compare_and_hash_by_value(base):
    base.create_vm("web1", template="small", nics=["lan"])
    first, second = base.vm("web1"), base.vm("web1")
    assert first is not second
    assert first == second and hash(first) == hash(second)
    assert first.nics[0] == second.nics[0] and hash(first.nics[0]) == hash(second.nics[0])
    assert not (first != second)
    assert {first: "x"}[second] == "x" and len({first, second}) == 1

    base.create_vm("web2", template="small", nics=["lan"])
    other = base.vm("web2")
    assert other != first and len({first, other}) == 2
    base.delete_vm("web2")
    changed = base.vms()[0]
    assert changed == first  # web1 itself did not change

    assert base.template("small") == base.templates()[0]
    assert base.template("small") != base.create_template("big", vcpus=2, memory_mib=512, disk_gib=1)
    assert base.network("lan") == base.networks()[0] and hash(base.network("lan")) == hash(base.networks()[0])
    assert base.allocations("lan") == base.allocations("lan")
    assert set(base.allocations("lan")) == set(base.allocations("lan"))
    history = base.recent_events(100)
    assert history == base.recent_events(100) and len(set(history)) == len(history)
    assert history[-1] != history[-2]
    assert base.reconcile() == base.reconcile() and hash(base.reconcile()) == hash(base.reconcile())
    assert vman.NicSpec("lan", ip="10.100.0.9") == vman.NicSpec("lan", ip="10.100.0.9")
    assert len({vman.NicSpec("lan"), vman.NicSpec("lan"), vman.NicSpec("lan", mac="52:54:00:00:00:01")}) == 2
    assert (first == "web1") is False and first != 1  # other types are simply unequal
    with pytest.raises(TypeError):
        first < second  # noqa: B015 (no ordering)


def test_a_changed_vm_is_not_equal(tcg, guest):
    tcg.create_vm("v", template="tiny", **guest)
    before = tcg.vm("v")
    tcg.start("v")
    try:
        running = tcg.vm("v")
        assert running != before and running.state == "running"
        assert {before: 1, running: 2}[tcg.vm("v")] == 2
    finally:
        tcg.force_stop("v")
    assert tcg.vm("v") not in {before, running}


def test_live_and_history_events_are_equal(base):
    stream = base.subscribe()
    base.create_template("evt", vcpus=1, memory_mib=512, disk_gib=1)
    live = stream.next(timeout=10)
    assert live is not None
    stored = base.recent_events(1)[0]
    assert live == stored and hash(live) == hash(stored)
    assert json.loads(live.details_json) == stored.details


# ----- logging, not printing -------------------------------------------------

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _world_writable(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o777)
    return path


def test_core_warnings_reach_the_vman_logger(tmp_path):
    logger = logging.getLogger("vman")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        vman.Manager(tmp_path / "fresh")  # migrations log at INFO
        vman.Manager(_world_writable(tmp_path / "shared"))  # warns
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    names = {r.name for r in handler.records}
    assert names and all(n == "vman" or n.startswith("vman.") for n in names), names
    assert "vman.store" in names, names
    warnings = [r for r in handler.records if r.levelno == logging.WARNING]
    assert [r.name for r in warnings] == ["vman.manager"], [(r.name, r.getMessage()) for r in handler.records]
    assert "writable by other users" in warnings[0].getMessage()


_OPEN_SHARED = """
import logging, os, sys
if sys.argv[2] == "configured":
    logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
import vman
os.mkdir(sys.argv[1]); os.chmod(sys.argv[1], 0o777)
vman.Manager(sys.argv[1])
"""


def test_nothing_reaches_stderr_without_logging_configured(tmp_path):
    run = lambda d, mode: subprocess.run(  # noqa: E731
        [sys.executable, "-c", _OPEN_SHARED, str(tmp_path / d), mode], capture_output=True, text=True, timeout=60)
    # With logging configured, the warning is there (so the silence below means something) ...
    shown = run("a", "configured")
    assert shown.returncode == 0 and "vman.manager WARNING" in shown.stderr and "writable" in shown.stderr, shown.stderr
    # ... and with none, the library prints nothing at all.
    quiet = run("b", "unconfigured")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout == ""
