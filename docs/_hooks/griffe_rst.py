"""Griffe extension: show the package's reST-flavoured docstrings as clean Markdown.

statetrainer's docstrings use two reST habits that Markdown shows raw:

* Sphinx roles, ``:class:`~statetrainer.steps.StepHelper``` -> ``StepHelper`` in code;
* literal blocks introduced by ``Example::`` -> a fenced Python block.

The docstrings themselves stay as they are (they read well in ``help()``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def rst_to_markdown(text: str) -> str:
    """Rewrite roles and ``::`` literal blocks of one docstring."""
    text = _ROLE.sub(_role, text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        head = line.rstrip()[:-2].rstrip()
        out.append("**Example**" if head.strip() in ("Example", "Examples") else f"{head}:")
        indent = len(line) - len(line.lstrip())
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        while block and not block[0].strip():
            block.pop(0)
        body = [b for b in block if b.strip()]
        cut = min((len(b) - len(b.lstrip()) for b in body), default=0)
        pad = " " * indent
        out += ["", f"{pad}```python", *(pad + b[cut:] if b.strip() else "" for b in block), f"{pad}```", ""]
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Apply :func:`rst_to_markdown` to every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
