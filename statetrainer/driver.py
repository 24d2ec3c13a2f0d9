"""The driver: advances a compiled machine in a flat loop and runs each state's calls.

Semantics (pinned in docs and tests):

* **Entry**: on entering a state the driver records it in the trace, then runs the
  state's calls in order (entry bookkeeping, callbacks with ``order < 0``, the hook,
  the other callbacks by order then registration).
* **Run to completion**: a control request made inside a call takes effect at the next
  transition, never in the middle of a state's calls.
* **Choice**: the first out-edge whose guards all hold is taken. While no control request
  is pending the driver only looks at the non-control edges (same result, less work).
* **Boundary**: after a state's calls and before the next edge is chosen, queued boundary
  requests (checkpoints, signal stops) are served — at depth 0 of a whole-lifecycle run
  only; see :class:`Control` for their order.
* **Failure**: an exception in a call, guard, boundary request or observer leaves the
  machine in that state; it is wrapped in :class:`~statetrainer.TrainerRunError` saying
  where (which call), chained to the original.

Torch-free.
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from statetrainer._errors import TrainerRunError
from statetrainer.machine import CompiledEdge, CompiledMachine
from statetrainer.spec import Edge

Call = Callable[[], Any]
Check = Callable[[], bool]

STATUSES = ("idle", "running", "stopping", "finished", "failed", "stopped")


class Position:
    """The live position of a run; mutated by the driver, read through snapshots."""

    __slots__ = ("lifecycle", "names", "state", "epoch", "batch", "status", "depth", "global_step")

    def __init__(self) -> None:
        self.lifecycle: str | None = None
        self.names: tuple[str, ...] = ()
        self.state = -1
        self.epoch: int | None = None
        self.batch = -1
        self.status = "idle"
        self.depth = 0
        self.global_step = 0

    @property
    def state_name(self) -> str | None:
        """Name of the current state, or ``None`` outside a run."""
        return self.names[self.state] if self.state >= 0 else None



class Request(NamedTuple):
    """A request served at a state boundary: a checkpoint, or a stop after a signal.

    ``path`` is an explicit checkpoint file (``None``: the run directory's next automatic
    checkpoint); ``signum`` the signal of a signal stop.
    """

    kind: str
    path: str | None = None
    signum: int | None = None


class Control:
    """Pending control requests, kept as data so none overwrites another.

    * ``stop`` (with ``stop_reason``), ``epoch_stop``, ``skip``: steer the next transition
      through the lifecycle's control edges; ``stop`` stays until the run ends.
    * ``requests``: boundary requests (checkpoints, signal stops), served after a state's
      calls and before the next edge is chosen, in this order: every checkpoint request
      that can be served here (explicit paths each to their file, automatic ones together
      into one run-directory file), then the signal stops (they become ``stop``), then the
      next edge with priority stop > stop_epoch > skip (the lifecycle's edge order).
      A request that needs a resumable state waits for the next one.

    ``pending`` is true while any of them is set: the driver takes its fast path otherwise.
    """

    __slots__ = ("stop", "epoch_stop", "skip", "pending", "stop_reason", "requests")

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.clear()

    def clear(self) -> None:
        """Forget every request."""
        self.stop = False
        self.epoch_stop = False
        self.skip = False
        self.stop_reason: str | None = None
        self.requests = []
        self.pending = False

    def request(self, what: str, reason: str | None = None) -> None:
        """Set one request: ``stop``, ``epoch_stop`` or ``skip``."""
        setattr(self, what, True)
        if what == "stop" and self.stop_reason is None:
            self.stop_reason = reason
        self.pending = True

    def add(self, request: Request) -> None:
        """Queue a boundary request (safe from a signal handler: one list append)."""
        self.requests.append(request)
        self.pending = True

    def take_requests(self) -> list[Request]:
        """The queued boundary requests, leaving the queue empty."""
        taken, self.requests = self.requests, []
        return taken

    def settle(self, edge: Edge | None) -> None:
        """After a transition: a taken request is consumed, an inapplicable one dropped.

        ``stop`` stays until the run ends: it must steer every remaining transition.
        """
        self.epoch_stop = False
        self.skip = False
        self.pending = self.stop or bool(self.requests)


class TraceEntry(NamedTuple):
    """One state entry: sequence number, lifecycle, state, epoch, batch index, call depth.

    ``batch`` is ``None`` outside a batch loop; ``depth`` is above 0 inside a compound hook
    called directly (``self.evaluate_epoch()`` from a hook) or via ``super()`` from an
    override; ``note`` is ``"resume"`` on the entry a resumed run starts with; ``edge`` is
    the index in ``lifecycle.edges`` of the edge taken into this state (``None`` for the
    state a run, a nested run or a resume starts in).
    """

    seq: int
    lifecycle: str
    state: str
    epoch: int | None
    batch: int | None
    depth: int
    note: str | None = None
    edge: int | None = None


#: A trace code packs the state index (low 16 bits) and the taken edge's index + 1.
EDGE_SHIFT = 16
STATE_MASK = (1 << EDGE_SHIFT) - 1


class Trace:
    """A bounded record of state entries: constant memory however long the run.

    Stored as four preallocated rings (code = state and edge taken, epoch, batch, and
    depth with the lifecycle key) and a ring position that advances through a table of
    preallocated indices: recording an entry allocates nothing — every value stored is
    an object that already exists — and a 10,000-entry trace is 320 KB.
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        if not isinstance(maxlen, int) or isinstance(maxlen, bool) or maxlen < 1:
            raise ValueError(f"trace_size must be an int >= 1, got {maxlen!r}")
        self.maxlen = maxlen
        self._code: list[int] = [0] * maxlen
        self._epoch: list[int | None] = [None] * maxlen
        self._batch: list[int] = [0] * maxlen
        self._meta: list[int] = [0] * maxlen  # depth << 16 | lifecycle key id
        #: ``_next[i]`` is the ring index after ``i``: advancing stores an existing int.
        self._next = [*range(1, maxlen), 0]
        self._keys: list[tuple[str, ...]] = []
        self._key_ids: dict[tuple[str, ...], int] = {}
        self._notes: dict[int, str] = {}
        self._i = 0  # the ring index the next entry is written at
        self._laps = 0  # times the ring was filled
        self._base = 0  # the sequence number of ring index 0 in lap 0
        self._first = 0  # sequence number of the first entry this trace recorded

    @property
    def total(self) -> int:
        """The sequence number the next entry gets (entries recorded, counting a resume's start)."""
        return self._base + self._laps * self.maxlen + self._i

    def start_at(self, seq: int) -> None:
        """Continue the numbering at ``seq`` (a resumed run) with no entries kept yet."""
        self._base = self._first = seq
        self._i = self._laps = 0
        self._notes.clear()

    def key_id(self, key: tuple[str, ...]) -> int:
        """A small int for ``key`` (state names plus lifecycle name)."""
        kid = self._key_ids.get(key)
        if kid is None:
            kid = self._key_ids[key] = len(self._keys)
            self._keys.append(key)
        return kid

    def record(self, key: tuple[str, ...], state: int, epoch: int | None, batch: int,
               depth: int, note: str | None = None, edge: int = -1) -> None:
        """Record one entry (the driver's loop writes the rings directly instead)."""
        seq, i = self.total, self._i
        self._code[i] = ((edge + 1) << EDGE_SHIFT) | state
        self._epoch[i] = epoch
        self._batch[i] = batch
        self._meta[i] = (depth << 16) | self.key_id(key)
        if note is not None:
            self._notes = {k: v for k, v in self._notes.items() if k > seq - self.maxlen}
            self._notes[seq] = note
        self._advance()

    def _advance(self) -> None:
        self._i = self._next[self._i]
        if not self._i:
            self._laps += 1

    def _index(self, seq: int) -> int:
        return (seq - self._base) % self.maxlen

    def __len__(self) -> int:
        return min(self.total - self._first, self.maxlen)

    def _entry(self, seq: int) -> TraceEntry:
        i = self._index(seq)
        meta, code = self._meta[i], self._code[i]
        key = self._keys[meta & 0xFFFF]
        batch = self._batch[i]
        edge = (code >> EDGE_SHIFT) - 1
        return TraceEntry(seq, key[-1], key[code & STATE_MASK], self._epoch[i], None if batch < 0 else batch,
                          meta >> 16, self._notes.get(seq), None if edge < 0 else edge)

    def entries(self) -> list[TraceEntry]:
        """The kept entries, oldest first, as :class:`TraceEntry` values."""
        return self.tail(len(self))

    def __iter__(self) -> Iterator[TraceEntry]:
        return iter(self.entries())

    def tail(self, n: int) -> list[TraceEntry]:
        """The last ``n`` entries (converts only those)."""
        n = min(n, len(self))
        total = self.total
        return [self._entry(seq) for seq in range(total - n, total)]

    def state_counts(self) -> dict[str, int]:
        """How many kept entries each state name has (counted in C: about a millisecond for
        10,000 entries, and nothing per transition)."""
        n, i = len(self), self._i
        start = (i - n) % self.maxlen
        if start + n <= self.maxlen:
            metas, codes = self._meta[start : start + n], self._code[start : start + n]
        else:
            metas, codes = self._meta[start:] + self._meta[:i], self._code[start:] + self._code[:i]
        keyed = map(operator.or_, map(operator.lshift, metas, itertools.repeat(32)), codes)
        counts: dict[str, int] = {}
        for both, k in Counter(keyed).items():
            name = self._keys[(both >> 32) & 0xFFFF][both & STATE_MASK]
            counts[name] = counts.get(name, 0) + k
        return counts

    def clear(self) -> None:
        """Forget every entry and restart the numbering."""
        self.start_at(0)


class PassEnds(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a scoped program's cut edge: one pass through a compound's body is over."""


class Program:
    """A compiled machine bound to one trainer: the calls of each state and guard checks.

    ``cut(row)`` marks edges that end the run (a scoped pass through one compound state's
    body returns instead of taking them); ``serve`` says whether boundary requests may be
    served at its states (only a whole lifecycle run at depth 0 can be resumed).
    """

    def __init__(
        self,
        table: CompiledMachine,
        calls: Sequence[tuple[Call, ...]],
        guards: Sequence[Check],
        call_names: dict[int, str],
        *,
        serve: bool = True,
        cut: Callable[[int, CompiledEdge], bool] | None = None,
    ) -> None:
        self.table = table
        self.lifecycle = table.lifecycle.name
        # A list, so callbacks attached during a run can be swapped in from the next state on.
        self.calls = list(calls)
        self.call_names = call_names
        self.names = table.names
        self.serve = serve
        # The trace stores this tuple: state names plus the lifecycle name last.
        self.trace_key = (*table.names, self.lifecycle)
        #: The trace this program last ran on and its key's id there (hashing the key per run costs).
        self.trace_key_id: tuple[Trace, int] | None = None

        def check(source: int, row: CompiledEdge) -> Check | None:
            composed = _compose(row.guards, guards)
            if cut is None or not cut(source, row):
                return composed
            return _ends_pass(composed)

        def code(row: CompiledEdge) -> int:
            return ((row.position + 1) << EDGE_SHIFT) | row.target

        self.fast = tuple(
            tuple((check(s, r), r.target, code(r)) for r in rows)
            for s, rows in enumerate(table.normal)
        )
        self.full = tuple(
            tuple((check(s, r), r.target, code(r), r.edge) for r in rows)
            for s, rows in enumerate(table.edges)
        )


def _ends_pass(check: Check | None) -> Check:
    """A cut edge's check: when the edge would be taken, the pass ends instead (once per pass)."""

    def ends() -> bool:
        if check is None or check():
            raise PassEnds
        return False

    return ends


def _compose(ids: tuple[int, ...], guards: Sequence[Check]) -> Check | None:
    """One check for a conjunction of guards (``None`` when unconditional)."""
    if not ids:
        return None
    if len(ids) == 1:
        return guards[ids[0]]
    checks = tuple(guards[i] for i in ids)
    return lambda: all(c() for c in checks)


class Driver:
    """Runs :class:`Program` values; owns the live position, control requests and trace.

    ``serve(program, state)``, set by the runtime, serves the boundary requests after a
    state's calls.
    """

    def __init__(self, trace_size: int = 10_000) -> None:
        self.position = Position()
        self.control = Control()
        self.trace = Trace(trace_size)
        self.observers: list[Callable[[str, str], None]] = []
        self.recent_size = 8
        self.rank: int | None = None  # named in errors under data parallel
        self.serve: Callable[[Program, int], None] | None = None
        self._observer: Any = None  # the observer being notified (named in errors)

    def run(self, program: Program, start: int, *, resume: bool = False) -> int:
        """Advance ``program`` from state ``start``; return the last state entered.

        Stops at a final state, or rather than take an edge the program cuts. With
        ``resume`` the machine is already in ``start`` (its calls ran before a checkpoint):
        the trace records one ``resume`` entry and the driver goes straight to choosing
        the next edge. A nested run (depth > 0) restores the caller's position when it
        returns; after a failure the position stays where the failure happened.
        """
        pos = self.position
        saved = (pos.lifecycle, pos.names, pos.state)
        pos.lifecycle, pos.names = program.lifecycle, program.names
        last = self._resume(program, start) if resume else self._loop(program, start, start)
        if pos.depth > 0:
            pos.lifecycle, pos.names, pos.state = saved
        return last

    def _resume(self, program: Program, s: int) -> int:
        pos = self.position
        pos.state = s
        self.trace.record(program.trace_key, s, pos.epoch, pos.batch, pos.depth, "resume")
        try:
            for check, target, code, edge in program.full[s]:  # noqa: B007 - read after break
                if check is None or check():
                    self.control.settle(edge)
                    break
            else:
                return s
        except PassEnds:
            return s
        except Exception as exc:
            raise self._error(program, s, "guard of the next transition", exc) from exc
        return self._loop(program, target, code)

    def _loop(self, program: Program, s: int, code: int) -> int:
        pos, ctl, trace = self.position, self.control, self.trace
        calls, fast, full, observers = program.calls, program.fast, program.full, self.observers
        cd, ep, ba, me, nxt = trace._code, trace._epoch, trace._batch, trace._meta, trace._next
        cached = program.trace_key_id
        if cached is None or cached[0] is not trace:
            cached = program.trace_key_id = (trace, trace.key_id(program.trace_key))
        meta = (pos.depth << 16) | cached[1]
        serves = program.serve and pos.depth == 0 and self.serve is not None
        fn: Any = None
        phase = 0  # 0: a state's calls (fn names the call); 1: guards; 2: boundary; 3: observers
        try:
            while True:
                pos.state = s
                # the ring position is re-read: a call may have run a nested run that advanced it
                i = trace._i
                cd[i] = code
                ep[i] = pos.epoch
                ba[i] = pos.batch
                me[i] = meta
                i = trace._i = nxt[i]
                if not i:
                    trace._laps += 1
                for fn in calls[s]:
                    fn()
                fn = None
                if ctl.pending:
                    if serves and ctl.requests:
                        phase = 2
                        self.serve(program, s)  # type: ignore[misc]
                        phase = 0
                    for check, target, code, edge in full[s]:  # noqa: B007 - read after break
                        if check is None or check():
                            break
                    else:
                        return s
                    ctl.settle(edge)
                else:
                    for check, target, code in fast[s]:  # noqa: B007 - read after break
                        if check is None or check():
                            break
                    else:
                        return s
                if observers:
                    phase = 3
                    self._notify(program, s, target)
                    phase = 0
                s = target
        except PassEnds:
            return s
        except TrainerRunError:
            raise
        except Exception as exc:
            raise self._error(program, s, self._blame(program, phase, fn), exc) from exc

    def _blame(self, program: Program, phase: int, fn: Any) -> str:
        if phase == 0 and fn is not None:
            return program.call_names.get(id(fn), getattr(fn, "__qualname__", repr(fn)))
        if phase == 2:
            return "statetrainer boundary requests (checkpoint or signal stop)"
        if phase == 3:
            return f"observer {getattr(self._observer, '__qualname__', repr(self._observer))}"
        return "guard of the next transition"

    def _notify(self, program: Program, source: int, target: int) -> None:
        for observe in tuple(self.observers):
            self._observer = observe
            observe(program.names[source], program.names[target])

    def recent(self) -> list[str]:
        """The last few states entered, oldest first."""
        return [e.state for e in self.trace.tail(self.recent_size)]

    def _error(self, program: Program, state: int, callback: str, exc: BaseException) -> TrainerRunError:
        pos = self.position
        return TrainerRunError(
            lifecycle=program.lifecycle,
            state=program.names[state],
            callback=callback,
            epoch=pos.epoch,
            batch=None if pos.batch < 0 else pos.batch,
            recent=self.recent(),
            cause=exc,
            rank=self.rank,
        )
