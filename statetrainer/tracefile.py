"""``trace.jsonl``: the run directory's trace, written in chunks straight from the rings.

Format ``statetrainer.trace/2``: each line is one JSON object holding the entries recorded
since the previous line — written at each epoch's close, by the status sampler and at a
run's end — as columns, so that writing costs a few C-level copies per entry, not a JSON
object each (format 1 did; it cost about 20x the driver per batch)::

    {"format": "statetrainer.trace/2", "run_id": "3f2a...", "seq": 1200, "count": 300,
     "keys": {"0": [LIFECYCLE, [STATE0, STATE1, ...]]},
     "code": "<base64 int32: (edge index + 1) << 16 | state index>",
     "batch": "<base64 int32, -1: none>",
     "epoch": [[1, 240], [2, 60]],          # run lengths: value (null: none), count
     "meta": [[0, 300]],                    # run lengths: depth << 16 | key id
     "notes": {"1200": "resume"}}

:func:`read` turns lines of either format back into entries (``seq``, ``lifecycle``,
``state``, ``epoch``, ``batch``, ``depth``, ``note``, ``edge``, ``run_id``), the fields of
format 1's lines. ``statetrainer trace RUN_DIR`` prints them one per line. Torch-free.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

FORMAT = "statetrainer.trace/2"
_SHIFT, _MASK = 16, (1 << 16) - 1


def _column(values: list[int]) -> str:
    # struct converts each int directly (array("i", ...) parses an argument format per item)
    return base64.b64encode(struct.pack(f"<{len(values)}i", *values)).decode("ascii")


def _runs(values: list[Any]) -> list[list[Any]]:
    """``[value, count]`` runs. A column holds few runs (an epoch, a depth): each is found with
    C-level counts, falling back to groupby when a value comes back after another."""
    out: list[list[Any]] = []
    i, n = 0, len(values)
    while i < n:
        rest = values[i:] if i else values
        value = rest[0]
        count = rest.count(value)
        if count > 1 and rest[:count].count(value) != count:
            return [[v, len(list(group))] for v, group in itertools.groupby(values)]
        out.append([value, count])
        i += count
    return out


def _window(ring: list[Any], i: int, count: int) -> list[Any]:
    stop = i + count
    return ring[i:stop] if stop <= len(ring) else ring[i:] + ring[: stop - len(ring)]


class Chunk(NamedTuple):
    """A line of ``trace.jsonl``, the sequence number after its last entry, and the entries per
    ``(lifecycle, state)`` among those from ``count_from`` on."""

    line: str
    end: int
    visits: Counter[tuple[str, str]]


def chunk(trace: Any, start: int, run_id: str | None, count_from: int | None = None,
          hold: int = 0) -> Chunk | None:
    """One line of ``trace.jsonl`` holding ``trace``'s entries from sequence number ``start``
    (or from its oldest kept entry), less the newest ``hold``; ``None`` when there is none
    yet. Its entries from ``count_from`` (default: all of them) are counted per state, in C.

    Safe from another thread: the driver writes an entry's four rings before it advances
    the ring position, and a window the driver lapped while it was being copied is copied
    again from later on.
    """
    for _ in range(3):
        now = trace.total
        total, first = now - hold, max(start, now - len(trace))
        count = total - first
        if count <= 0:
            return None
        i, size = trace._index(first), trace.maxlen
        codes, batches, epochs, metas = (
            _window(r, i, count) for r in (trace._code, trace._batch, trace._epoch, trace._meta))
        if trace.total - first <= size:  # nothing in the window was overwritten meanwhile
            break
    else:
        return None
    meta_runs = _runs(metas)
    keys = {str(k): [trace._keys[k][-1], list(trace._keys[k][:-1])] for k in {m & _MASK for m, _ in meta_runs}}
    notes = {str(s): n for s, n in list(trace._notes.items()) if first <= s < total}
    head = json.dumps({"format": FORMAT, "run_id": run_id, "seq": first, "count": count, "keys": keys,
                       "epoch": _runs(epochs), "meta": meta_runs, "notes": notes}, separators=(",", ":"))
    # base64 needs no escaping: the columns are spliced in rather than encoded by json
    line = f'{head[:-1]},"code":"{_column(codes)}","batch":"{_column(batches)}"}}\n'
    skip = 0 if count_from is None else max(0, count_from - first)
    return Chunk(line, total, _count(trace, codes, meta_runs, skip))


def _count(trace: Any, codes: list[int], meta_runs: list[list[Any]], skip: int) -> Counter[tuple[str, str]]:
    """Entries per ``(lifecycle, state)``, one C-level Counter per run of equal depth/lifecycle."""
    out: Counter[tuple[str, str]] = Counter()
    pos = 0
    for meta, n in meta_runs:
        lo, hi = max(pos, skip), pos + n
        pos = hi
        if lo >= hi:
            continue
        key = trace._keys[meta & _MASK]
        for code, k in Counter(codes[lo:hi]).items():
            out[key[-1], key[code & _MASK]] += k
    return out


def _decode_column(text: str) -> array[int]:
    values = array("i")
    values.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _expand(runs: list[list[Any]]) -> list[Any]:
    return [value for value, count in runs for _ in range(int(count))]


def entries(line: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries one parsed line holds (a format-2 chunk, or a format-1 entry)."""
    if line.get("format") != FORMAT:
        return [line] if isinstance(line.get("state"), str) else []
    seq, count = int(line["seq"]), int(line["count"])
    codes, batches = _decode_column(line["code"]), _decode_column(line["batch"])
    epochs, metas = _expand(line["epoch"]), _expand(line["meta"])
    if not len(codes) == len(batches) == len(epochs) == len(metas) == count:
        raise ValueError(f"a trace chunk at seq {seq} says {count} entries but holds other column lengths")
    keys, notes, run_id = line["keys"], line.get("notes") or {}, line.get("run_id")
    out = []
    for n, (code, batch, epoch, meta) in enumerate(zip(codes, batches, epochs, metas)):
        lifecycle, states = keys[str(meta & _MASK)]
        edge = (code >> _SHIFT) - 1
        out.append({
            "seq": seq + n, "lifecycle": lifecycle, "state": states[code & _MASK], "epoch": epoch,
            "batch": None if batch < 0 else batch, "depth": meta >> 16, "note": notes.get(str(seq + n)),
            "edge": None if edge < 0 else edge, "run_id": run_id,
        })
    return out


def parse(lines: Iterable[str | bytes]) -> tuple[list[dict[str, Any]], int]:
    """The entries of ``trace.jsonl`` lines, and how many lines were not trace lines."""
    out: list[dict[str, Any]] = []
    bad = 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
            found = entries(value) if isinstance(value, dict) else []
        except (ValueError, KeyError, TypeError, IndexError):
            found = []
        if not found:
            bad += 1
        out.extend(found)
    return out, bad


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every entry of a ``trace.jsonl`` file (format 1 or 2); raises ``ValueError`` naming the
    first line that is not a trace line."""
    found: list[dict[str, Any]] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
            items = entries(value) if isinstance(value, dict) else []
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"{path}:{number} is not a trace line ({exc})") from None
        if not items:
            raise ValueError(f"{path}:{number} is not a trace line: neither a statetrainer.trace/2 chunk "
                             f"nor an entry with a state")
        found.extend(items)
    return found


def iter_lines(found: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Entries as format-1 JSON lines (one object per entry), for people and ``jq``."""
    for entry in found:
        yield json.dumps(entry) + "\n"
