"""Inspect a run: frozen snapshots, and the run directory another terminal can read.

A run directory holds ``status.json`` (replaced atomically at lifecycle boundaries and at
most about twice a second, never once per batch), ``trace.jsonl`` (the bounded trace,
appended at boundaries) and, after a failure, the failing state and traceback. Both carry
the run's id (``run_id``: in ``status.json``, and on every trace line), and ``status.json``
the writer's ``pid`` and ``host``, so a reader can tell a dead run from a live one
(:func:`liveness`). Readers validate what they read (:func:`check_status`,
:func:`read_trace`): a hand-edited or foreign file is a one-line error naming the file,
the field and what to do. Under data parallel a rank other than 0 that fails writes
``failure.rank<N>.json``; rank 0 records the first failure in time as the run's error.
Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

from statetrainer import tracefile
from statetrainer._errors import ConfigurationError

FORMAT = "statetrainer.status/1"
STATUS_FILE = "status.json"
TRACE_FILE = "trace.jsonl"
#: The run's own lifecycles (custom ones included), written when a run starts.
LIFECYCLES_FILE = "lifecycles.json"
LIFECYCLES_FORMAT = "statetrainer.lifecycles/1"


@attrs.frozen
class Snapshot:
    """Where a run is: lifecycle, state, epoch, batch, status, counts and metrics."""

    lifecycle: str | None
    state: str | None
    enclosing: tuple[str, ...]
    previous: str | None
    epoch: int | None
    num_epochs: int | None
    batch: int | None
    batches: int | None
    global_step: int
    status: str
    depth: int
    metrics: dict[str, float]
    elapsed: float
    transitions: int
    visits: dict[str, int]
    seconds: dict[str, float]
    #: The data feed ``batch`` indexes (the pass opened last: ``valid`` during an evaluation),
    #: its length when known, and the feed whose items are training steps (``batches`` is its length).
    feed: str | None = None
    feed_items: int | None = None
    step_feed: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        from statetrainer import diagrams, lifecycles

        if self.lifecycle in lifecycles.BUILTIN and self.state:
            return diagrams.mimebundle(lifecycles.BUILTIN[self.lifecycle], highlight=self.state)
        return {"text/plain": repr(self)}


def snapshot(trainer: Any, visits: dict[str, int] | None = None) -> Snapshot:
    """A frozen :class:`Snapshot` of ``trainer`` now.

    ``visits`` (entries per state) are counted over the kept trace, in C, unless given (the
    run directory's writer counts them from the chunks it writes: O(states) per status).
    """
    rt = trainer._statetrainer
    pos = rt.driver.position
    spec = rt.spec if rt.spec is not None and rt.spec.name == pos.lifecycle else None
    if spec is None and pos.lifecycle is not None:
        spec = type(trainer).lifecycles().get(pos.lifecycle)
    state = pos.state_name
    enclosing = spec.enclosing(state) if spec is not None and state in spec.state_names else ()
    epochs = rt.spec.epochs.total if rt.spec is not None and rt.spec.with_role("epoch_start") else None
    step_feed = rt.step_feed
    source = getattr(trainer, step_feed.spec.loader, None) if step_feed is not None and step_feed.spec.loader else None
    timers = [b for b in rt.bundles if type(b).__name__ == "StateTimer"]
    feed = rt.batch_feed if rt.batch_feed is not None else step_feed
    return Snapshot(
        lifecycle=pos.lifecycle,
        state=state,
        enclosing=enclosing,
        previous=_previous(rt.driver.trace),
        epoch=pos.epoch,
        num_epochs=getattr(trainer, epochs, None) if epochs else None,
        batch=None if pos.batch < 0 else pos.batch,
        batches=_length(source),
        global_step=pos.global_step,
        status=pos.status,
        depth=pos.depth,
        metrics=rt.metrics.last,
        elapsed=round(time.monotonic() - rt.started, 3) if rt.started else 0.0,
        transitions=rt.driver.trace.total,
        visits=rt.driver.trace.state_counts() if visits is None else visits,
        seconds={k: round(v, 6) for k, v in dict(timers[0].seconds).items()} if timers else {},
        feed=feed.spec.name if feed is not None else None,
        feed_items=_feed_length(trainer, feed) if feed is not None else None,
        step_feed=step_feed.spec.name if step_feed is not None else None,
    )


def _feed_length(trainer: Any, feed: Any) -> int | None:
    """Items in a pass over ``feed``: its loader's length, else its iterable's (when it has one)."""
    for attr in (feed.spec.loader, feed.spec.iterable):
        found = _length(getattr(trainer, attr, None)) if attr else None
        if found is not None:
            return found
    return None


def _previous(trace: Any) -> str | None:
    last = trace.tail(2)
    return last[0].state if len(last) == 2 else None


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temp file and rename (safe from several threads)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":"), default=str))  # the C encoder (indent= is Python)
    os.replace(tmp, path)


class RunRecorder:
    """Keeps a run directory up to date while a run is active.

    ``lifecycles.json`` is written when a run starts; ``status.json`` at the start, at
    each epoch's close, at the end, and in between by a sampler thread that reads the live
    position every ``min_interval`` seconds (so it shows where the run really is — a long
    ``training_step``, an evaluation — at no cost per batch); ``trace.jsonl`` is appended
    (chunks of :mod:`statetrainer.tracefile`) by the same writes.
    """

    def __init__(self, trainer: Any, folder: str | os.PathLike[str], min_interval: float = 0.5) -> None:
        self.trainer = trainer
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.min_interval = min_interval
        self._written = 0  # trace entries already in trace.jsonl (by sequence number)
        self._lines = 0
        self._visits: Counter[tuple[str, str]] = Counter()  # entries per (lifecycle, state) this run
        self._counted_from = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[Any, ...] = ()
        self._started_wall = time.time()

    def start(self) -> None:
        """A run starts: write the lifecycles and the status, start sampling the position."""
        self._started_wall = time.time()
        self._visits.clear()
        self._counted_from = self.trainer.trace.total
        _reserve(self.folder / RESERVE_FILE)
        write_json_atomic(self.folder / LIFECYCLES_FILE, lifecycles_data(self.trainer))
        self.write()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="statetrainer-status", daemon=True)
        self._thread.start()

    def stop(self, error: BaseException | None = None) -> None:
        """The run ended: stop sampling, write the final status (with the error) and trace.

        A write that fails (a full disk) is logged (``status_not_written``), never raised: it
        must not hide how the run ended.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        reserve = self.folder / RESERVE_FILE
        try:
            try:
                self.write(error)
            except OSError:
                if not reserve.exists():
                    raise
                reserve.unlink()  # a full disk: the room kept for this last status
                self.write(error)
        except OSError as exc:
            self.trainer._statetrainer.log.warning("status_not_written", folder=str(self.folder), error=str(exc))
        finally:
            with contextlib.suppress(OSError):
                reserve.unlink(missing_ok=True)

    def _sample(self) -> None:
        pos = self.trainer._statetrainer.driver.position
        interval = min(max(self.min_interval, 0.01), 3600.0)  # wait(inf) overflows time_t
        while not self._stop.wait(interval):
            now = (pos.state, pos.lifecycle, pos.batch, pos.epoch, pos.status, pos.global_step)
            if now != self._last:
                try:  # the trace too: trace.jsonl stays live, and no entry is lost in long epochs
                    self.write(hold=1)
                except OSError:  # a full disk must not kill the run from this thread
                    pass

    def write(self, error: BaseException | None = None, trace: bool = True, hold: int = 0) -> None:
        """Replace ``status.json`` (and, unless ``trace`` is false, append to ``trace.jsonl``) now.

        ``hold``: leave the newest entries out of ``trace.jsonl`` until the next write. The
        sampler thread holds one back: it may run between a state's entry and its
        bookkeeping, which still sets the entry's epoch and item.
        """
        with self._lock:
            pos = self.trainer._statetrainer.driver.position
            self._last = (pos.state, pos.lifecycle, pos.batch, pos.epoch, pos.status, pos.global_step)
            if trace:
                self._write_trace(hold)
            snap = snapshot(self.trainer, self._visits_by_state()).to_json()
            snap["format"] = FORMAT
            snap["trainer"] = f"{type(self.trainer).__module__}:{type(self.trainer).__qualname__}"
            snap["run_id"] = self.trainer._statetrainer.run_id
            snap["pid"] = os.getpid()
            snap["host"] = socket.gethostname()
            snap["updated"] = time.time()
            tail = self.trainer.trace.tail(8)
            snap["recent"] = [e.state for e in tail]
            snap["recent_edges"] = [e.edge for e in tail]
            rt = self.trainer._statetrainer
            # the last epochs only: a status write stays bounded however long the run
            snap["metrics_history"] = [dict(h) for h in rt.metrics.history[-STATUS_HISTORY:]]
            snap["stop_reason"] = rt.driver.control.stop_reason or rt.stop_reason if pos.status in (
                "stopping", "stopped") else None
            snap.update(_ranks())
            if error is not None:
                snap["error"] = first_failure(self.folder, _error_fields(error), self._started_wall)
            write_json_atomic(self.folder / STATUS_FILE, snap)

    def _visits_by_state(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, state), n in self._visits.items():
            out[state] = out.get(state, 0) + n
        return out

    def _write_trace(self, hold: int = 0) -> None:
        """Append the entries recorded since the last write as one chunk line
        (:mod:`statetrainer.tracefile`); past ``ROTATE_AT`` times the trace's size, rewrite the file
        (atomically) with the kept entries only."""
        trace = self.trainer.trace
        path = self.folder / TRACE_FILE
        run_id = self.trainer._statetrainer.run_id
        rotate = not path.exists() or self._lines + trace.total - self._written > ROTATE_AT * trace.maxlen
        made = tracefile.chunk(trace, 0 if rotate else self._written, run_id,
                               count_from=max(self._written, self._counted_from), hold=hold)
        if made is None:
            if not path.exists():
                path.touch()
            return
        line, end, visits = made
        self._visits.update(visits)
        if rotate:
            tmp = self.folder / f".{TRACE_FILE}.tmp"
            tmp.write_text(line)
            os.replace(tmp, path)
            self._lines = len(trace)
        else:
            with path.open("a") as handle:
                handle.write(line)
            self._lines += end - self._written
        self._written = end


#: ``trace.jsonl`` is cut back to the kept trace when it holds this many times the trace's size:
#: a rewrite costs as much as writing the kept entries again, so it is paid every
#: ``ROTATE_AT - 1`` trace sizes (a quarter of the file writes; the file stays under ~0.5 MB for
#: the default 10,000 entries).
ROTATE_AT = 5

#: Epochs of per-epoch metrics ``status.json`` carries (``metrics.csv`` holds them all).
STATUS_HISTORY = 100


#: Room kept on the run directory's disk while a run writes, so that the final status.json
#: (status ``failed``, with the error) can be written when the disk fills up.
RESERVE_FILE = ".reserve"
RESERVE_BYTES = 64 * 1024


def _reserve(path: Path) -> None:
    with contextlib.suppress(OSError):
        with path.open("wb") as handle:
            handle.write(bytes(RESERVE_BYTES))


def _ranks() -> dict[str, int]:
    """``rank`` and ``world_size`` under data parallel (empty otherwise; torch is not imported here)."""
    import sys

    if "torch.distributed" not in sys.modules:
        return {}
    from statetrainer import parallel

    return {"rank": parallel.rank(), "world_size": parallel.world_size()} if parallel.distributed() else {}


def _error_fields(error: BaseException) -> dict[str, Any]:
    return {
        "message": str(error),
        "state": getattr(error, "state", None),
        "callback": getattr(error, "callback", None),
        "epoch": getattr(error, "epoch", None),
        "batch": getattr(error, "batch", None),
        "traceback": "".join(traceback.format_exception(error)),
    }


# -- data parallel failures ---------------------------------------------------------------

FAILURE_FILE = "failure.rank{rank}.json"


def write_rank_failure(trainer: Any, folder: Path, error: BaseException) -> None:
    """A data-parallel rank other than 0 failed: record its error (rank 0 writes ``status.json``)."""
    from statetrainer import parallel

    fields = {**_error_fields(error), "rank": parallel.rank(), "time": time.time(),
              "run_id": trainer._statetrainer.run_id, "pid": os.getpid(), "host": socket.gethostname()}
    try:
        write_json_atomic(folder / FAILURE_FILE.format(rank=parallel.rank()), fields)
    except OSError:
        pass  # the rank's own error still reaches torchrun's output


def rank_failures(folder: str | os.PathLike[str], since: float = 0.0) -> list[dict[str, Any]]:
    """The failures other ranks recorded in ``folder`` at or after ``since``, the first one first."""
    found = []
    for path in Path(folder).glob("failure.rank*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        when = data.get("time") if isinstance(data, dict) else None
        if isinstance(when, (int, float)) and when >= since:
            found.append(data)
    return sorted(found, key=lambda d: d["time"])


def first_failure(folder: Path, own: dict[str, Any], since: float) -> dict[str, Any]:
    """The run's error: another rank's, when one failed before this one (whose error then
    is a follow-on, such as a closed connection), else this rank's own."""
    others = [f for f in rank_failures(folder, since) if f["time"] <= time.time()]
    if not others:
        return own
    first = {k: v for k, v in others[0].items() if k not in ("pid", "host", "time")}
    return {**first, "follow_on": {"rank": 0, "message": own.get("message")}}


def dump_debug(trainer: Any) -> str:
    """The snapshot and every thread's Python stack, as text; logged (``debug_dump``) and
    appended to ``RUN_DIR/dumps.txt`` when the trainer has a run directory."""
    import sys

    snap = snapshot(trainer)
    lines = [f"statetrainer debug dump: {snap}"]
    for ident, frame in sys._current_frames().items():
        lines.append(f"--- Thread {ident} ---")
        lines.extend(line.rstrip() for line in traceback.format_stack(frame))
    text = "\n".join(lines) + "\n"
    rt = trainer._statetrainer
    rt.log.warning("debug_dump", state=snap.state, epoch=snap.epoch, batch=snap.batch, dump=text)
    if rt.settings.run_dir is not None:
        with (Path(rt.settings.run_dir) / "dumps.txt").open("a") as handle:
            handle.write(text)
    return text


def lifecycles_data(trainer: Any) -> dict[str, Any]:
    """What ``lifecycles.json`` holds: every lifecycle of ``trainer``'s class, as spec data."""
    cls = type(trainer)
    registry = trainer._statetrainer.registry
    specs = cls.lifecycles()
    return {
        "format": LIFECYCLES_FORMAT,
        "trainer": f"{cls.__module__}:{cls.__qualname__}",
        "lifecycles": {name: spec.to_dict() for name, spec in specs.items()},
        "callbacks": {name: registry.names_by_state(spec) for name, spec in specs.items()},
    }


def read_lifecycles(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The lifecycles a run directory's ``lifecycles.json`` holds, as :class:`~statetrainer.Lifecycle` values.

    Raises :class:`~statetrainer.ConfigurationError` naming the file when it is missing or bad.
    """
    from statetrainer.spec import Lifecycle

    path = Path(folder) / LIFECYCLES_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{str(path)!r} does not exist: the run was recorded by an older statetrainer "
                                 f"or never started") from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{str(path)!r} is unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != LIFECYCLES_FORMAT:
        raise ConfigurationError(f"{str(path)!r} was not written by statetrainer ({LIFECYCLES_FORMAT!r} expected)")
    try:
        return {name: Lifecycle.from_dict(spec) for name, spec in data["lifecycles"].items()}
    except Exception as exc:
        raise ConfigurationError(f"{str(path)!r} holds an invalid lifecycle: {exc}") from exc


def read_status(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a run directory's ``status.json``; a one-line error naming the file when
    it is missing, unreadable, not statetrainer's, or holds a field of the wrong type."""
    path = Path(folder)
    status = path / STATUS_FILE
    if not path.is_dir():
        raise ConfigurationError(f"{str(path)!r} is not a directory; give the run directory of a statetrainer run")
    if not status.is_file():
        raise ConfigurationError(f"{str(path)!r} is not a run directory: it has no {STATUS_FILE}")
    try:
        data = json.loads(status.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{str(status)!r} cannot be read: {exc.strerror}; check its permissions") from None
    except ValueError as exc:
        raise ConfigurationError(f"{str(status)!r} is unreadable: not JSON ({_short_reason(exc)}); {_DAMAGED}") \
            from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigurationError(f"{str(status)!r} was not written by statetrainer (format {FORMAT!r} expected)")
    check_status(data, status)
    return data


_DAMAGED = ("it was edited or damaged; a live run rewrites it within a second, otherwise restore it from a copy "
            "(the run's checkpoints, trace and metrics are not affected)")


def _short_reason(exc: Exception) -> str:
    text = str(exc) if not isinstance(exc, UnicodeDecodeError) else "not UTF-8 text"
    return text.splitlines()[0][:80] if text else type(exc).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list_of(check: Any) -> Any:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _dict_of(check: Any) -> Any:
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _or_none(check: Any) -> Any:
    return lambda v: v is None or check(v)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _error_ok(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    texts = all(_or_none(_is_str)(value.get(k)) for k in ("message", "state", "callback", "traceback"))
    return texts and all(_or_none(_is_int)(value.get(k)) for k in ("epoch", "batch"))


#: The fields of ``status.json`` a reader relies on: how to check each, and what it should be.
STATUS_FIELDS: dict[str, tuple[Any, str]] = {
    "status": (_is_str, "a string"),
    "lifecycle": (_or_none(_is_str), "a string or null"),
    "state": (_or_none(_is_str), "a string or null"),
    "previous": (_or_none(_is_str), "a string or null"),
    "enclosing": (_list_of(_is_str), "a list of strings"),
    "recent": (_list_of(_is_str), "a list of strings"),
    "recent_edges": (_list_of(_or_none(_is_int)), "a list of ints or nulls"),
    "epoch": (_or_none(_is_int), "an int or null"),
    "num_epochs": (_or_none(_is_int), "an int or null"),
    "batch": (_or_none(_is_int), "an int or null"),
    "batches": (_or_none(_is_int), "an int or null"),
    "feed": (_or_none(_is_str), "a string or null"),
    "feed_items": (_or_none(_is_int), "an int or null"),
    "step_feed": (_or_none(_is_str), "a string or null"),
    "global_step": (_is_int, "an int"),
    "depth": (_is_int, "an int"),
    "transitions": (_is_int, "an int"),
    "elapsed": (_is_number, "a number"),
    "updated": (_is_number, "a number (seconds since the epoch)"),
    "metrics": (_dict_of(_or_none(_is_number)), "an object of numbers"),
    "visits": (_dict_of(_is_int), "an object of ints"),
    "seconds": (_dict_of(_is_number), "an object of numbers"),
    "metrics_history": (_list_of(_dict_of(_or_none(_is_number))), "a list of objects of numbers"),
    "stop_reason": (_or_none(_is_str), "a string or null"),
    "error": (_or_none(_error_ok), "null or an object (message, state, callback, traceback: strings; "
                                   "epoch, batch: ints)"),
    "pid": (_is_int, "an int"),
    "host": (_is_str, "a string"),
    "run_id": (_or_none(_is_str), "a string or null"),
    "trainer": (_is_str, "a string"),
    "rank": (_is_int, "an int"),
    "world_size": (_is_int, "an int"),
}


def check_status(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise a one-line :class:`~statetrainer.ConfigurationError` for the first field of a status
    dict that has the wrong type (fields that are absent are fine: older runs lack some)."""
    for name, (ok, should) in STATUS_FIELDS.items():
        if name in data and not ok(data[name]):
            raise ConfigurationError(
                f"{str(path)!r}: field {name!r} should be {should}, not {_shown(data[name])}; {_DAMAGED}"
            )


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


#: The fields of a ``trace.jsonl`` line: how to check each, whether it must be there, what it should be.
TRACE_FIELDS: dict[str, tuple[Any, bool, str]] = {
    "lifecycle": (_is_str, True, "a string"),
    "state": (_is_str, True, "a string"),
    "depth": (lambda v: _is_int(v) and v >= 0, True, "an int >= 0"),
    "seq": (_is_int, False, "an int"),
    "epoch": (_or_none(_is_int), False, "an int or null"),
    "batch": (_or_none(_is_int), False, "an int or null"),
    "note": (_or_none(_is_str), False, "a string or null"),
    "edge": (_or_none(_is_int), False, "an int or null"),
    "run_id": (_or_none(_is_str), False, "a string or null"),
}


def read_trace(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries of a ``trace.jsonl`` file, checked line by line; a one-line
    :class:`~statetrainer.ConfigurationError` naming the file and line of the first bad one."""
    p = Path(path)
    if p.is_dir():
        raise ConfigurationError(f"{str(p)!r} is a directory; give the trace.jsonl file inside a run directory")
    try:
        text = p.read_bytes().decode()
    except FileNotFoundError:
        raise ConfigurationError(f"trace file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"{str(p)!r} cannot be read: {exc.strerror}; check its permissions") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{str(p)!r} is not text (a binary file?); give the trace.jsonl of a run directory") \
            from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rows.extend(_trace_rows(p, number, line))
    return rows


_TRACE_FIX = "the line was edited or the file is not a statetrainer trace; restore it, or remove that line"


def _trace_rows(path: Path, number: int, line: str) -> list[dict[str, Any]]:
    """The entries of one line: a chunk (``statetrainer.trace/2``) or a format-1 entry."""
    try:
        row = json.loads(line)
    except ValueError:
        raise ConfigurationError(f"{str(path)}:{number} is not a JSON line; {_TRACE_FIX}") from None
    if isinstance(row, dict) and row.get("format") == tracefile.FORMAT:
        try:
            return tracefile.entries(row)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigurationError(f"{str(path)}:{number} is a damaged trace chunk ({exc}); {_TRACE_FIX}") from None
    return [_trace_row(path, number, row)]


def _trace_row(path: Path, number: int, row: Any) -> dict[str, Any]:
    fix = _TRACE_FIX
    if not isinstance(row, dict):
        raise ConfigurationError(f"{str(path)}:{number} is {type(row).__name__}, not a trace entry (an object); {fix}")
    for name, (ok, required, should) in TRACE_FIELDS.items():
        if (required and name not in row) or (name in row and not ok(row[name])):
            got = "missing" if name not in row else f"{_shown(row[name])}"
            raise ConfigurationError(f"{str(path)}:{number}: {name!r} should be {should}, not {got}; {fix}")
    return row


# -- is the run alive? -------------------------------------------------------------------


def liveness(data: dict[str, Any]) -> tuple[str, str | None]:
    """The status to show and why: ``died`` when ``status.json`` says running but its process
    (same host) is gone; otherwise the status as written (the web view's rule)."""
    from statetrainer.web.runs import liveness as judged

    return judged(data)


def age_text(updated: Any, now: float | None = None) -> str | None:
    """``last update 3 min ago`` from a status's ``updated`` time (``None`` when unknown)."""
    if not _is_number(updated):
        return None
    seconds = max(0.0, (time.time() if now is None else now) - float(updated))
    if seconds < 90:
        return f"last update {seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"last update {seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"last update {seconds / 3600:.1f} h ago"
    return f"last update {seconds / 86400:.1f} days ago"


def _batch_text(data: dict[str, Any]) -> str:
    """``batch 3/16``, naming the feed when it is not the training steps' (``batch 1/2 of valid``)."""
    feed = data.get("feed")
    if feed is None or feed == data.get("step_feed"):
        return f"batch {data.get('batch')}/{data.get('batches')}"
    return f"batch {data.get('batch')}/{data.get('feed_items')} of {feed}"


def format_status(data: dict[str, Any]) -> str:
    """A short human-readable summary of a status dict."""
    shown, why = liveness(data)
    notes = [n for n in (why, age_text(data.get("updated"))) if n]
    lines = [
        f"status     {shown}" + (f"   ({'; '.join(notes)})" if notes else ""),
        f"lifecycle  {data.get('lifecycle')}   state {data.get('state')}",
        f"epoch      {data.get('epoch')}/{data.get('num_epochs')}   {_batch_text(data)}",
        f"step       {data.get('global_step')}   elapsed {data.get('elapsed')} s",
    ]
    if shown in ("stopped", "stopping") and data.get("stop_reason"):
        lines.insert(1, f"stopped by {data['stop_reason']}")
    if data.get("run_id"):
        lines.insert(1, f"run        {data['run_id']}   pid {data.get('pid')} on {data.get('host')}")
    rate, eta = _rate_and_eta(data)
    if rate and shown in ("running", "stopping"):
        lines.append(f"rate       {rate:.1f} batches/s" + (f"   ETA {eta:.0f} s" if eta is not None else ""))
    if data.get("enclosing"):
        lines.append("inside     " + " > ".join(data["enclosing"]))
    if data.get("metrics"):
        lines.append("metrics    " + "  ".join(f"{k}={v:.4g}" for k, v in data["metrics"].items()))
    if data.get("recent"):
        lines.append("recent     " + " -> ".join(data["recent"]))
    table = data.get("seconds") or {}
    counts = data.get("visits") or {}
    if table:
        lines.append(f"{'state':<28} {'visits':>8} {'seconds':>9}")
        ranked = sorted(counts, key=lambda k: (-(table.get(k) or 0.0), -counts[k]))[:8]
        lines += [f"{k:<28} {counts.get(k, 0):>8} {table.get(k, 0.0):>9.3f}" for k in ranked]
    elif counts:  # no StateTimer: visits only (an all-zero seconds column would be a lie)
        lines.append(f"{'state':<28} {'visits':>8}")
        lines += [f"{k:<28} {counts[k]:>8}" for k in sorted(counts, key=lambda k: -counts[k])[:8]]
    err = data.get("error")
    if err:
        rank = f" on rank {err['rank']}" if _is_int(err.get("rank")) else ""
        lines.append(f"FAILED{rank} in state {err.get('state')} ({err.get('callback')}), "
                     f"epoch {err.get('epoch')}, batch {err.get('batch')}")
        lines.append(err.get("traceback") or err.get("message") or "")
    return "\n".join(lines)


def _rate_and_eta(data: dict[str, Any]) -> tuple[float | None, float | None]:
    """Training batches per second, and the seconds left when the epoch sizes are known."""
    elapsed, step = data.get("elapsed") or 0.0, data.get("global_step") or 0
    if not elapsed or not step or data.get("lifecycle") != "train":
        return None, None
    rate = step / elapsed
    batches, epochs = data.get("batches"), data.get("num_epochs")
    if not batches or not epochs or data.get("lifecycle") != "train":
        return rate, None
    return rate, max(0.0, (batches * epochs - step) / rate)
