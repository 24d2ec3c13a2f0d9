"""What the web view knows about a run: found on disk, read from its files, judged alive or dead.

A run is a directory holding ``status.json`` (or, before its first write, ``run.json``).
:func:`discover` finds them under the served roots; :class:`RunReader` turns one into the
JSON the pages show: the status file as written, plus what the server derives from it
(``died`` when the status says running but the process is gone, progress, rate, ETA,
where and why a run stopped, each data-parallel rank's position). A missing or broken file
becomes a ``problems`` entry on that run, never an exception out of this module.

Fields this module reads from ``status.json`` beyond today's are optional and used when
present: ``run_id``, ``host``, ``rank``, ``world_size``, ``stop_reason``,
``metrics_history``. Torch-free.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from statetrainer.web.files import Cache, Refused, Roots, read_json, signature, tail_lines

STATUS = "status.json"
RUN = "run.json"
METRICS = "metrics.csv"
EVENTS = "events.jsonl"
TRACE = "trace.jsonl"
LIFECYCLES = "lifecycles.json"
STATUS_FORMAT = "statetrainer.status/1"
#: Per-rank status files a data-parallel run may write beside ``status.json``.
RANK_FILE = re.compile(r"^status\.rank(\d+)\.json$")
#: Folders never searched for runs: a run's own checkpoints, hidden and tool folders.
SKIP_DIRS = frozenset({"checkpoints", "__pycache__", "node_modules", "site-packages"})
LIVE = ("running", "stopping")
MAX_DEPTH = 8
MAX_DIRS = 50_000


# -- finding runs ---------------------------------------------------------------------


def discover(roots: Roots) -> list[tuple[int, Path]]:
    """Every run directory under the roots, ``(root index, path)``, in a stable order.

    Symlinked folders are not followed (a link could lead out of the roots, or round in
    a loop); a run's own subfolders are not searched.
    """
    found: list[tuple[int, Path]] = []
    budget = [MAX_DIRS]
    for index, root in enumerate(roots.paths):
        found += [(index, p) for p in _walk(root, 0, budget)]
    return found


def _walk(folder: Path, depth: int, budget: list[int]) -> Iterator[Path]:
    budget[0] -= 1
    if budget[0] < 0:
        return
    if (folder / STATUS).is_file() or (folder / RUN).is_file():
        yield folder
        return
    if depth >= MAX_DEPTH:
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name in SKIP_DIRS:
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            yield from _walk(Path(entry.path), depth + 1, budget)


# -- liveness -------------------------------------------------------------------------


def process_alive(pid: int, since: float | None = None) -> bool:
    """True when process ``pid`` exists, is not a zombie and (on Linux) started before ``since``.

    The start-time check catches a pid the system has reused for another process since
    the run last wrote its status.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False
    return since is None or started is None or started <= since + 2.0


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """``(state letter, start time as epoch seconds)`` from ``/proc``; ``None`` off Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    boot = _boot_time()
    if len(fields) < 20 or boot is None:
        return (fields[0] if fields else "?"), None
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


_BOOT: list[float | None] = []


def _boot_time() -> float | None:
    if not _BOOT:
        try:
            line = next(x for x in Path("/proc/stat").read_text().splitlines() if x.startswith("btime"))
            _BOOT.append(float(line.split()[1]))
        except (OSError, StopIteration, ValueError, IndexError):
            _BOOT.append(None)
    return _BOOT[0]


def liveness(status: dict[str, Any]) -> tuple[str, str | None]:
    """The status to show and, for ``died`` or an unchecked host, why.

    ``running``/``stopping`` becomes ``died`` when the status was written on this host
    (``host`` matches, or is absent) and its ``pid`` is gone.
    """
    raw = str(status.get("status") or "unknown")
    if raw not in LIVE:
        return raw, None
    host = status.get("host")
    if isinstance(host, str) and host and host != socket.gethostname():
        return raw, f"written on host {host!r}: the process cannot be checked from {socket.gethostname()!r}"
    pid = status.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return raw, None
    updated = status.get("updated")
    since = float(updated) if isinstance(updated, (int, float)) else None
    if process_alive(pid, since):
        return raw, None
    return "died", f"status.json says {raw}, but process {pid} is gone"


# -- numbers derived from a status ----------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def progress(status: dict[str, Any], shown: str) -> float | None:
    """Fraction of the training done, from epoch/num_epochs and batch/batches; 1 when finished."""
    if shown == "finished":
        return 1.0
    epoch, epochs = _number(status.get("epoch")), _number(status.get("num_epochs"))
    if epoch is None or not epochs:
        return None
    batch, batches = _number(status.get("batch")), _number(status.get("batches"))
    within = (batch + 1) / batches if batch is not None and batches else 0.0
    feed = status.get("feed")
    if feed is not None and status.get("step_feed") is not None and feed != status.get("step_feed"):
        within = 1.0  # another pass (an evaluation) after the epoch's training items
    return max(0.0, min(1.0, (epoch - 1 + min(within, 1.0)) / epochs))


class RateMeter:
    """Training steps per second, from the statuses the server has seen (robust to resumes).

    Falls back to ``global_step / elapsed`` until two samples a second apart exist.
    """

    WINDOW = 30.0

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def rate(self, key: str, status: dict[str, Any]) -> float | None:
        """Steps per second for the run ``key`` whose latest status is ``status``."""
        step, updated = _number(status.get("global_step")), _number(status.get("updated"))
        if step is None or status.get("epoch") is None:
            return None  # not in a lifecycle that counts training steps (testing, or not started)
        if updated is not None and status.get("status") in LIVE:
            measured = self._add(key, updated, step)
            if measured is not None:
                return measured
        elapsed = _number(status.get("elapsed"))
        return step / elapsed if elapsed and step else None

    def _add(self, key: str, updated: float, step: float) -> float | None:
        with self._lock:
            samples = self._samples.setdefault(key, deque(maxlen=64))
            if samples and (updated < samples[-1][0] or step < samples[-1][1]):
                samples.clear()  # a new run in the same folder, or a resume from an earlier step
            if not samples or updated > samples[-1][0]:
                samples.append((updated, step))
            while len(samples) > 2 and updated - samples[0][0] > self.WINDOW:
                samples.popleft()
            (t0, s0), (t1, s1) = samples[0], samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 - t0 >= 1.0 and s1 > s0 else None


def eta(status: dict[str, Any], rate: float | None, shown: str) -> float | None:
    """Seconds left at ``rate`` while running, when epochs and batches per epoch are known."""
    step = _number(status.get("global_step"))
    batches, epochs = _number(status.get("batches")), _number(status.get("num_epochs"))
    if shown not in LIVE or not rate or step is None or not batches or not epochs:
        return None
    if status.get("epoch") is None:
        return None  # not in the training lifecycle (testing): no step count to reach
    return max(0.0, (batches * epochs - step) / rate)


# -- reading one run ------------------------------------------------------------------


class RunReader:
    """Reads runs for the server: summaries for the runs page, details for a run page."""

    def __init__(self, roots: Roots, cache: Cache) -> None:
        self.roots = roots
        self.cache = cache
        self.rates = RateMeter()
        self.host = socket.gethostname()

    def status(self, run: Path) -> tuple[dict[str, Any] | None, list[str]]:
        """The parsed ``status.json`` and the problems found reading it."""
        try:
            path = self.roots.file(run, STATUS)
        except Refused as exc:
            return None, [str(exc)]
        data, problem = read_json(path, self.cache)
        if problem is not None:
            if not path.exists() and (run / RUN).exists():
                return None, ["the run has not written status.json yet"]
            return None, [problem]
        if not isinstance(data, dict) or data.get("format") != STATUS_FORMAT:
            return None, [f"status.json was not written by statetrainer ({STATUS_FORMAT!r} expected)"]
        return data, []

    def summary(self, run_id: str, run: Path) -> dict[str, Any]:
        """One row of the runs page."""
        data, problems = self.status(run)
        row: dict[str, Any] = {"id": run_id, "name": self.name(run_id), "root": self.root(run_id),
                               "problems": problems}
        if data is None:
            row["status"] = "error" if (run / STATUS).exists() else "starting"
            row["trainer"] = self._run_json_trainer(run)
            return row
        shown, why = liveness(data)
        rate = self.rates.rate(run_id, data)
        row.update({key: data.get(key) for key in (
            "trainer", "lifecycle", "state", "epoch", "num_epochs", "batch", "batches", "global_step",
            "updated", "pid", "host", "run_id", "elapsed")})
        row.update(status=shown, raw_status=data.get("status"), why=why, rate=rate,
                   eta=eta(data, rate, shown), progress=progress(data, shown))
        if isinstance(data.get("error"), dict):
            row["error_state"] = data["error"].get("state")
        return row

    def name(self, run_id: str) -> str:
        """A readable name: the path below its root (the root's own name for a root that is a run)."""
        index, _, rel = run_id.partition(":")
        label = self.roots.labels[int(index)].rstrip("/") or "/"
        return (Path(label).name or label) if rel in ("", ".") else rel

    def root(self, run_id: str) -> str:
        """The root a run was found under, as given on the command line."""
        return self.roots.labels[int(run_id.partition(":")[0])]

    def _run_json_trainer(self, run: Path) -> str | None:
        try:
            data, _ = read_json(self.roots.file(run, RUN), self.cache)
        except Refused:
            return None
        return data.get("trainer") if isinstance(data, dict) else None

    def detail(self, run_id: str, run: Path) -> dict[str, Any]:
        """Everything the run page shows except the diagram, metrics and trace."""
        data, problems = self.status(run)
        out: dict[str, Any] = {"run": self.summary(run_id, run), "status": data, "problems": problems,
                               "now": time.time(), "host": self.host, "signatures": self.signatures(run)}
        if data is None:
            return out
        shown = out["run"]["status"]
        out["ranks"], out["ranks_note"] = self.ranks(run, data)
        if shown == "stopped":
            out["stopped"] = self.stop_info(run, data)
        if shown == "died":
            out["died"] = {"state": data.get("state"), "epoch": data.get("epoch"), "batch": data.get("batch"),
                           "pid": data.get("pid"), "updated": data.get("updated"), "why": out["run"]["why"]}
        return out

    def signatures(self, run: Path) -> dict[str, str | None]:
        """A short tag per side file, so a page refetches only what changed."""
        out: dict[str, str | None] = {}
        for name in (TRACE, METRICS, LIFECYCLES, STATUS, RUN, EVENTS):
            try:
                sig = signature(self.roots.file(run, name))
            except Refused:
                sig = None
            out[name] = None if sig is None else "-".join(str(x) for x in sig)
        return out

    def ranks(self, run: Path, status: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """Each rank's position (``status.rank<N>.json`` files) and a note on what is missing."""
        rows = [_position(status, status.get("rank", 0))]
        try:
            names = sorted(e.name for e in os.scandir(run) if RANK_FILE.match(e.name))
        except OSError:
            names = []
        for name in names:
            rank = int(RANK_FILE.match(name).group(1))  # type: ignore[union-attr]
            if rank == rows[0]["rank"]:
                continue
            data, problem = read_json(self.roots.file(run, name), self.cache)
            row = _position(data if isinstance(data, dict) else {}, rank)
            row["problem"] = problem
            rows.append(row)
        world = status.get("world_size")
        note = None
        if isinstance(world, int) and world > len(rows):
            note = (f"data parallel over {world} ranks; only rank {rows[0]['rank']} writes its position "
                    f"(status.json), so the other ranks' positions are not shown")
        return rows, note

    def stop_info(self, run: Path, status: dict[str, Any]) -> dict[str, Any]:
        """Where a stopped run stopped, and why when the run recorded it."""
        reason = status.get("stop_reason")
        source = "status.json" if reason else None
        if not reason:
            reason = self._reason_from_events(run)
            source = EVENTS if reason else None
        return {"state": status.get("state"), "lifecycle": status.get("lifecycle"), "epoch": status.get("epoch"),
                "batch": status.get("batch"), "reason": reason, "source": source}

    def _reason_from_events(self, run: Path) -> str | None:
        try:
            path = self.roots.file(run, EVENTS)
            lines = tail_lines(path, 200)[0] if path.is_file() else []
        except (Refused, OSError):
            return None
        import json

        for line in reversed(lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            for key in ("stop_reason", "reason", "signal"):
                if isinstance(event, dict) and event.get(key):
                    return f"{event.get('event', 'event')}: {key} {event[key]}"
        return None

    # -- metrics ------------------------------------------------------------------------

    def metrics(self, run: Path) -> dict[str, Any]:
        """Per-epoch metrics: ``metrics.csv``, else a ``metrics_history`` in status, else the last epoch."""
        path = self.roots.file(run, METRICS)
        sig = signature(path)
        if sig is not None:
            table = self.cache.get(("metrics", str(path)), sig, lambda: _read_csv(path))
            if table.get("epochs") or table.get("problem"):
                return table
        status, _ = self.status(run)
        status = status or {}
        history = status.get("metrics_history")
        if history:
            return _from_history(history)
        last = status.get("metrics")
        if isinstance(last, dict) and last:
            return _table([{"epoch": status.get("epoch"), **last}], "status.json (the last epoch only: "
                          "attach CSVLogger for every epoch)")
        return _table([], None)


def _position(status: dict[str, Any], rank: Any) -> dict[str, Any]:
    keys = ("lifecycle", "state", "epoch", "batch", "global_step", "status", "updated")
    return {"rank": rank if isinstance(rank, int) else 0, **{k: status.get(k) for k in keys}}


def _read_csv(path: Path) -> dict[str, Any]:
    """``metrics.csv`` as columns; a file too large is read from its end (header kept)."""
    try:
        with path.open("rb") as handle:
            header = handle.readline()
        lines = tail_lines(path, 10_000)[0]
        text = (header + b"".join(x + b"\n" for x in lines if x != header.rstrip(b"\n"))).decode()
        rows = list(csv.DictReader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return {**_table([], METRICS), "problem": f"metrics.csv is unreadable: {exc}"}
    return _table(rows, METRICS)


def _from_history(history: Any) -> dict[str, Any]:
    source = "status.json metrics_history"
    if isinstance(history, list):
        return _table([r for r in history if isinstance(r, dict)], source)
    if isinstance(history, dict):  # {name: [values per epoch]}
        columns = {k: v for k, v in history.items() if isinstance(v, list)}
        count = max((len(v) for v in columns.values()), default=0)
        rows = [{"epoch": i + 1, **{k: v[i] for k, v in columns.items() if i < len(v)}} for i in range(count)]
        return _table(rows, source)
    return {**_table([], source), "problem": "metrics_history in status.json is neither a list nor a mapping"}


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _table(rows: list[dict[str, Any]], source: str | None) -> dict[str, Any]:
    """Columns per metric and the charts to draw: ``train_x`` and ``valid_x`` share one chart."""
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k != "epoch" and k not in names and k is not None]
    epochs = [_float(r.get("epoch")) for r in rows]
    series = {n: [_float(r.get(n)) for r in rows] for n in names}
    series = {n: v for n, v in series.items() if any(x is not None for x in v)}
    return {"source": source, "epochs": [e if e is not None else i + 1 for i, e in enumerate(epochs)],
            "series": series, "charts": charts(list(series)), "problem": None}


_SPLITS = ("train_", "valid_", "val_", "eval_", "test_")


def charts(names: list[str]) -> list[dict[str, Any]]:
    """Group metric names into charts: the same name after ``train_``/``valid_``/``val_``/``test_`` pairs."""
    groups: dict[str, list[str]] = {}
    for name in names:
        key = next((name[len(p):] for p in _SPLITS if name.startswith(p) and len(name) > len(p)), name)
        if name == "seconds":
            key = "seconds per epoch"
        groups.setdefault(key, []).append(name)
    return [{"title": title, "series": members} for title, members in groups.items()]
