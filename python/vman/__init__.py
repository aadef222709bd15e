"""vman: an embeddable virtual-machine manager.

>>> import vman, tempfile
>>> m = vman.Manager(tempfile.mkdtemp() + "/state")
>>> m.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
Template(name="small", vcpus=1, memory_mib=512, disk_gib=10)
"""

from ._errors import (
    AlreadyExistsError,
    DatabaseError,
    ExhaustedError,
    InternalError,
    InUseError,
    InvalidArgumentError,
    InvalidStateError,
    IoError,
    NotFoundError,
    PermissionDeniedError,
    QemuError,
    TimeoutError,
    UnsupportedError,
    VmanError,
)
from ._console import Console
from ._vman import (
    VM_STATES,
    Allocation,
    Drift,
    Event,
    EventStream,
    Manager,
    Network,
    Nic,
    NicSpec,
    ReconcileReport,
    Template,
    Vm,
    __version__,
    default_state_dir,
)

__all__ = [
    "__version__",
    "VM_STATES",
    "default_state_dir",
    "Manager",
    "NicSpec",
    "Template",
    "Network",
    "Nic",
    "Vm",
    "Allocation",
    "Event",
    "EventStream",
    "Console",
    "Drift",
    "ReconcileReport",
    "VmanError",
    "InvalidArgumentError",
    "NotFoundError",
    "AlreadyExistsError",
    "InUseError",
    "ExhaustedError",
    "InvalidStateError",
    "PermissionDeniedError",
    "UnsupportedError",
    "TimeoutError",
    "IoError",
    "DatabaseError",
    "QemuError",
    "InternalError",
]
