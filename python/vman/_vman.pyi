# Stubs for the native module; checked against it by mypy.stubtest in the
# test suite, so they cannot drift.
import os
import pathlib
from typing import Any, Iterator, Literal, Optional, Sequence, TypedDict, Union, final

__all__ = ["default_state_dir", "Cancel", "Console", "EventStream", "Manager", "NicSpec", "Allocation", "Batch", "Disk", "Drift", "PortForward", "Event", "Image", "Network", "Nic", "ReconcileReport", "Snapshot", "SshKey", "Template", "Vm", "VmSshKey", "Settings", "HostStats", "VmStats", "HostHealth", "HealthCheck", "__version__", "VM_STATES", "DISK_STATES", "DEFAULTS", "_error_classes"]

__version__: str
VM_STATES: list[str]
DISK_STATES: list[str]

class _Defaults(TypedDict):
    stop_timeout: float
    console_tail_bytes: int
    console_wait_timeout: float
    history_limit: int
    detach_timeout: float
    batch_first: int
    disk_format: str
    firmware: str
    display: str
    image_arch: str

# vman-core's defaults (vman_core::defaults), which the signatures below show.
DEFAULTS: _Defaults

def _error_classes() -> list[tuple[str, str]]: ...

def default_state_dir() -> pathlib.Path:
    """The default state directory: ``$VMAN_STATE_DIR``, else
    ``/var/lib/vman`` for root, else ``$XDG_STATE_HOME/vman`` or
    ``~/.local/state/vman``.
    """

_VmState = Literal["created", "starting", "running", "paused", "stopping", "stopped", "error", "deleted"]
_DiskState = Literal["creating", "available", "attaching", "attached", "detaching", "deleting", "error"]
_DiskFormat = Literal["qcow2", "raw"]
_Firmware = Literal["bios", "uefi"]
_Display = Literal["none", "vnc-unix", "vnc-tcp"]
_SnapshotState = Literal["creating", "ready", "reverting", "deleting", "error"]
_BatchState = Literal["creating", "created", "rolling_back", "deleting", "deleted"]
_Path = Union[str, os.PathLike[str]]

@final
class Template:
    """A size template."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """The store's id, never reused after a delete."""
    @property
    def name(self) -> str:
        """The template's name, unique in the state directory."""
    @property
    def vcpus(self) -> int:
        """Virtual CPUs of each VM made from it, 1 to 255."""
    @property
    def memory_mib(self) -> int:
        """Guest memory in MiB, 16 to 4 Mi (4 TiB)."""
    @property
    def disk_gib(self) -> int:
        """Root disk size in GiB (a VM's boot disk from an image, or its blank disk), 1 to 64 Ki."""
    @property
    def description(self) -> str:
        """Free text for people; may be empty."""
    @property
    def created_at_ms(self) -> int:
        """When it was created, in Unix milliseconds."""

@final
class Network:
    """A VLAN network."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """The store's id, never reused after a delete."""
    @property
    def name(self) -> str:
        """The network's name, unique in the state directory."""
    @property
    def vlan(self) -> int:
        """Its 802.1Q VLAN id, 1 to 4094, unique in the state directory."""
    @property
    def cidr(self) -> str:
        """Its subnet, e.g. ``"10.100.0.0/24"`` (/8 to /30), overlapping no other network's."""
    @property
    def gateway(self) -> str:
        """Its gateway address: a host of ``cidr`` never handed to a VM."""
    @property
    def reserved(self) -> list[str]:
        """Address ranges never handed out (``"10.0.0.10-10.0.0.19"`` or single addresses), sorted and
        merged.
        """
    @property
    def dns(self) -> list[str]:
        """DNS servers the DHCP server of a bridged network offers guests, in the order given."""
    @property
    def uplink(self) -> Optional[str]:
        """The host interface whose ``<uplink>.<vlan>`` joins the bridge, or None."""
    @property
    def created_at_ms(self) -> int:
        """When it was created, in Unix milliseconds."""

@final
class Nic:
    """A NIC of a VM, with its allocated address."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def index(self) -> int:
        """Position on the VM, from 0; the guest sees NICs in this order."""
    @property
    def network(self) -> str:
        """The name of its network."""
    @property
    def vlan(self) -> int:
        """The network's VLAN id."""
    @property
    def ip(self) -> str:
        """Its address, held on the network until the VM is deleted."""
    @property
    def prefix_len(self) -> int:
        """The network's prefix length (8 to 30): the guest's netmask."""
    @property
    def gateway(self) -> str:
        """The network's gateway: the guest's default route."""
    @property
    def mac(self) -> str:
        """Its MAC address (``52:54:00:..``), unique in the state directory."""
    @property
    def host_interface(self) -> Optional[str]:
        """The host tap of this NIC while the VM runs bridged, else None."""

@final
class PortForward:
    """A host port that reaches a guest port (user-mode networking)."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def nic_index(self) -> int:
        """The index of the NIC whose user-mode network carries the forward."""
    @property
    def guest_port(self) -> int:
        """The TCP port in the guest (22: SSH)."""
    @property
    def host_address(self) -> str:
        """Always ``"127.0.0.1"``: forwards are reachable from this host only."""
    @property
    def host_port(self) -> int:
        """The TCP port on ``host_address``, chosen from the free ones at each start."""

_SshKeyType = Literal["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]

@final
class SshKey:
    """An SSH public key of the catalogue."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """The store's id, never reused after a delete."""
    @property
    def name(self) -> str:
        """The key's name, unique in the catalogue."""
    @property
    def key_type(self) -> _SshKeyType:
        """Its type: ``"ssh-ed25519"``, ``"ecdsa-sha2-nistp256"`` (-384, -521) or ``"ssh-rsa"``."""
    @property
    def bits(self) -> int:
        """Its size as ``ssh-keygen -l`` prints it (256 for ed25519, the curve's size for ECDSA, the
        modulus's bits for RSA).
        """
    @property
    def public_key(self) -> str:
        """The normalized key line (``type base64 [comment]``): the line to put in ``authorized_keys``."""
    @property
    def comment(self) -> str:
        """The comment of the imported line (``""`` when it had none)."""
    @property
    def fingerprint_sha256(self) -> str:
        """``SHA256:`` and the unpadded base64 SHA-256 of the key, as ``ssh-keygen -l -E sha256`` prints
        it.
        """
    @property
    def fingerprint_md5(self) -> str:
        """``MD5:`` and the MD5 of the key as colon-separated hex, as ``ssh-keygen -l -E md5`` prints it."""
    @property
    def created_at_ms(self) -> int:
        """When it was imported, in Unix milliseconds."""

@final
class VmSshKey:
    """A VM's own copy of an SSH key it was given (it outlives the key's
    deletion from the catalogue).
    """
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def name(self) -> str:
        """The key's name in the catalogue when the VM was given it."""
    @property
    def public_key(self) -> str:
        """The key line, as the guest gets it."""
    @property
    def fingerprint_sha256(self) -> str:
        """``SHA256:`` and the unpadded base64 SHA-256 of the key."""

@final
class Vm:
    """A VM record."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> str:
        """A UUIDv7: unique forever, sorts by creation time. Names a deleted VM's history."""
    @property
    def name(self) -> str:
        """The VM's name, unique among live VMs; freed when it is deleted."""
    @property
    def template(self) -> str:
        """The template it was made from (its sizes were copied into the VM)."""
    @property
    def vcpus(self) -> int:
        """Virtual CPUs, copied from the template."""
    @property
    def memory_mib(self) -> int:
        """Guest memory in MiB, copied from the template."""
    @property
    def disk_gib(self) -> int:
        """Root disk size in GiB, copied from the template."""
    @property
    def state(self) -> _VmState:
        """Where the VM is in its lifecycle: one of :data:`vman.VM_STATES` (``"created"``, ``"running"``…)."""
    @property
    def nics(self) -> list[Nic]:
        """Its NICs (:class:`vman.Nic`), in slot order."""
    @property
    def kernel(self) -> Optional[str]:
        """The kernel QEMU boots directly, or None (the firmware boots a disk or CD)."""
    @property
    def initrd(self) -> Optional[str]:
        """The initrd given with ``kernel``, or None."""
    @property
    def cmdline(self) -> Optional[str]:
        """The kernel command line given with ``kernel``, or None."""
    @property
    def pid(self) -> Optional[int]:
        """The QEMU process id while the VM has one, else None."""
    @property
    def accel(self) -> Optional[Literal["kvm", "tcg"]]:
        """The accelerator QEMU runs (or last ran) with: ``"kvm"`` or ``"tcg"``; None before the first
        start.
        """
    @property
    def last_error(self) -> Optional[str]:
        """Why the last start failed or QEMU died, or None."""
    @property
    def port_forwards(self) -> list[PortForward]:
        """Host ports forwarded to the guest (user-mode networking) while it runs:
        :class:`vman.PortForward`.
        """
    @property
    def firmware(self) -> _Firmware:
        """``"bios"`` (SeaBIOS) or ``"uefi"`` (OVMF)."""
    @property
    def cdrom(self) -> Optional[str]:
        """The ISO in its CD-ROM drive, or None."""
    @property
    def boot_from_cdrom(self) -> bool:
        """Whether it boots from the CD-ROM before its disk."""
    @property
    def display(self) -> _Display:
        """Its graphical console: ``"none"``, ``"vnc-unix"`` or ``"vnc-tcp"``."""
    @property
    def display_address(self) -> Optional[str]:
        """Where its VNC server listens while it runs (``"unix:<path>"`` or ``"127.0.0.1:<port>"``), else
        None.
        """
    @property
    def cloud_init(self) -> bool:
        """Whether it gets a cloud-init NoCloud seed at each start."""
    @property
    def user_data(self) -> Optional[str]:
        """The caller's own cloud-init user-data merged into the seed, or None."""
    @property
    def ssh_keys(self) -> list[VmSshKey]:
        """Its own copies of the SSH keys it was given (:class:`vman.VmSshKey`), in the order given."""
    @property
    def created_at_ms(self) -> int:
        """When it was created, in Unix milliseconds."""
    @property
    def updated_at_ms(self) -> int:
        """When its state last changed (at first, when it was created), in Unix milliseconds."""

@final
class Disk:
    """A disk: a file under the state directory (or a caller's, used in
    place) that VMs attach.
    """
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """The store's id, never reused."""
    @property
    def name(self) -> str:
        """Its name, unique among disks."""
    @property
    def format(self) -> _DiskFormat:
        """``"qcow2"`` or ``"raw"``."""
    @property
    def size_bytes(self) -> int:
        """The size the guest sees, in bytes."""
    @property
    def path(self) -> str:
        """The file's absolute path."""
    @property
    def owned(self) -> bool:
        """Whether vman owns the file (made or copied in; removed with the disk) or uses a caller's file in
        place (never removed).
        """
    @property
    def image(self) -> Optional[str]:
        """For a linked clone, the name of the base image under it, else None."""
    @property
    def state(self) -> _DiskState:
        """Where it is in its life: one of :data:`vman.DISK_STATES` (``"available"``, ``"attached"``…)."""
    @property
    def vm(self) -> Optional[str]:
        """The name of the VM it is attached to, or None."""
    @property
    def slot(self) -> Optional[int]:
        """Its position on that VM, from 0 (the guest's device order follows it), or None."""
    @property
    def delete_with_vm(self) -> bool:
        """Made with its VM (a boot disk): deleted when the VM is."""
    @property
    def last_error(self) -> Optional[str]:
        """Why the last operation on it failed, or None."""
    @property
    def created_at_ms(self) -> int:
        """When it was created, in Unix milliseconds."""

@final
class Image:
    """A base image of the catalogue. Its file is never written: VMs boot from
    linked clones of it.
    """
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """The store's id, never reused."""
    @property
    def name(self) -> str:
        """Its name, unique among images."""
    @property
    def os(self) -> str:
        """The guest OS, free text (``"debian-12"``)."""
    @property
    def arch(self) -> str:
        """The guest architecture (``"x86_64"``)."""
    @property
    def description(self) -> str:
        """Free text for people."""
    @property
    def format(self) -> _DiskFormat:
        """``"qcow2"`` or ``"raw"``."""
    @property
    def virtual_size(self) -> int:
        """The size the guest sees, in bytes."""
    @property
    def sha256(self) -> str:
        """SHA-256 of the file as registered, lower-case hex."""
    @property
    def firmware(self) -> _Firmware:
        """The firmware its VMs need: ``"bios"`` or ``"uefi"``."""
    @property
    def path(self) -> str:
        """The file's absolute path."""
    @property
    def owned(self) -> bool:
        """Copied in (removed with the image) or used in place (never removed)."""
    @property
    def created_at_ms(self) -> int:
        """When it was registered, in Unix milliseconds."""

@final
class Snapshot:
    """A snapshot of a VM's disks (and, taken live, of its memory)."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """The store's id, never reused."""
    @property
    def vm(self) -> str:
        """The VM's name."""
    @property
    def name(self) -> str:
        """The snapshot's name, unique per VM."""
    @property
    def live(self) -> bool:
        """Taken while the VM ran: it holds the guest's memory too, and a revert of a running VM resumes it
        there.
        """
    @property
    def state(self) -> _SnapshotState:
        """``"ready"``, or an intent a crash left: ``"creating"``, ``"reverting"``, ``"deleting"``,
        ``"error"``.
        """
    @property
    def created_at_ms(self) -> int:
        """When it was taken, in Unix milliseconds."""

@final
class Batch:
    """A batch of VMs made in one call from one spec and a naming pattern;
    ``vms`` are its live VMs' names, in the order they were made.
    """
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """The batch's number, never reused."""
    @property
    def name(self) -> str:
        """The batch's name (by default the pattern without its placeholder: ``"worker"``)."""
    @property
    def pattern(self) -> str:
        """The naming pattern its VMs were named by, e.g. ``"worker{:02}"``."""
    @property
    def count(self) -> int:
        """How many VMs it was made with."""
    @property
    def state(self) -> _BatchState:
        """``"creating"``, ``"created"``, ``"rolling_back"``, ``"deleting"`` or ``"deleted"``."""
    @property
    def vms(self) -> list[str]:
        """Its live VMs' names, in the order they were made."""
    @property
    def created_at_ms(self) -> int:
        """When it was made, in Unix milliseconds."""

@final
class Allocation:
    """Who holds one address of a network."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def network(self) -> str:
        """The network's name."""
    @property
    def ip(self) -> str:
        """The address held."""
    @property
    def mac(self) -> str:
        """The MAC of the NIC that holds it."""
    @property
    def vm_id(self) -> str:
        """The holding VM's id (:attr:`vman.Vm.id`)."""
    @property
    def vm_name(self) -> str:
        """The holding VM's name."""
    @property
    def nic_index(self) -> int:
        """The holding NIC's index on its VM."""

@final
class Event:
    """One entry of the event history."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def id(self) -> int:
        """Increases with every event in a state directory: commit order. Resume a subscription after it."""
    @property
    def at_ms(self) -> int:
        """When it happened, in Unix milliseconds."""
    @property
    def object_kind(self) -> Literal["template", "network", "vm", "disk", "image", "ssh_key", "setting", "batch"]:
        """What it is about: ``"template"``, ``"network"``, ``"vm"``, ``"disk"``, ``"image"``,
        ``"ssh_key"``, ``"setting"`` or ``"batch"``.
        """
    @property
    def object_id(self) -> str:
        """The object's id: a VM's UUID, the others' numeric id as text."""
    @property
    def object_name(self) -> str:
        """The object's name when the event was written (a deleted VM's name may since belong to another
        VM).
        """
    @property
    def action(self) -> str:
        """What happened: ``"created"``, ``"deleted"``, ``"state_changed"``, ``"forced"``, ``"cancelled"``…"""
    @property
    def details_json(self) -> str:
        """Action-specific details as a JSON object string: canonical (keys
        sorted, no spaces), so equal details compare and hash equal.
        """
    @property
    def details(self) -> dict[str, Any]:
        """The details parsed into a dict."""
    @property
    def os_user(self) -> str:
        """The OS user that made the change."""
    @property
    def pid(self) -> int:
        """The id of the process that made the change."""

@final
class Drift:
    """One difference between the store and reality, and what was done."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def vm(self) -> str:
        """The VM (or other object) concerned, by name."""
    @property
    def found(self) -> str:
        """What the reconciler found, in words."""
    @property
    def action(self) -> str:
        """What it did about it, in words."""

@final
class ReconcileReport:
    """What `Manager.reconcile()` found and did."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def drifts(self) -> list[Drift]:
        """Every difference found between the store and reality, with what was done (:class:`vman.Drift`);
        empty when all agreed.
        """
    @property
    def adopted(self) -> list[str]:
        """The VMs whose running QEMU this manager took over (proved and now watches)."""

@final
class Cancel:
    """A cancellation token for vman's waiting calls.

    Pass it as ``cancel=`` to a method that waits (``start``, ``stop``,
    ``restart``, ``detach_disk``, the snapshot methods,
    ``wait_for_console``, ``EventStream.next``) and call :meth:`cancel`
    from another thread (a progress display, a request handler) to end the
    wait: the method then raises :class:`vman.CancelledError`, leaving the
    VM as the method's documentation says (a cancelled graceful stop
    leaves it running, for instance). A token already cancelled makes those
    methods raise at once, changing nothing. A cancelled token stays
    cancelled: make a new one for the next operation.

    Ctrl-C needs no token: on the main thread every waiting method is
    interrupted by it the same way and raises :class:`KeyboardInterrupt`.

    >>> import threading, vman
    >>> cancel = vman.Cancel()
    >>> threading.Timer(0.1, cancel.cancel).start()
    >>> # m.stop("web1", timeout=600, cancel=cancel) raises CancelledError
    """
    def __new__(cls) -> Cancel: ...
    def cancel(self) -> None:
        """Cancels every wait given this token, now and from now on. Safe to
        call from any thread, any number of times.
        """
    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""


class _SettingsDict(TypedDict):
    network: Literal["bridged", "user", "isolated"]
    accel: Literal["auto", "kvm", "tcg"]
    qemu_binary: str
    dnsmasq_binary: str
    qemu_user: Optional[str]
    serial_log_cap_bytes: int

@final
class Settings:
    """The settings of a state directory, as read: kept in the directory and
    used by every process that opens it. Change one with
    :meth:`Manager.set_setting`.
    """
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def network(self) -> Literal["bridged", "user", "isolated"]:
        """How NICs reach their networks: ``"bridged"``, ``"user"`` or ``"isolated"``."""
    @property
    def accel(self) -> Literal["auto", "kvm", "tcg"]:
        """``"auto"`` (KVM if a probe proves it runs guests, else TCG), ``"kvm"`` or ``"tcg"``."""
    @property
    def qemu_binary(self) -> str:
        """The QEMU binary: a path, or a name looked up in ``PATH``."""
    @property
    def dnsmasq_binary(self) -> str:
        """The DHCP server of bridged networks: a path, or a name looked up in ``PATH``."""
    @property
    def qemu_user(self) -> Optional[str]:
        """The user QEMU runs as when vman is root; None for the default
        (``vman-qemu`` if that user exists, else ``nobody``).
        """
    @property
    def serial_log_cap_bytes(self) -> int:
        """The size in bytes at which each VM's serial log is rotated."""
    def as_dict(self) -> _SettingsDict:
        """Every setting by key (the keys :meth:`Manager.set_setting` takes), in
        a fixed order.
        """

@final
class VmStats:
    """One VM in :class:`HostStats`: what its QEMU uses (None without one) and
    what its files take on the host's disk.
    """
    def __eq__(self, value: object, /) -> bool: ...
    @property
    def name(self) -> str:
        """The VM's name."""
    @property
    def id(self) -> str:
        """The VM's UUID."""
    @property
    def state(self) -> _VmState:
        """Its state when read (one of :data:`vman.VM_STATES`)."""
    @property
    def pid(self) -> Optional[int]:
        """Its QEMU's pid (proven to be that VM's); None without a QEMU."""
    @property
    def cpu_time_ms(self) -> Optional[int]:
        """User plus system CPU time its QEMU used since it started, in
        milliseconds; None without a QEMU.
        """
    @property
    def cpu_percent(self) -> Optional[float]:
        """Its QEMU's CPU use over the sample, in percent of one CPU; None
        without a QEMU.
        """
    @property
    def rss_bytes(self) -> Optional[int]:
        """Its QEMU's resident memory in bytes; None without a QEMU."""
    @property
    def disk_bytes(self) -> int:
        """Host disk space its own files take (its disks, seed and UEFI
        variables), in allocated bytes.
        """

@final
class HostStats:
    """The host and its VMs over one CPU sample: see :meth:`Manager.host_stats`."""
    def __eq__(self, value: object, /) -> bool: ...
    @property
    def at_ms(self) -> int:
        """When the sample ended, Unix time in milliseconds."""
    @property
    def sample_ms(self) -> int:
        """How long CPU use was sampled, in milliseconds."""
    @property
    def cpu_count(self) -> int:
        """Online CPUs."""
    @property
    def cpu_busy_percent(self) -> float:
        """How busy all CPUs were over the sample, 0 to 100."""
    @property
    def load_1(self) -> float:
        """The 1-minute load average."""
    @property
    def load_5(self) -> float:
        """The 5-minute load average."""
    @property
    def load_15(self) -> float:
        """The 15-minute load average."""
    @property
    def memory_total_bytes(self) -> int:
        """Physical memory in bytes."""
    @property
    def memory_available_bytes(self) -> int:
        """Memory available for new work without swapping, in bytes."""
    @property
    def disk_total_bytes(self) -> int:
        """Size of the state directory's filesystem in bytes."""
    @property
    def disk_available_bytes(self) -> int:
        """Space available to vman on it, in bytes."""
    @property
    def vms(self) -> list[VmStats]:
        """Every live VM, by name."""

_CheckName = Literal["qemu", "qemu_img", "accel", "bridge", "dnsmasq", "ovmf", "state_dir"]

@final
class HealthCheck:
    """One check of :class:`HostHealth`."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def name(self) -> _CheckName:
        """What was checked: ``"qemu"``, ``"qemu_img"``, ``"accel"``,
        ``"bridge"``, ``"dnsmasq"``, ``"ovmf"`` or ``"state_dir"``.
        """
    @property
    def ok(self) -> bool:
        """Whether it is usable."""
    @property
    def required(self) -> bool:
        """Whether the state directory's settings and VMs need it."""
    @property
    def detail(self) -> str:
        """What was found (a version, a path), or why it is not usable."""
    @property
    def fix(self) -> Optional[str]:
        """How to fix it; None when it is usable."""

@final
class HostHealth:
    """Whether the host can run the state directory's VMs as its settings say:
    see :meth:`Manager.host_health`.
    """
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def ok(self) -> bool:
        """True when every required check passed."""
    @property
    def checks(self) -> list[HealthCheck]:
        """Every check, in a fixed order: qemu, qemu_img, accel, bridge,
        dnsmasq, ovmf, state_dir.
        """
    def check(self, name: str) -> HealthCheck:
        """The check named ``name``; raises KeyError if there is none."""

@final
class EventStream:
    """Live events, pulled: ``next(timeout)``, iteration (blocks; Ctrl-C
    works), or ``fileno()`` in a ``select``/``poll`` loop.
    """
    def next(self, timeout: Optional[float] = None, *, cancel: Optional[Cancel] = None) -> Optional[Event]:
        """The next event, waiting up to ``timeout`` seconds (forever if None, not
        at all if 0); None if none came. Raises :class:`vman.ClosedError` once
        the stream or its manager is closed, :class:`vman.CancelledError` if
        ``cancel`` was cancelled (the stream goes on: nothing is lost). Ctrl-C
        interrupts the wait.
        """
    def fileno(self) -> int:
        """A descriptor for ``select``/``poll``: readable while :meth:`next`
        has something to answer without waiting (an event, or ClosedError);
        possibly also with nothing, so after a wake-up call ``next(0)`` until
        it returns None. Owned by the stream: do not close it.
        """
    def close(self) -> None:
        """Ends the stream (also for a thread waiting in :meth:`next`, which
        raises :class:`vman.ClosedError`). Idempotent.
        """
    def __enter__(self) -> EventStream: ...
    def __exit__(self, *args: object) -> None: ...
    def __iter__(self) -> Iterator[Event]: ...
    def __next__(self) -> Event: ...

@final
class Console:
    """A VM's serial console: read what the guest prints, write its input.

    One console per VM at a time, across threads and processes: while one
    is attached, ``Manager.console`` answers :class:`vman.InUseError`.
    Use as a context manager, or call :meth:`close`. After :meth:`close`,
    or once its :class:`Manager` is gone, reads and writes raise
    :class:`vman.ClosedError`.
    """
    def read(self, size: int = 4096, timeout: Optional[float] = None) -> bytes:
        """Up to ``size`` bytes the guest printed, waiting up to ``timeout``
        seconds (None: no limit) for something to come; ``b""`` once QEMU
        closed the console (the VM stopped). Raises :class:`vman.TimeoutError`
        if nothing came.
        """
    def write(self, data: Union[bytes, bytearray, str], timeout: Optional[float] = None) -> int:
        """Sends ``data`` (bytes, or str as UTF-8) to the guest, waiting up to
        ``timeout`` seconds (None: no limit) for QEMU to take all of it.
        Returns the number of bytes sent.
        """
    def read_until(self, pattern: str, timeout: Optional[float] = 60.0) -> bytes:
        """Reads until the output matches the regular expression ``pattern``
        (``(?m)`` for line anchors) and returns what was read, ending with
        the match; what follows stays for the next read. Raises
        :class:`vman.TimeoutError` if no match came in ``timeout`` seconds,
        :class:`vman.ClosedError` if QEMU closed the console first.
        """
    def fileno(self) -> int:
        """The descriptor, for ``select``/``poll`` (readable: :meth:`read`
        returns at once). Owned by the console; raises
        :class:`vman.ClosedError` after :meth:`close`.
        """
    def close(self) -> None:
        """Disconnects, so another console can attach. A read or write waiting
        in another thread ends with :class:`vman.ClosedError`. Closing twice
        is harmless.
        """
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the only way a console closes)."""
    @property
    def vm(self) -> str:
        """The name of the VM."""
    def __enter__(self) -> Console: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class NicSpec:
    """A NIC to give a new VM: on ``network``, with a fixed ``ip`` or ``mac`` if
    given (otherwise allocated).
    """
    def __new__(cls, network: str, *, ip: Optional[str] = None, mac: Optional[str] = None) -> NicSpec: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    @property
    def network(self) -> str:
        """The network the NIC joins, by name."""
    @property
    def ip(self) -> Optional[str]:
        """A fixed address on that network, or None to allocate the lowest free one."""
    @property
    def mac(self) -> Optional[str]:
        """A fixed MAC, or None for a fresh random ``52:54:00:..`` one."""

@final
class Manager:
    """A handle on one state directory: ``Manager(state_dir, **options)``.

    Opens ``state_dir`` and its database, and adopts the VMs that are still
    running (see :meth:`reconcile`). A missing directory is created (mode
    0700) unless ``create`` is False, when it raises
    :class:`vman.NotFoundError` and creates nothing.

    ``accel`` (``"auto"``, ``"kvm"`` or ``"tcg"``), ``network`` (``"auto"``,
    ``"bridged"``, ``"user"`` or ``"isolated"``), ``qemu_binary``,
    ``dnsmasq_binary``, ``qemu_user`` (the unprivileged user QEMU runs as
    when vman is root) and ``serial_log_cap_bytes`` ask for the directory's
    settings (see :meth:`settings`): None takes the directory's value; a
    value becomes the setting of a directory being made, and one that
    differs from an existing directory's raises
    :class:`vman.SettingConflictError` (change it with :meth:`set_setting`).
    ``network="auto"`` asks for nothing in particular. ``busy_timeout_ms``
    is this process's own. Raises :class:`vman.InvalidArgumentError` for a
    bad value (before anything is created), :class:`vman.PermissionDeniedError`
    (``"bridged"`` without CAP_NET_ADMIN), :class:`vman.DatabaseError`,
    :class:`vman.IoError`.

    Thread-safe: share one manager across threads (every call releases the
    GIL), or open several on the same directory from several threads or
    processes; the database serializes their writes. Closing it (or leaving
    its ``with`` block) leaves running VMs running. Methods that wait take
    ``cancel=`` (a :class:`vman.Cancel`) and answer Ctrl-C; see
    docs/python.md.

    >>> with vman.Manager("/var/lib/vman") as m:     # the directory's own settings
    ...     print([vm.name for vm in m.vms()])
    >>> vman.Manager("/srv/lab", accel="tcg").close()   # a new directory: TCG becomes its setting
    """
    def __new__(
        cls,
        state_dir: Union[str, os.PathLike[str]],
        *,
        busy_timeout_ms: Optional[int] = None,
        accel: Optional[Literal["auto", "kvm", "tcg"]] = None,
        qemu_binary: Optional[Union[str, os.PathLike[str]]] = None,
        serial_log_cap_bytes: Optional[int] = None,
        network: Optional[Literal["auto", "bridged", "user", "isolated"]] = None,
        dnsmasq_binary: Optional[Union[str, os.PathLike[str]]] = None,
        qemu_user: Optional[str] = None,
        create: bool = True,
    ) -> Manager: ...
    @property
    def state_dir(self) -> pathlib.Path:
        """The state directory (still readable after :meth:`close`)."""
    def close(self) -> None:
        """Closes the manager: every method raises :class:`vman.ClosedError` from
        now on, and its event streams are closed. Waits for calls in progress on
        other threads (Ctrl-C interrupts the wait; the manager then stays closed
        to new calls, and calling close again finishes). Running VMs are not
        affected: they keep running and the next manager adopts them. Idempotent.
        """
    def __enter__(self) -> Manager: ...
    def __exit__(self, *args: object) -> None: ...
    def create_template(
        self, name: str, *, vcpus: int, memory_mib: int, disk_gib: int, description: Optional[str] = None
    ) -> Template:
        """Creates a size template: ``vcpus`` (1-255), ``memory_mib`` (16 MiB to
        4 TiB) and ``disk_gib`` (1 to 64 Ki; the size of a VM's boot disk made
        from an image) are copied into each VM made from it.

        Raises :class:`vman.InvalidArgumentError` (a bad name or size; nothing
        is recorded), :class:`vman.AlreadyExistsError` (the name is taken).

        >>> m.create_template("small", vcpus=1, memory_mib=512, disk_gib=10)
        Template(name="small", vcpus=1, memory_mib=512, disk_gib=10)
        """
    def template(self, name: str) -> Template:
        """The template named ``name``; :class:`vman.NotFoundError` if there is none."""
    def templates(self) -> list[Template]:
        """All templates, by name."""
    def delete_template(self, name: str) -> None:
        """Deletes a template. Raises :class:`vman.InUseError` while a live VM was
        made from it, :class:`vman.NotFoundError` if there is none.
        """
    def create_network(
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
        """Creates a VLAN network and its address pool.

        ``vlan`` is the 802.1Q id (1-4094), ``cidr`` the subnet (/8 to /30,
        overlapping no other network's). ``gateway`` defaults to the subnet's
        first host; ``reserved`` lists addresses or ``"first-last"`` ranges never
        handed out; ``dns`` the servers a bridged network's DHCP offers; ``uplink``
        a host interface whose ``<uplink>.<vlan>`` joins the VLAN's bridge.

        Raises :class:`vman.InvalidArgumentError` (a bad value),
        :class:`vman.AlreadyExistsError` (the name or VLAN id is taken, or the
        subnet overlaps another network's), :class:`vman.UnsupportedError` (an
        uplink on a host without 802.1Q).

        >>> m.create_network("lan", vlan=100, cidr="10.100.0.0/24", reserved=["10.100.0.2-10.100.0.9"])
        Network(name="lan", vlan=100, cidr="10.100.0.0/24", gateway="10.100.0.1")
        """
    def network(self, name: str) -> Network:
        """The network named ``name``; :class:`vman.NotFoundError` if there is none."""
    def networks(self) -> list[Network]:
        """All networks, by VLAN id."""
    def delete_network(self, name: str) -> None:
        """Deletes a network. Raises :class:`vman.InUseError` while any address on
        it is allocated (delete its VMs first), :class:`vman.NotFoundError` if
        there is none.
        """
    def allocations(self, network: str) -> list[Allocation]:
        """Who holds which address of ``network``, in address order: a list of
        :class:`vman.Allocation`. :class:`vman.NotFoundError` if there is no such
        network.
        """
    def import_ssh_key(self, name: str, public_key: str) -> SshKey:
        """Imports an OpenSSH public key line (``"type base64 [comment]"``, as in a
        ``.pub`` file) under ``name``: ssh-ed25519, ecdsa-sha2-nistp256, -384 or
        -521, or ssh-rsa of 2048 bits or more. VMs are given keys by name in
        :meth:`create_vm`.

        Raises :class:`vman.InvalidArgumentError` for a malformed, truncated,
        weak, DSA or private key (saying which), :class:`vman.AlreadyExistsError`
        for a taken name.

        >>> m.import_ssh_key("alice", open("/home/alice/.ssh/id_ed25519.pub").read())
        """
    def ssh_key(self, name: str) -> SshKey:
        """The SSH key named ``name``; :class:`vman.NotFoundError` if there is none."""
    def ssh_keys(self) -> list[SshKey]:
        """The SSH key catalogue, by name."""
    def delete_ssh_key(self, name: str) -> None:
        """Deletes a key from the catalogue; VMs given it keep their own copies.
        :class:`vman.NotFoundError` if there is none.
        """
    def create_vm(
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
        """Records a VM (it is not started: see :meth:`start`).

        - ``template`` names its size template.
        - ``nics``: each a network name or a :class:`vman.NicSpec` (a fixed
          address or MAC); every address is allocated in one transaction, or none.
        - What it boots: ``kernel`` (with ``initrd`` and ``cmdline``) boots that
          Linux kernel directly; ``image`` gives it a boot disk that is a linked
          clone of that registered image, ``blank_disk`` an empty one (both sized
          by the template); ``cdrom`` puts an ISO in its CD-ROM drive
          (``boot_from_cdrom``: boot from it first). ``firmware`` (``"bios"`` or
          ``"uefi"``) is by default the image's, else ``"bios"``.
        - ``display``: ``"none"`` (serial console only), ``"vnc-unix"`` or
          ``"vnc-tcp"``.
        - ``cloud_init``: a NoCloud seed at each start (hostname, network config,
          its SSH keys), with ``user_data`` (a ``#cloud-config`` document) merged
          in. ``ssh_keys`` names keys of the catalogue; the VM keeps its own copies.

        Raises :class:`vman.InvalidArgumentError` (a bad name, address, MAC or
        option; nothing recorded), :class:`vman.NotFoundError` (the template,
        a network, the image or a key), :class:`vman.AlreadyExistsError` (the
        name, a fixed address or MAC is taken), :class:`vman.ExhaustedError` (a
        network has no free address), :class:`vman.IoError` (the boot disk could
        not be made; the VM is removed again).

        >>> vm = m.create_vm("web1", template="small", nics=["lan", vman.NicSpec("lan", ip="10.100.0.50")],
        ...                  kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="console=ttyS0")
        >>> [nic.ip for nic in vm.nics]
        ['10.100.0.10', '10.100.0.50']
        """
    def vm(self, name: str) -> Vm:
        """The live VM named ``name`` as it is now; :class:`vman.NotFoundError` if there is none."""
    def vms(self, *, state: Optional[_VmState] = None, name_prefix: Optional[str] = None) -> list[Vm]:
        """Live VMs by name; only those in ``state`` (one of :data:`vman.VM_STATES`)
        or whose name starts with ``name_prefix``, if given.
        """
    def delete_vm(self, name: str, *, force: bool = False) -> None:
        """Soft-deletes a VM: frees its name, releases its addresses, deletes the
        boot disk made with it (detaching the others) and keeps its history (see
        :meth:`vm_history` with its id). A VM with a running QEMU raises
        :class:`vman.InvalidStateError` unless ``force=True``, which stops it at
        once first.
        """
    def create_disk(self, name: str, size_bytes: int, *, format: _DiskFormat = "qcow2") -> Disk:
        """Creates an empty disk of ``size_bytes`` bytes (at least one MiB, a
        multiple of 512) under the state directory, ``format`` ``"qcow2"`` or
        ``"raw"``. Raises :class:`vman.InvalidArgumentError`,
        :class:`vman.AlreadyExistsError`, :class:`vman.IoError`.
        """
    def import_disk(self, name: str, source: _Path, *, format: Optional[_DiskFormat] = None, copy: bool = True) -> Disk:
        """Makes a disk of an existing image file (an absolute path; not a device
        node, not through a symlink): copied into the state directory, or with
        ``copy=False`` used in place, which must be inside it. ``format`` None
        probes it (an image naming a backing file is then refused). Raises
        :class:`vman.InvalidArgumentError`, :class:`vman.AlreadyExistsError`,
        :class:`vman.IoError`.
        """
    def disk(self, name: str) -> Disk:
        """The disk named ``name``; :class:`vman.NotFoundError` if there is none."""
    def disks(self, *, vm: Optional[str] = None, state: Optional[_DiskState] = None) -> list[Disk]:
        """Disks by name; only those attached to VM ``vm``, or in ``state`` (one of :data:`vman.DISK_STATES`), if given."""
    def delete_disk(self, name: str) -> None:
        """Deletes a disk attached to no VM, and its file if vman owns it. Raises
        :class:`vman.InvalidStateError` while it is attached.
        """
    def resize_disk(self, name: str, size_bytes: int, *, force: bool = False) -> Disk:
        """Grows a disk to ``size_bytes`` (live while its VM runs: the guest sees it
        at once). Shrinking loses data past the new end, so it needs
        ``force=True`` and a VM that does not run (:class:`vman.UnsupportedError`
        otherwise).
        """
    def attach_disk(self, vm: str, disk: str) -> Disk:
        """Attaches an available disk to a VM at its lowest free slot: part of its
        next start, or hot-plugged into its running QEMU (the guest sees a new
        virtio disk). Raises :class:`vman.InvalidStateError` (the disk is not
        available), :class:`vman.InvalidArgumentError` (the VM has all its disks).
        """
    def detach_disk(self, vm: str, disk: str, timeout: float = 30.0, *, cancel: Optional[Cancel] = None) -> Disk:
        """Detaches a disk from VM ``vm``. From a running VM the guest is asked to
        release it and given ``timeout`` seconds; if it does not,
        :class:`vman.TimeoutError` is raised and the disk stays attached (the
        request stands: the next detach or :meth:`reconcile` completes it once
        the guest lets go).

        ``cancel`` (a :class:`vman.Cancel`) or Ctrl-C end the wait the same way
        as a timeout: the disk stays attached; :class:`vman.CancelledError` or
        :class:`KeyboardInterrupt` is raised.
        """
    def register_image(
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
        """Registers a base image: an absolute path to a regular file, whose format
        and size are read and SHA-256 computed, and which is copied in (unless
        ``copy=False``: used in place, inside the state directory). VMs boot from
        linked clones of it (:meth:`create_vm` with ``image=``); its file is never
        written. ``firmware`` says what its VMs need. Raises
        :class:`vman.InvalidArgumentError`, :class:`vman.AlreadyExistsError`,
        :class:`vman.IoError`.

        >>> m.register_image("debian-12", "/srv/images/debian-12.qcow2", os="debian-12", firmware="uefi")
        """
    def image(self, name: str) -> Image:
        """The image named ``name``; :class:`vman.NotFoundError` if there is none."""
    def images(self) -> list[Image]:
        """Every registered image, by name."""
    def delete_image(self, name: str) -> None:
        """Removes an image from the catalogue (and its file, if copied in); raises
        :class:`vman.InUseError` while a disk is cloned from it.
        """
    def create_snapshot(self, vm: str, name: str, *, cancel: Optional[Cancel] = None) -> Snapshot:
        """Takes snapshot ``name`` of every disk of VM ``vm`` (all qcow2): of a
        stopped VM with qemu-img, of a running or paused one with a QMP job that
        saves its memory too (the guest pauses meanwhile).

        Raises :class:`vman.AlreadyExistsError`, :class:`vman.UnsupportedError`
        (a raw disk), :class:`vman.InvalidStateError` (no disk, or starting or
        stopping); nothing is left behind. Cancelled (``cancel`` or Ctrl-C) while
        it is taken, the snapshot is finished and removed again:
        :class:`vman.CancelledError` (or :class:`KeyboardInterrupt`) means no
        snapshot.
        """
    def snapshots(self, vm: str) -> list[Snapshot]:
        """VM ``vm``'s snapshots, oldest first."""
    def revert_snapshot(self, vm: str, name: str, *, cancel: Optional[Cancel] = None) -> Snapshot:
        """Brings VM ``vm``'s disks back to snapshot ``name``: a stopped VM to any,
        a running one (memory too: the guest resumes where it was) only to a live
        one; reverting a running guest's disks to a disk-only snapshot raises
        :class:`vman.UnsupportedError` (stop it first). Once begun, a revert is
        seen through: ``cancel`` and Ctrl-C only stop a wait for the VM's lock.
        """
    def delete_snapshot(self, vm: str, name: str, *, cancel: Optional[Cancel] = None) -> None:
        """Deletes snapshot ``name`` from every disk of VM ``vm`` (with qemu-img when
        it is stopped, a QMP job when it runs). Once begun it is seen through:
        ``cancel`` and Ctrl-C only stop a wait for the VM's lock.
        """
    def change_cdrom(self, vm: str, iso: Optional[_Path]) -> Vm:
        """Puts the ISO at ``iso`` (an absolute path) in the VM's CD-ROM drive, or
        ejects it when ``iso`` is None: at once in a running VM, else from its
        next start. Returns the VM.
        """
    def start(self, name: str, *, cancel: Optional[Cancel] = None) -> Vm:
        """Starts a created, stopped or failed VM and returns it running. Returns
        once QEMU answers on QMP; the guest then boots (see
        :meth:`wait_for_console`). A failed start leaves the VM ``"error"`` with
        QEMU's own words in :attr:`vman.Vm.last_error`.

        Raises :class:`vman.InvalidStateError` (not startable, or no boot
        source), :class:`vman.QemuError` (QEMU refused), :class:`vman.PermissionDeniedError`,
        :class:`vman.UnsupportedError` (no QEMU binary).

        Interrupted by ``cancel`` (a :class:`vman.Cancel`) or Ctrl-C before QEMU
        answered, the new QEMU is killed and the VM is ``"stopped"``, with a
        ``cancelled`` event; :class:`vman.CancelledError` or
        :class:`KeyboardInterrupt` is raised.
        """
    def stop(self, name: str, timeout: float = 30.0, *, cancel: Optional[Cancel] = None) -> Vm:
        """Stops a running or paused VM: the ACPI power button, up to ``timeout``
        seconds for the guest to power off, then SIGTERM (QEMU's own orderly quit), then SIGKILL
        (recorded as a ``forced`` event). Returns the stopped VM.

        Interrupted by ``cancel`` (a :class:`vman.Cancel`) or Ctrl-C while the
        guest is given its time, nothing has been forced: the VM stays
        ``"running"`` (a paused one was resumed for the power button), with a
        ``cancelled`` event, and :class:`vman.CancelledError` or
        :class:`KeyboardInterrupt` is raised once that is recorded. Once the stop
        is being forced it is seen through.

        Raises :class:`vman.InvalidStateError` (not running or paused),
        :class:`vman.InvalidArgumentError` (a negative timeout).

        >>> m.stop("web1", timeout=60).state
        'stopped'
        """
    def force_stop(self, name: str) -> Vm:
        """Stops a VM at once: SIGTERM (QEMU's own orderly quit, as QMP ``quit``), then SIGKILL if QEMU lingers. Returns the stopped VM."""
    def restart(self, name: str, timeout: float = 30.0, *, cancel: Optional[Cancel] = None) -> Vm:
        """Stops the VM as :meth:`stop` does (within ``timeout``), then starts it.
        Interrupted during the stop it stays running, during the start it is
        stopped (see :meth:`stop` and :meth:`start`).
        """
    def pause(self, name: str) -> Vm:
        """Halts the guest's vCPUs (QMP ``stop``); QEMU keeps running. Returns the ``"paused"`` VM."""
    def resume(self, name: str) -> Vm:
        """Resumes a paused guest (QMP ``cont``). Returns the ``"running"`` VM."""
    def console_tail(self, name: str, max_bytes: int = 65536) -> bytes:
        """The last ``max_bytes`` bytes the guest wrote to its serial console, also
        of a stopped VM (the log keeps the previous part too).
        """
    def wait_for_console(self, name: str, pattern: str, timeout: float = 60.0, *, cancel: Optional[Cancel] = None) -> str:
        """Waits up to ``timeout`` seconds for a console line matching the regular
        expression ``pattern`` printed during the current run of the VM's QEMU,
        and returns that line. Output of earlier runs never matches.

        Raises :class:`vman.InvalidStateError` for a VM without a running QEMU
        (also as soon as it exits during the wait), :class:`vman.TimeoutError` if
        no line came, :class:`vman.CancelledError` if ``cancel`` was cancelled;
        Ctrl-C raises :class:`KeyboardInterrupt`.

        >>> m.start("web1")
        >>> m.wait_for_console("web1", r"login:", timeout=120)
        """
    def console(self, name: str) -> Console:
        """Attaches to the VM's serial console: a :class:`vman.Console`. One at a
        time per VM, across threads and processes: :class:`vman.InUseError` while
        another is attached; :class:`vman.InvalidStateError` without a running
        QEMU.
        """
    def settings(self) -> Settings:
        """The settings of the state directory, as it keeps them now."""
    def set_setting(self, key: str, value: Union[str, int, os.PathLike[str], None]) -> Settings:
        """Changes setting ``key`` of the state directory, for every process
        that uses it, and returns the settings as they are now. Keys:
        ``network``, ``accel``, ``qemu_binary``, ``dnsmasq_binary``,
        ``qemu_user`` (None or ``""`` for the default) and
        ``serial_log_cap_bytes`` (an int, or its decimal text).
        ``network="auto"`` is resolved by this process.

        ``network``, ``dnsmasq_binary`` and ``qemu_user`` change only while
        no VM has a QEMU (:class:`vman.InvalidStateError` names the VMs to
        stop); the others apply from each VM's next start. A change records
        a ``setting`` event; setting the value kept already changes nothing.
        An unknown key or a bad value raises
        :class:`vman.InvalidArgumentError`; bridged without CAP_NET_ADMIN,
        :class:`vman.PermissionDeniedError`.
        """
    def host_stats(self) -> HostStats:
        """The host's CPU (count, load, busy share over a ~0.2 s sample that
        this call waits out), memory and the state directory's disk, and for
        every VM what its QEMU uses (CPU time and share, resident memory)
        and what its files take on disk.
        """
    def host_health(self) -> HostHealth:
        """Whether this host can run the state directory's VMs as its settings
        say: the QEMU binary (and its version), qemu-img, the accelerator,
        bridging privileges, dnsmasq, OVMF and a writable state directory.
        A failed check says why and how to fix it; ``ok`` is False only when
        a check the settings need failed.
        """
    def create_batch(
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
        first: int = 1,
    ) -> Batch:
        """Creates ``count`` VMs named by ``pattern`` (one placeholder, ``{}``
        or ``{:0N}``: ``"worker{:02}"`` gives worker01, worker02…, numbered
        from ``first``), each made as :meth:`create_vm` would make it from
        the same keyword arguments, and starts them if ``start``: all of
        them, or none. Every name is checked first (a bad pattern or count
        raises :class:`vman.InvalidArgumentError`, a taken name
        :class:`vman.AlreadyExistsError` naming the VMs). If one VM cannot
        be made or started, every VM of the batch is deleted again (QEMU
        killed; disks, seeds, taps and addresses released) and the error
        that stopped it is raised. ``name`` names the batch; by default the
        pattern without its placeholder (``"worker"``).
        """
    def batches(self) -> list[Batch]:
        """Every live batch (also those being created or deleted), by name."""
    def batch(self, name: str) -> Batch:
        """The batch named ``name`` (:class:`vman.NotFoundError` if there is none)."""
    def delete_batch(self, name: str, *, force: bool = False) -> list[str]:
        """Deletes a batch and every VM of it; returns the names of the VMs
        deleted. A batch with a running (or paused) VM is refused with
        :class:`vman.InvalidStateError` naming them, nothing deleted, unless
        ``force=True``, which stops them at once first. A batch another
        process is still creating is waited for, then deleted.
        """
    def delete_vms(self, *, prefix: str, force: bool = False) -> list[str]:
        """Deletes every VM whose name starts with ``prefix`` (byte for byte: any
        VM, in a batch or not); returns their names. If any of them is running
        (or paused) it is refused with :class:`vman.InvalidStateError` naming
        them, nothing deleted, unless ``force=True``, which stops them at once
        first. A batch left with no VM is deleted too. It stops at the first
        VM that cannot be deleted (those before it are gone).
        """
    def reconcile(self) -> ReconcileReport:
        """Compares the store with reality and repairs the drift: VMs whose QEMU
        died or runs unrecorded, operations a crash interrupted, stale run files,
        host networking, disks and snapshots left mid-operation. Returns what it
        found and did (:class:`vman.ReconcileReport`). Also run by every open.
        """
    def subscribe(self, after: Optional[int] = None) -> EventStream:
        """A live stream of the events committed to the state directory by any
        manager in any process (:class:`vman.EventStream`): from now on, or with
        ``after``, every event after that id first (resume without gaps; 0
        replays all history).

        >>> for event in m.subscribe():   # Ctrl-C ends it
        ...     print(event.object_name, event.action)
        """
    def vm_history(self, vm: str, limit: int = 100) -> list[Event]:
        """The newest ``limit`` (1-10000) events of VM ``vm`` (its live name, or the
        id of a deleted one), oldest first.
        """
    def recent_events(self, limit: int = 100) -> list[Event]:
        """The newest ``limit`` (1-10000) events across the state directory, oldest first."""
