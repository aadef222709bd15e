"""Settings of a state directory, and the host's stats and health, through
`import vman` with real QEMU."""

import sqlite3

import pytest

import vman
from conftest import READY


def test_settings_are_the_directorys_and_a_conflicting_opener_is_refused(tmp_path):
    state = tmp_path / "state"
    m = vman.Manager(state, accel="tcg", network="isolated", serial_log_cap_bytes=65536)
    s = m.settings()
    assert (s.network, s.accel, s.qemu_binary, s.dnsmasq_binary, s.qemu_user, s.serial_log_cap_bytes) == (
        "isolated", "tcg", "qemu-system-x86_64", "dnsmasq", None, 65536)
    assert list(s.as_dict()) == ["network", "accel", "qemu_binary", "dnsmasq_binary", "qemu_user", "serial_log_cap_bytes"]
    assert s == m.settings() and hash(s) == hash(m.settings())
    assert repr(s).startswith('Settings(network="isolated", accel="tcg"')
    # Asking nothing (or the same) takes the directory's; asking another is refused.
    assert vman.Manager(state).settings() == s
    vman.Manager(state, accel="tcg", network="auto")
    with pytest.raises(vman.SettingConflictError) as info:
        vman.Manager(state, accel="kvm")
    assert isinstance(info.value, vman.VmanError) and info.value.kind == "setting_conflict"
    assert '"tcg"' in str(info.value) and "vman settings set accel kvm" in str(info.value)
    assert m.recent_events() == [], "nothing was recorded"


def test_create_false_refuses_a_missing_directory(tmp_path):
    with pytest.raises(vman.NotFoundError) as info:
        vman.Manager(tmp_path / "mistyped", create=False)
    assert "mistyped" in str(info.value)
    assert not (tmp_path / "mistyped").exists()
    vman.Manager(tmp_path / "state")
    vman.Manager(tmp_path / "state", create=False)


def test_set_setting_checks_changes_and_records(tmp_path):
    m = vman.Manager(tmp_path / "state", accel="tcg", network="isolated")
    other = vman.Manager(tmp_path / "state")
    for key, value, error in [
        ("acceleration", "tcg", vman.InvalidArgumentError),
        ("accel", "hvf", vman.InvalidArgumentError),
        ("serial_log_cap_bytes", 12, vman.InvalidArgumentError),
        ("serial_log_cap_bytes", 2**80, vman.InvalidArgumentError),
        ("qemu_user", "no-such-user-here", vman.InvalidArgumentError),
        ("serial_log_cap_bytes", True, TypeError),
        ("accel", 1.5, TypeError),
    ]:
        with pytest.raises(error):
            m.set_setting(key, value)
    assert m.recent_events() == []
    s = m.set_setting("serial_log_cap_bytes", 131072)
    assert s.serial_log_cap_bytes == 131072 and other.settings() == s
    (event,) = m.recent_events()
    assert (event.object_kind, event.object_name, event.action) == ("setting", "serial_log_cap_bytes", "changed")
    assert event.details == {"from": "4194304", "to": "131072"}
    # Every value reads back as set_setting takes it; the same value records nothing.
    for key, value in s.as_dict().items():
        assert m.set_setting(key, value) == s
    assert len(m.recent_events()) == 1
    assert m.set_setting("qemu_user", "nobody").qemu_user == "nobody"
    assert m.set_setting("qemu_user", None).qemu_user is None


def test_a_directory_made_before_settings_gets_them_at_first_open(tmp_path):
    state = tmp_path / "state"
    vman.Manager(state, accel="tcg").close()
    with sqlite3.connect(state / "vman.db") as conn:
        conn.execute("DELETE FROM settings")
    assert vman.Manager(state, accel="kvm").settings().accel == "kvm"


def test_stats_and_health_of_a_running_guest(tcg, guest):
    tcg.create_vm("g1", template="tiny", nics=["lan"], **guest)
    tcg.create_vm("idle", template="tiny")
    pid = tcg.start("g1").pid
    tcg.wait_for_console("g1", READY, timeout=90)
    with pytest.raises(vman.InvalidStateError, match="g1"):
        tcg.set_setting("network", "user")

    stats = tcg.host_stats()
    assert stats.cpu_count >= 1 and stats.sample_ms >= 200
    assert 0.0 <= stats.cpu_busy_percent <= 100.0
    assert 0 < stats.memory_available_bytes <= stats.memory_total_bytes
    assert 0 < stats.disk_available_bytes <= stats.disk_total_bytes
    assert min(stats.load_1, stats.load_5, stats.load_15) >= 0.0
    g1, idle = stats.vms
    assert (g1.name, g1.state, g1.pid) == ("g1", "running", pid)
    assert g1.cpu_time_ms > 0 and g1.rss_bytes > 16 << 20 and g1.cpu_percent >= 0.0
    assert (idle.name, idle.state, idle.pid, idle.cpu_time_ms, idle.rss_bytes) == ("idle", "created", None, None, None)
    assert "HostStats(cpu_count=" in repr(stats) and "pid=" in repr(g1)

    health = tcg.host_health()
    assert health.ok, health
    assert [c.name for c in health.checks] == ["qemu", "qemu_img", "accel", "bridge", "dnsmasq", "ovmf", "state_dir"]
    assert health.check("qemu").detail.startswith("QEMU emulator version")
    assert health.check("accel").detail.startswith("tcg")
    assert all((c.fix is None) == c.ok for c in health.checks)
    with pytest.raises(KeyError):
        health.check("nonsense")

    tcg.force_stop("g1")
    tcg.set_setting("qemu_binary", "/nonexistent/qemu-system-x86_64")
    health = tcg.host_health()
    qemu = health.check("qemu")
    assert not health.ok and not qemu.ok and qemu.required
    assert "/nonexistent/qemu-system-x86_64" in qemu.detail and "qemu_binary" in qemu.fix
    assert repr(health) == "HostHealth(ok=False, failed=['qemu'])"
    with pytest.raises(vman.UnsupportedError):
        tcg.start("g1")
