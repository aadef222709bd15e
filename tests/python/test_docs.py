"""Every public Python name says what it is: docstrings on each class,
function, method and property of ``vman`` and ``vman.aio``, the stub's
copies equal to them, and ``help()`` that answers a newcomer's questions."""

import inspect
import pydoc

import vman
import vman._vman
import vman.aio
from stubdocs import STUB, documented


def public_names():
    """(qualified name, object) for every public name and member."""
    for module in (vman, vman.aio):
        for name in module.__all__:
            obj = getattr(module, name)
            if name.startswith("__") or not (inspect.isclass(obj) or callable(obj)):
                continue  # __version__, VM_STATES, DEFAULTS: data
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not (callable(member) or inspect.isdatadescriptor(member)):
                        continue  # `kind` of the exception classes: data
                    yield f"{module.__name__}.{name}.{attr}", member


def test_every_public_name_has_a_docstring():
    seen = dict(public_names())
    assert "vman.Manager.create_vm" in seen and "vman.Vm.state" in seen and "vman.aio.AsyncManager.stop" in seen
    assert len(seen) > 250, len(seen)
    undocumented = [name for name, obj in seen.items() if not (obj.__doc__ or "").strip()]
    assert undocumented == []
    # A class's own docstring, not one inherited from `object` or `Exception`.
    inherited = [n for n, o in seen.items() if inspect.isclass(o) and o.__doc__ in (object.__doc__, Exception.__doc__)]
    assert inherited == []


def test_the_stub_carries_the_native_docstrings():
    stub = STUB.read_text()
    assert documented(stub, vman._vman) == stub, "run: python tests/python/stubdocs.py"


def test_help_says_what_a_method_takes_raises_and_returns():
    text = pydoc.render_doc(vman.Manager.create_vm, renderer=pydoc.plaintext)
    for param in inspect.signature(vman.Manager.create_vm).parameters:
        if param != "self":
            assert param in text, param
    assert "Raises" in text and "vman.NotFoundError" in text and ">>>" in text
    text = pydoc.render_doc(vman.Manager.stop, renderer=pydoc.plaintext)
    assert "cancel=None" in text and "KeyboardInterrupt" in text and "running" in text
    # The awaitable forms say what they await.
    text = pydoc.render_doc(vman.aio.AsyncManager.stop, renderer=pydoc.plaintext)
    assert "vman.Manager.stop" in text and "ACPI" in text
