"""The Python façade maps and never decides: every core error kind has a class
of its own, and every default a signature shows is core's."""

import inspect
import numbers

import vman
from vman import _errors, _vman


def test_every_error_kind_has_a_class_of_its_own():
    pairs = _vman._error_classes()  # vman-core's ErrorKind::ALL, through the map
    kinds = [kind for kind, _ in pairs]
    names = [name for _, name in pairs]
    assert len(pairs) >= 14 and len(set(kinds)) == len(kinds)
    assert len(set(names)) == len(names), f"two kinds share a class: {pairs}"
    for kind, name in pairs:
        assert name != "VmanError", f"kind {kind!r} falls through to the bare VmanError"
        assert name in _errors.__all__, f"kind {kind!r} maps to {name!r}, which vman._errors does not export"
        cls = getattr(_errors, name)
        assert issubclass(cls, vman.VmanError) and cls is not vman.VmanError
        assert cls.kind == kind, f"{name}.kind is {cls.kind!r}, core calls the kind {kind!r}"
        assert getattr(vman, name) is cls, "the package re-exports the class"
    # And the other way: no class of the tree is left without a kind.
    assert set(_errors.__all__) - set(names) == {"VmanError"}


def test_a_core_error_arrives_as_its_kinds_class(manager):
    for call, cls in [(lambda: manager.vm("nope"), vman.NotFoundError),
                      (lambda: manager.create_template("bad name", vcpus=1, memory_mib=512, disk_gib=1),
                       vman.InvalidArgumentError)]:
        try:
            call()
        except vman.VmanError as e:
            assert type(e) is cls and e.kind == cls.kind
        else:
            raise AssertionError("no error")


# Each numeric or named default a public signature shows, and the core
# default it is (vman_core::defaults and the enums' defaults, exported as
# vman._vman.DEFAULTS). None means "no limit" or "vman's default", and ""
# "none given", decided in core, and are not listed.
CORE_DEFAULTS = {
    ("Manager", "stop", "timeout"): "stop_timeout",
    ("Manager", "restart", "timeout"): "stop_timeout",
    ("Manager", "console_tail", "max_bytes"): "console_tail_bytes",
    ("Manager", "wait_for_console", "timeout"): "console_wait_timeout",
    ("Manager", "vm_history", "limit"): "history_limit",
    ("Manager", "recent_events", "limit"): "history_limit",
    ("Manager", "detach_disk", "timeout"): "detach_timeout",
    ("Manager", "create_disk", "format"): "disk_format",
    ("Manager", "register_image", "firmware"): "firmware",
    ("Manager", "register_image", "arch"): "image_arch",
    ("Manager", "create_vm", "display"): "display",
    ("Manager", "create_batch", "display"): "display",
    ("Manager", "create_batch", "first"): "batch_first",
    ("Console", "read_until", "timeout"): "console_wait_timeout",
}
# Python's own: the buffer size of one read (no language but Python has a
# default there; C passes its buffer).
PYTHON_DEFAULTS = {("Console", "read", "size"): 4096}


def shown_defaults():
    """Every numeric or (non-empty) text default in the signatures of vman's
    classes."""
    found = {}
    for cls_name in ["Manager", "Console", "EventStream", "NicSpec"]:
        cls = getattr(vman, cls_name)
        for name, member in vars(cls).items():
            if name.startswith("__") and name != "__new__" or not callable(member):
                continue
            for param in inspect.signature(member).parameters.values():
                default = param.default
                if isinstance(default, numbers.Number) and not isinstance(default, bool) or default and isinstance(default, str):
                    found[(cls_name, name, param.name)] = default
    return found


def test_defaults_shown_in_signatures_are_cores():
    defaults = _vman.DEFAULTS
    assert set(defaults) == set(CORE_DEFAULTS.values())
    assert defaults["stop_timeout"] > 0 and defaults["console_tail_bytes"] > 0
    found = shown_defaults()
    # A default not listed above would be one Python decided on its own.
    assert set(found) == set(CORE_DEFAULTS) | set(PYTHON_DEFAULTS), found
    for where, key in CORE_DEFAULTS.items():
        assert found[where] == defaults[key], f"{where} shows {found[where]!r}, core's {key} is {defaults[key]!r}"
        assert type(found[where]) is type(defaults[key]), where
    for where, value in PYTHON_DEFAULTS.items():
        assert found[where] == value

