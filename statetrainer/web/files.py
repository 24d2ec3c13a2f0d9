"""Safe, cached, bounded reads of run directories: the only place the web view opens files.

Every file the server reads goes through :class:`Roots`: a run is named by an id
(``"<root index>:<relative path>"``), resolved with :func:`os.path.realpath` and refused
unless it stays inside the real path of one of the directories given on the command line.
That one check covers ``..``, URL-encoded ``..`` (decoded before it gets here), absolute
paths and symlinks pointing out; files are opened by fixed names only.

Reads are cheap enough for hundreds of runs polled every second: parsed values are cached
by the file's ``(inode, size, mtime)`` signature, and ``trace.jsonl`` is read from its
end, a bounded number of bytes at a time (:func:`tail_lines`), never whole.
Torch-free.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: A file's identity for caching: changes whenever the writer replaces or appends to it.
Signature = tuple[int, int, int]

#: Files of a run directory the server may hand out as they are (``/api/file``).
RAW_FILES = frozenset({
    "status.json", "run.json", "trace.jsonl", "events.jsonl", "metrics.csv", "lifecycles.json",
    "lifecycle.svg", "lifecycle.dot", "dumps.txt",
})


class Refused(Exception):
    """A request named something outside the served run directories (answered 404)."""


def signature(path: Path) -> Signature | None:
    """``(inode, size, mtime_ns)`` of ``path``, or ``None`` when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def inside(path: str, root: str) -> bool:
    """True when the real path ``path`` is ``root`` or below it."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives, or a mix of absolute and relative
        return False


class Roots:
    """The run directories given on the command line, and the one door into them."""

    def __init__(self, folders: list[str | os.PathLike[str]]) -> None:
        self.paths = [Path(os.path.realpath(f)) for f in folders]
        self.labels = [str(f) for f in folders]

    def run_id(self, root: int, folder: Path) -> str:
        """The id of the run directory ``folder`` found under root number ``root``."""
        rel = folder.relative_to(self.paths[root]).as_posix()
        return f"{root}:{rel}"

    def resolve(self, run_id: str) -> Path:
        """The real path of the run directory ``run_id`` names; :class:`Refused` when it is not one."""
        index, sep, rel = run_id.partition(":")
        if not sep or not index.isdigit() or int(index) >= len(self.paths):
            raise Refused(f"no run {run_id!r}")
        if "\x00" in rel or "\\" in rel or rel.startswith("/") or ".." in rel.split("/"):
            raise Refused(f"no run {run_id!r}")
        root = str(self.paths[int(index)])
        real = os.path.realpath(os.path.join(root, rel))
        if not inside(real, root) or not os.path.isdir(real):
            raise Refused(f"no run {run_id!r}")
        return Path(real)

    def file(self, run: Path, name: str) -> Path:
        """``run/name`` when it stays inside the served roots (a symlink out is refused).

        ``run`` must be a real path from :meth:`resolve` or :func:`~statetrainer.web.runs.discover`;
        then only a symlinked file needs resolving (the common case costs one ``lstat``).
        """
        if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
            raise Refused(f"no file {name!r}")
        path = run / name
        try:
            if not stat.S_ISLNK(os.lstat(path).st_mode):
                return path
        except OSError:
            return path  # missing: nothing to follow
        real = os.path.realpath(path)
        if not any(inside(real, str(root)) for root in self.paths):
            raise Refused(f"{name!r} points outside the served run directories")
        return Path(real)


class Cache:
    """Values computed from files, kept until a file's signature changes (thread-safe, bounded)."""

    def __init__(self, size: int = 2048) -> None:
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: tuple[Any, ...], sig: Any, compute: Callable[[], T]) -> T:
        """``compute()``'s value for ``key``, recomputed only when ``sig`` differs from the cached one."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == sig:
                self._items.move_to_end(key)
                return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._items[key] = (sig, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def read_json(path: Path, cache: Cache) -> tuple[Any, str | None]:
    """``(value, None)`` for a JSON file, or ``(None, problem)`` when it is missing or bad."""
    sig = signature(path)
    if sig is None:
        return None, f"{path.name} does not exist"

    def load() -> tuple[Any, str | None]:
        try:
            return json.loads(path.read_bytes()), None
        except (OSError, ValueError) as exc:
            return None, f"{path.name} is unreadable: {exc}"

    return cache.get(("json", str(path)), sig, load)


#: How much of a file :func:`tail_lines` reads at most per call (about 20,000 trace lines).
TAIL_BYTES = 4 << 20
_BLOCK = 64 << 10


def tail_lines(path: Path, limit: int, before: int | None = None,
               max_bytes: int = TAIL_BYTES) -> tuple[list[bytes], int, int, int]:
    """The last ``limit`` complete lines of ``path`` ending at byte ``before`` (default: the end).

    Returns ``(lines, start, end, size)``: ``start`` is the byte offset of the first line
    returned (pass it as ``before`` for the lines above), ``end`` the offset after the
    last. A last line without its newline is being written: it is left out. Reads at most
    ``max_bytes``, backwards from the end, whatever the file's size.
    """
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        end = size if before is None else max(0, min(before, size))
        data, start = _read_back(handle, end, limit, max_bytes)
    if end == size and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1  # the half-written last line
        end -= len(data) - cut
        data = data[:cut]
    if start > 0:  # the first line started above the window
        first = data.find(b"\n") + 1
        start, data = (start + first, data[first:]) if first else (end, b"")
    lines = data.split(b"\n")[:-1] if data else []
    if len(lines) > limit:
        dropped = lines[: len(lines) - limit]
        start += sum(len(x) + 1 for x in dropped)
        lines = lines[len(lines) - limit:]
    return lines, start, end, size


def _read_back(handle: Any, end: int, limit: int, max_bytes: int) -> tuple[bytes, int]:
    """Bytes ending at ``end`` holding at least ``limit + 1`` newlines (or the file's start, or ``max_bytes``)."""
    chunks: list[bytes] = []
    pos, newlines = end, 0
    while pos > 0 and newlines <= limit and end - pos < max_bytes:
        step = min(_BLOCK, pos, max_bytes - (end - pos))
        pos -= step
        handle.seek(pos)
        chunk = handle.read(step)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
    return b"".join(reversed(chunks)), pos
