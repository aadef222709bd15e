"""The docstrings of python/vman/_vman.pyi, taken from the native module.

The Rust ``///`` comments of vman-py are the one source of each docstring
(they become ``__doc__``); editors read docstrings from the stub, so the
stub carries copies, and tests/python/test_docs.py fails when a copy
differs from its source. To refresh them after changing a comment:

    python tests/python/stubdocs.py          (rewrites python/vman/_vman.pyi)
"""

import ast
import inspect
import sys
from pathlib import Path
from typing import Any, Optional

STUB = Path(__file__).resolve().parents[2] / "python" / "vman" / "_vman.pyi"


def _runtime_doc(native: Any, path: list[str]) -> Optional[str]:
    obj = native
    for part in path:
        obj = inspect.getattr_static(obj, part, None) if inspect.isclass(obj) else getattr(obj, part, None)
        if obj is None:
            return None
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if doc else None


def _literal(doc: str, indent: str) -> str:
    assert '"""' not in doc, doc
    prefix = "r" if "\\" in doc else ""
    lines = doc.split("\n")
    if len(lines) == 1:
        return f'{prefix}"""{doc}"""'
    body = "\n".join(f"{indent}{line}" if line else "" for line in lines[1:])
    return f'{prefix}"""{lines[0]}\n{body}\n{indent}"""'


def documented(source: str, native: Any) -> str:
    """``source`` (a stub) with each public class, function, method and
    property carrying its runtime docstring."""
    lines = source.split("\n")
    edits: list[tuple[int, int, int, int, str]] = []  # (line, col, end_line, end_col, text), 1-based lines

    def visit(body: list[ast.stmt], path: list[str]) -> None:
        for node in body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)) or node.name.startswith("_"):
                continue
            doc = _runtime_doc(native, path + [node.name])
            first = node.body[0]
            indent = " " * (node.col_offset + 4)
            has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
            if isinstance(node, ast.ClassDef):
                visit(node.body, path + [node.name])
            if doc is None:
                continue
            literal = _literal(doc, indent)
            assert first.end_lineno is not None and first.end_col_offset is not None
            if has_doc:
                edits.append((first.lineno, first.col_offset, first.end_lineno, first.end_col_offset, literal))
            elif isinstance(node, ast.FunctionDef):
                # `def f(...) -> T: ...` becomes a def whose body is the docstring.
                edits.append((first.lineno, first.col_offset, first.end_lineno, first.end_col_offset, f"\n{indent}{literal}"))
            else:
                edits.append((first.lineno, 0, first.lineno, 0, f"{indent}{literal}\n"))

    visit(ast.parse(source).body, [])
    for line, col, end_line, end_col, text in sorted(edits, reverse=True):
        head = lines[line - 1][:col]
        if text.startswith("\n"):
            head = head.rstrip()
        tail = lines[end_line - 1][end_col:]
        lines[line - 1 : end_line] = (head + text + tail).split("\n")
    return "\n".join(lines)


if __name__ == "__main__":
    import vman._vman

    STUB.write_text(documented(STUB.read_text(), vman._vman))
    sys.exit(0)
