"""Read a NoCloud seed with cloud-init's own code and print what it understood.

    PYTHONPATH=$(tests/guest/cloud-init.sh)/python \
        /usr/bin/python3 tests/guest/cloud_init_check.py SEED_DIR

SEED_DIR holds the files copied out of a seed image (meta-data, user-data,
network-config). The script does what cloud-init's NoCloud data source does
with a mounted `cidata` filesystem, with the package's own functions:

- reads the directory with `util.pathprefix2dict` and `_merge_new_seed`
  (meta-data and network-config parsed with cloud-init's `util.load_yaml`);
- loads user-data as its cloud-config part handler does (`util.load_yaml`);
- parses network-config with `network_state.parse_net_config_data(...,
  skip_broken=False)`, which raises on what it cannot use, and renders it
  with the ENI renderer (Debian's ifupdown) into a scratch directory.

cloud-init 22.4.2 (Debian bookworm) has no schema for network-config: its
`cloud-init schema` validates cloud-config only. The parser and renderer
above are how that version reads a network-config, so they are the check.

Prints one JSON object on stdout; exits non-zero (with cloud-init's error on
stderr) if cloud-init cannot read the seed.
"""

import json
import sys
import tempfile
from pathlib import Path

from cloudinit import util
from cloudinit.net import eni, network_state
from cloudinit.sources import DataSourceNoCloud


def main() -> int:
    seed_dir = sys.argv[1]
    seeded = util.pathprefix2dict(
        seed_dir, required=["user-data", "meta-data"], optional=["vendor-data", "network-config"]
    )
    data = DataSourceNoCloud._merge_new_seed({"meta-data": {}}, seeded)
    user_data = util.load_yaml(seeded["user-data"])
    if not isinstance(user_data, dict):
        raise SystemExit(f"user-data is not a mapping to cloud-init: {user_data!r}")

    netcfg = data.get("network-config")
    if not isinstance(netcfg, dict):
        raise SystemExit(f"network-config is not a mapping to cloud-init: {netcfg!r}")
    state = network_state.parse_net_config_data(netcfg, skip_broken=False)
    interfaces = []
    for iface in state.iter_interfaces():
        interfaces.append(
            {
                "name": iface.get("name"),
                "mac_address": iface.get("mac_address"),
                "subnets": [
                    {
                        "address": s.get("address"),
                        "prefix": s.get("prefix"),
                        "routes": [
                            {"network": r.get("network"), "prefix": r.get("prefix"), "gateway": r.get("gateway")}
                            for r in s.get("routes", [])
                        ],
                        "dns_nameservers": s.get("dns_nameservers", []),
                    }
                    for s in iface.get("subnets", [])
                ],
            }
        )
    with tempfile.TemporaryDirectory() as target:
        eni.Renderer({}).render_network_state(state, target=target)
        rendered = (Path(target) / "etc/network/interfaces").read_text()

    json.dump(
        {
            "meta_data": data["meta-data"],
            "user_data": user_data,
            "network": {"version": state.version, "interfaces": interfaces, "dns": state.dns_nameservers, "eni": rendered},
        },
        sys.stdout,
        default=str,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
