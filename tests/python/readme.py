"""The code blocks of README.md, so tests can run them and mypy can check them.

    python tests/python/readme.py python   prints one program made of the
                                           README's Python blocks (for mypy)
"""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def blocks(lang: str, readme: Path = README) -> list[str]:
    """The README's code blocks fenced as ```lang, in order."""
    return [body for fence, body in _FENCE.findall(readme.read_text()) if fence == lang]


def python_program() -> str:
    """The README's Python blocks as one module, in order."""
    return "\n\n".join(f"# README.md, Python block {i + 1}\n{b}" for i, b in enumerate(blocks("python")))


if __name__ == "__main__":
    if sys.argv[1:] != ["python"]:
        sys.exit(__doc__)
    sys.stdout.write(python_program())
