"""Every code block in the documentation runs, and the hook table cannot drift from the code.

How a page's blocks run (the rules are also written in ``docs/about.md``):

* Each page runs in a fresh temporary directory holding a copy of the repository's
  ``diagrams/`` (as if the commands were typed in a checkout), with one torch thread
  (``OMP_NUM_THREADS=1`` for the commands): fast and repeatable on a busy two-core machine.
* Fences are classified by their language. ``python``/``py`` and ``bash``/``sh``/``shell``
  blocks run; display languages (``text``, ``console``, ``diff``, ``json``, ...) never do; a
  fence without a language is an error, so nothing is skipped by accident.
* The Python blocks of one page run in order in one namespace (like a doctest session),
  in the page's directory. A Python block titled with a file name
  (```` ```python title="first_trainer.py" ````) is first written to that file there, so
  later blocks can import it and shell blocks can name it.
* Shell blocks run in the same directory, in document order with the Python blocks: each
  command (``\\`` continuations joined, ``#`` comments dropped) must start with
  ``statetrainer`` and runs as a real subprocess of the ``statetrainer`` script installed
  beside this interpreter (``.venv/bin/statetrainer``); it must exit 0.
* A block that must not run is marked, visibly, right before its fence with
  ``<!-- docs: no-run (reason) -->``; the reason is required. Keep them rare.
* A ``text`` block marked ``<!-- docs: output -->`` is the exact standard output of the
  runnable block before it (trailing spaces ignored): use it for outputs that do not
  depend on the machine (traces, tables of names), not for timings or float metrics.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: The console script of the environment running the tests (``.venv/bin/statetrainer`` in CI).
STATETRAINER = Path(sys.executable).parent / "statetrainer"

PYTHON = frozenset({"python", "py"})
SHELL = frozenset({"bash", "sh", "shell"})
DISPLAY = frozenset({"text", "console", "output", "diff", "json", "jsonl", "toml", "yaml", "ini", "csv",
                     "mermaid", "dot", "pycon"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs:(?P<body>.*?)-->\s*$")
_NO_RUN = re.compile(r"^\s*no-run\s*\((?P<reason>.*\S.*)\)\s*$")
_OUTPUT = re.compile(r"^\s*output\s*$")
_TITLE = re.compile(r"""title\s*=\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file, with the marker written before it."""

    path: Path
    line: int
    lang: str
    title: str | None
    code: str
    no_run: str | None = None
    output: bool = False

    @property
    def where(self) -> str:
        return f"{_shown(self.path)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.no_run is None and self.lang in PYTHON | SHELL


@dataclass(frozen=True)
class Marker:
    """``<!-- docs: no-run (reason) -->`` (``no_run`` is the reason) or ``<!-- docs: output -->``."""

    no_run: str | None = None
    output: bool = False


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _marker(line: str, where: str) -> Marker | None:
    """The marker on ``line``; ``None`` when the line is no marker; an error for a malformed one."""
    found = _MARKER.match(line)
    if not found:
        return None
    body = found.group("body")
    if no_run := _NO_RUN.match(body):
        return Marker(no_run=no_run.group("reason").strip())
    if _OUTPUT.match(body):
        return Marker(output=True)
    raise ValueError(
        f"{where}: unknown docs marker {line.strip()!r}; the markers are "
        f"<!-- docs: no-run (reason) --> (the reason is required) and <!-- docs: output -->"
    )


def _fence_end(lines: list[str], start: int, ticks: str, where: str) -> int:
    """Index of the line closing the fence opened by ``ticks`` just before ``start``."""
    for i in range(start, len(lines)):
        text = lines[i].strip()
        if text.startswith(ticks) and not text.strip(ticks[0]):
            return i
    raise ValueError(f"{where}: unclosed code fence")


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of ``path``, with their language, title and marker."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    marker: Marker | None = None
    i = 0
    while i < len(lines):
        where = f"{_shown(path)}:{i + 1}"
        fence = _FENCE.match(lines[i])
        if not fence:
            found = _marker(lines[i], where)
            if found is None and lines[i].strip() and marker is not None:
                raise ValueError(f"{where}: a docs marker must be right before a code fence")
            marker = found or marker
            i += 1
            continue
        indent, ticks, info = fence.group("indent"), fence.group("fence"), fence.group("info").strip()
        lang = info.split()[0].strip("{}.").lower() if info else ""
        if marker is not None and marker.output and lang != "text":
            raise ValueError(f"{where}: <!-- docs: output --> marks a text block")
        end = _fence_end(lines, i + 1, ticks, where)
        body = "\n".join(b[len(indent):] if b.startswith(indent) else b for b in lines[i + 1 : end])
        title = _TITLE.search(info)
        marker = marker or Marker()
        out.append(Block(path, i + 1, lang, title.group(1) if title else None, textwrap.dedent(body) + "\n",
                         marker.no_run, marker.output))
        marker = None
        i = end + 1
    return out


def _check_languages(blocks: list[Block]) -> None:
    for b in blocks:
        if b.lang not in PYTHON | SHELL | DISPLAY:
            raise AssertionError(
                f"{b.where}: fence language {b.lang or '(none)'!r} is neither run "
                f"({sorted(PYTHON | SHELL)}) nor display ({sorted(DISPLAY)}); give the fence one"
            )


def shell_commands(code: str) -> Iterator[list[str]]:
    """Each command of a shell block as argv (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", code)
    for line in joined.splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            yield argv


class _Tee(io.StringIO):
    """Keep what a block prints and still show it (pytest captures it for failure reports)."""

    def __init__(self, through: TextIO) -> None:
        super().__init__()
        self.through = through

    def write(self, text: str) -> int:
        self.through.write(text)
        return super().write(text)


def _run_python(block: Block, namespace: dict[str, object], workdir: Path) -> str:
    if block.title and block.title.endswith(".py"):
        (workdir / block.title).write_text(block.code)
    code = compile(block.code, f"<{block.where}>", "exec")
    out = _Tee(sys.stdout)
    try:
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
    except BaseException as exc:
        raise AssertionError(f"{block.where}: this Python block failed:\n{block.code}") from exc
    return out.getvalue()


def _run_shell(block: Block, workdir: Path) -> str:
    printed = []
    for argv in shell_commands(block.code):
        if argv[0] != "statetrainer":
            raise AssertionError(
                f"{block.where}: {shlex.join(argv)!r} is not a statetrainer command; shell blocks may only run "
                f"statetrainer (or mark the block <!-- docs: no-run (reason) -->)"
            )
        proc = subprocess.run(
            [str(STATETRAINER), *argv[1:]], cwd=workdir, capture_output=True, text=True, timeout=120,
            env={**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1"},
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"{block.where}: `{shlex.join(argv)}` exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        printed.append(proc.stdout)
    return "".join(printed)


def _same_output(expected: Block, printed: str | None) -> None:
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip("\n").splitlines()]

    if printed is None:
        raise AssertionError(f"{expected.where}: an output block must follow a block that runs")
    if lines(printed) != lines(expected.code):
        raise AssertionError(
            f"{expected.where}: the block before printed something else:\n--- printed\n{printed}"
            f"--- the page shows\n{expected.code}"
        )


def run_blocks(blocks: list[Block], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the runnable blocks in order in ``workdir``; returns how many ran."""
    import torch

    _check_languages(blocks)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    shutil.copytree(ROOT / "diagrams", workdir / "diagrams", dirs_exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    before = set(sys.modules)
    ran = 0
    printed: str | None = None
    try:
        for block in blocks:
            if block.output:
                _same_output(block, printed)
            if not block.runs:
                continue
            if block.lang in PYTHON:
                printed = _run_python(block, namespace, workdir)
            else:
                printed = _run_shell(block, workdir)
            ran += 1
    finally:
        torch.set_num_threads(threads)
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(workdir)):
                del sys.modules[name]
    return ran


PAGES = sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_every_code_block_of_the_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's Python and statetrainer blocks run in order in a temporary directory and succeed."""
    run_blocks(blocks_of(page), tmp_path, monkeypatch)


def test_the_docs_have_code_and_few_no_run_blocks() -> None:
    """The runner sees the docs' blocks; blocks exempted from running are rare and say why."""
    blocks = [b for page in PAGES for b in blocks_of(page)]
    runnable = [b for b in blocks if b.lang in PYTHON | SHELL]
    exempt = [b for b in runnable if b.no_run is not None]
    assert len(runnable) >= 20, "the docs' code blocks were not found"
    assert len(exempt) <= max(5, len(runnable) // 10), [f"{b.where}: {b.no_run}" for b in exempt]


def test_the_marker_syntax_is_enforced(tmp_path: Path) -> None:
    """A misspelt marker, a marker without a reason, or a fence without a language is an error."""
    page = tmp_path / "page.md"
    for text, match in (
        ("<!-- docs: norun (x) -->\n```python\npass\n```\n", "unknown docs marker"),
        ("<!-- docs: no-run () -->\n```python\npass\n```\n", "unknown docs marker"),
        ("<!-- docs: no-run (a reason) -->\n\ntext\n```python\npass\n```\n", "right before a code fence"),
        ("<!-- docs: output -->\n```python\npass\n```\n", "marks a text block"),
    ):
        page.write_text(text)
        with pytest.raises(ValueError, match=match):
            blocks_of(page)
    page.write_text("```\npass\n```\n")
    with pytest.raises(AssertionError, match="neither run"):
        _check_languages(blocks_of(page))
    page.write_text("<!-- docs: no-run (needs a GPU) -->\n```python\nraise SystemExit\n```\n")
    [block] = blocks_of(page)
    assert block.no_run == "needs a GPU" and not block.runs


def test_shell_blocks_may_only_run_statetrainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell command other than statetrainer fails the page unless its block is marked no-run."""
    page = tmp_path / "page.md"
    page.write_text("```bash\nrm -rf somewhere  # not ours to run\n```\n")
    with pytest.raises(AssertionError, match="not a statetrainer command"):
        run_blocks(blocks_of(page), tmp_path, monkeypatch)
    assert list(shell_commands("statetrainer diagram train \\\n  --format dot  # a comment\n")) == [
        ["statetrainer", "diagram", "train", "--format", "dot"]
    ]


# -- the hook table of the lifecycles page ---------------------------------------------------

HOOK_TABLE_HEADING = "## Every state and its hook"


def hook_table_states(page: Path) -> list[str]:
    """The state names in the first column of the hook table (rows like ``| `name` | ...``)."""
    text = page.read_text()
    assert HOOK_TABLE_HEADING in text, f"{page} has no {HOOK_TABLE_HEADING!r} section"
    section = text.split(HOOK_TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and re.fullmatch(r"`\w+`", cells[0]):
            names.append(cells[0].strip("`"))
    return names


def test_the_hook_table_lists_every_state_of_the_built_in_lifecycles() -> None:
    """Each state of train, evaluate and test has exactly one row, and every row is a state."""
    from statetrainer import lifecycles

    states = {name for spec in lifecycles.BUILTIN.values() for name in spec.state_names}
    rows = hook_table_states(DOCS / "lifecycles.md")
    duplicates = sorted({r for r in rows if rows.count(r) > 1})
    assert not duplicates, f"states listed twice: {duplicates}"
    assert sorted(states - set(rows)) == [], "states missing from the hook table"
    assert sorted(set(rows) - states) == [], "rows that are not states of a built-in lifecycle"


# -- the README --------------------------------------------------------------------------------

def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python blocks run in order in one namespace (its shell blocks set up the repo)."""
    blocks = [b for b in blocks_of(README) if b.lang in PYTHON]
    assert run_blocks(blocks, tmp_path, monkeypatch) == len([b for b in blocks if b.runs])
