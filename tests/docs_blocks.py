"""The Python blocks of the README and docs/, and the marker before each.

Every fenced ``python`` block is preceded by an HTML comment (invisible on GitHub and in the
Sphinx site) that says how the suite runs it; tests/test_docs_examples.py holds the kinds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_FENCE = re.compile(r"^```python\n", re.MULTILINE)
BLOCK = re.compile(
    r"^<!-- example(?:: (?P<kind>[a-z]+)(?: (?P<arg>[\w./-]+))?)? -->\n"
    r"```python\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    path: Path
    kind: str | None
    arg: str | None
    code: str
    number: int

    @property
    def filename(self) -> str:
        return f"{self.path.relative_to(ROOT)} example {self.number}"


def blocks(path: Path) -> list[Block]:
    return [
        Block(path, match["kind"], match["arg"], match["code"], number)
        for number, match in enumerate(BLOCK.finditer(path.read_text()), start=1)
    ]


def example_namespace(document: str, defining: str) -> dict[str, object]:
    """Run the plain example of ``document`` whose code contains ``defining``; its names."""
    (block,) = [b for b in blocks(ROOT / document) if b.kind is None and defining in b.code]
    namespace: dict[str, object] = {"__name__": f"docs_example_{block.path.stem}"}
    exec(compile(block.code, block.filename, "exec"), namespace)
    return namespace
