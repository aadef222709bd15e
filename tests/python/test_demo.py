"""scripts/demo, the README's main job, run as written on what the test
command built (VMAN_DEMO_BUILD=0) in a state directory of its own.

It runs in a network namespace of its own, so its bridges are not the
host's business, with IPv4 forwarding switched on there before it starts:
the ping across VLANs must then fail because vman keeps VLANs apart, not
because the host happens not to route. (Turned on *after* the bridges exist,
it rewrites their forwarding flags; vman-core/tests/network.rs proves the
VLANs stay apart then too.)
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import vman
from conftest import REPO, _skip_or_fail


@pytest.fixture
def netns() -> str:
    if os.geteuid() != 0:
        _skip_or_fail("the demo needs root (bridged networking)")
    if shutil.which("ip") is None or shutil.which("ping") is None:
        _skip_or_fail("ip (iproute2) and ping (iputils-ping) are needed")
    name = f"vman-demo-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.timeout(900)
def test_the_demo_boots_three_vms_and_shows_the_vlans_isolated(tmp_path: Path, boot_media: dict, netns: str) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "VMAN_STATE_DIR": str(state), "VMAN_DEMO_BUILD": "0"}
    script = "ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 && exec \"$0\""
    out = subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", script, str(REPO / "scripts" / "demo")],
                         env=env, capture_output=True, text=True, timeout=800)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log

    # Every step is shown as the vman command it runs.
    commands = re.findall(r"^\$ (vman .*)$", out.stdout, re.M)
    for expected in ["vman template create demo-small", "vman image register demo-disk",
                     "vman network create demo-front --vlan 3101", "vman network create demo-back --vlan 3102",
                     "vman vm create demo-web1", "vman vm create demo-web2", "vman vm create demo-db1",
                     "vman vm start demo-db1", "vman vm console demo-web1", "vman vm tail demo-web1",
                     "vman vm history demo-web1", "vman vm stop demo-db1", "vman vm delete demo-db1",
                     "vman network delete demo-back", "vman image delete demo-disk", "vman events"]:
        assert any(c.startswith(expected) for c in commands), f"the demo did not run {expected!r}\n{log}"

    # Each guest got by DHCP the address vman allocated, the same VLAN
    # answered, the other did not, and the host reached the other.
    leases = re.findall(r"^VMAN-DHCP eth0 (\S+)/24\r?$", out.stdout, re.M)
    assert len(set(leases)) == 3, log
    pings = re.findall(r"^PING-EXIT=(\d+)\r?$", out.stdout, re.M)
    assert pings[:2] == ["0", "1"], log
    assert re.search(r"^1 packets transmitted, 1 received", out.stdout, re.M), "the host reached db1\n" + log
    assert "net.ipv4.ip_forward = 1" in out.stdout, "forwarding was on in the namespace\n" + log
    for bridge in ["vmbr3101", "vmbr3102"]:
        assert re.search(rf"^1000:\s+from all iif {bridge} prohibit\r?$", out.stdout, re.M), "the isolation rule was shown\n" + log

    # Nothing left: records, bridges, processes.
    with vman.Manager(state) as m:
        assert (m.vms(), m.networks(), m.images(), m.templates(), m.disks()) == ([], [], [], [], [])
    links = subprocess.run(["ip", "netns", "exec", netns, "ip", "-br", "link"], capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in links.stdout.splitlines()] == ["lo"], links.stdout
    rules = subprocess.run(["ip", "netns", "exec", netns, "ip", "rule", "show"], capture_output=True, text=True, check=True)
    assert "iif vmbr" not in rules.stdout, rules.stdout
