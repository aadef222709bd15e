"""vman: an embeddable virtual-machine manager.

>>> import vman, tempfile
>>> m = vman.Manager(tempfile.mkdtemp() + "/state")
>>> m.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
Template(name="small", vcpus=1, memory_mib=512, disk_gib=10)
"""

import logging as _logging

from . import _errors
from ._errors import *  # noqa: F403 (the exception tree; names in _errors.__all__)
from ._vman import (
    DEFAULTS,
    DISK_STATES,
    VM_STATES,
    Allocation,
    Batch,
    Cancel,
    Console,
    Disk,
    Drift,
    Event,
    EventStream,
    HealthCheck,
    HostHealth,
    HostStats,
    Image,
    Manager,
    Network,
    Nic,
    NicSpec,
    PortForward,
    ReconcileReport,
    Settings,
    Snapshot,
    SshKey,
    Template,
    Vm,
    VmSshKey,
    VmStats,
    __version__,
    default_state_dir,
)

# A library logs and never prints: vman's records (logger "vman" and its
# children, e.g. "vman.reconcile") go where the application's logging config
# sends them, and nowhere when there is none (no "lastResort" to stderr).
_logging.getLogger("vman").addHandler(_logging.NullHandler())

__all__ = [
    "__version__",
    "VM_STATES",
    "DISK_STATES",
    "DEFAULTS",
    "default_state_dir",
    "Manager",
    "Cancel",
    "NicSpec",
    "Template",
    "Network",
    "Nic",
    "Vm",
    "Disk",
    "Image",
    "Snapshot",
    "Allocation",
    "Batch",
    "Event",
    "EventStream",
    "Console",
    "Drift",
    "PortForward",
    "ReconcileReport",
    "SshKey",
    "VmSshKey",
    "Settings",
    "HostStats",
    "VmStats",
    "HostHealth",
    "HealthCheck",
]
__all__ += _errors.__all__
