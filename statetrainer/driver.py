"""The driver: advances a compiled machine in a flat loop and runs each state's calls.

Semantics (pinned in docs and tests):

* **Entry**: on entering a state the driver records it in the trace, then runs the
  state's calls in order (entry bookkeeping, callbacks with ``order < 0``, the hook,
  the other callbacks by order then registration).
* **Run to completion**: a control request made inside a call takes effect at the next
  transition, never in the middle of a state's calls.
* **Choice**: the first out-edge whose guards all hold is taken. While no control request
  is pending the driver only looks at the non-control edges (same result, less work).
* **Failure**: an exception in a call or guard leaves the machine in that state; it is
  wrapped in :class:`~statetrainer.TrainerRunError` saying where, chained to the original.

Torch-free.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from statetrainer._errors import TrainerRunError
from statetrainer.machine import CompiledMachine
from statetrainer.spec import Edge

Call = Callable[[], Any]
Check = Callable[[], bool]

STATUSES = ("idle", "running", "stopping", "finished", "failed", "stopped")


class Position:
    """The live position of a run; mutated by the driver, read through snapshots."""

    __slots__ = (
        "lifecycle", "names", "state", "epoch", "batch", "status", "depth",
        "global_step", "previous",
    )

    def __init__(self) -> None:
        self.lifecycle: str | None = None
        self.names: tuple[str, ...] = ()
        self.state = -1
        self.previous = -1
        self.epoch: int | None = None
        self.batch = -1
        self.status = "idle"
        self.depth = 0
        self.global_step = 0

    @property
    def state_name(self) -> str | None:
        """Name of the current state, or ``None`` outside a run."""
        return self.names[self.state] if self.state >= 0 else None

    @property
    def previous_name(self) -> str | None:
        """Name of the state entered before the current one."""
        return self.names[self.previous] if self.previous >= 0 else None


class Control:
    """Pending control requests; ``pending`` is true while any is set."""

    __slots__ = ("stop", "epoch_stop", "skip", "pending", "stop_reason", "boundary")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every request."""
        self.stop = False
        self.epoch_stop = False
        self.skip = False
        self.pending = False
        self.stop_reason: str | None = None
        # Called once with the state index after the state's calls, before the next edge
        # is chosen (checkpoints are written here, never in the middle of a state).
        self.boundary: Callable[[int], None] | None = None

    def at_boundary(self, fn: Callable[[int], None]) -> None:
        """Run ``fn(state)`` at the next state boundary."""
        self.boundary = fn
        self.pending = True

    def request(self, what: str, reason: str | None = None) -> None:
        """Set one request: ``stop``, ``epoch_stop`` or ``skip``."""
        setattr(self, what, True)
        if what == "stop":
            self.stop_reason = reason
        self.pending = True

    def settle(self, edge: Edge | None) -> None:
        """After a transition: a taken request is consumed, an inapplicable one dropped.

        ``stop`` stays until the run ends: it must steer every remaining transition.
        """
        self.epoch_stop = False
        self.skip = False
        self.pending = self.stop or self.boundary is not None


class TraceEntry(NamedTuple):
    """One state entry: sequence number, lifecycle, state, epoch, batch index, call depth.

    ``batch`` is ``None`` outside a batch loop; ``depth`` is above 0 inside a compound hook
    called directly (``self.evaluate_epoch()`` from a hook) or via ``super()`` from an
    override; ``note`` is ``"resume"`` on the entry a resumed run starts with.
    """

    seq: int
    lifecycle: str
    state: str
    epoch: int | None
    batch: int | None
    depth: int
    note: str | None = None


class Trace:
    """A bounded record of state entries: constant memory however long the run.

    Stored as four preallocated integer rings (state, epoch, batch, depth and lifecycle):
    recording an entry allocates nothing, and a 10,000-entry trace is 320 KB.
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        if not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"trace_size must be an int >= 1, got {maxlen!r}")
        self.maxlen = maxlen
        zeros = bytes(8 * maxlen)
        self._state = array("q", zeros)
        self._epoch = array("q", zeros)
        self._batch = array("q", zeros)
        self._meta = array("q", zeros)  # depth << 16 | lifecycle key id
        self._keys: list[tuple[str, ...]] = []
        self._key_ids: dict[tuple[str, ...], int] = {}
        self._notes: dict[int, str] = {}
        self.total = 0
        self._first = 0  # sequence number of the first entry this trace recorded

    def start_at(self, seq: int) -> None:
        """Continue the numbering at ``seq`` (a resumed run) with no entries kept yet."""
        self.total = self._first = seq
        self._notes.clear()

    def key_id(self, key: tuple[str, ...]) -> int:
        """A small int for ``key`` (state names plus lifecycle name)."""
        kid = self._key_ids.get(key)
        if kid is None:
            kid = self._key_ids[key] = len(self._keys)
            self._keys.append(key)
        return kid

    def record(self, key: tuple[str, ...], state: int, epoch: int | None, batch: int,
               depth: int, note: str | None = None) -> None:
        """Record one entry (the driver's loop writes the rings directly instead)."""
        seq = self.total
        i = seq % self.maxlen
        self._state[i] = state
        self._epoch[i] = -1 if epoch is None else epoch
        self._batch[i] = batch
        self._meta[i] = (depth << 16) | self.key_id(key)
        if note is not None:
            self._notes = {k: v for k, v in self._notes.items() if k > seq - self.maxlen}
            self._notes[seq] = note
        self.total = seq + 1

    def __len__(self) -> int:
        return min(self.total - self._first, self.maxlen)

    def _entry(self, seq: int) -> TraceEntry:
        i = seq % self.maxlen
        meta = self._meta[i]
        key = self._keys[meta & 0xFFFF]
        epoch, batch = self._epoch[i], self._batch[i]
        return TraceEntry(seq, key[-1], key[self._state[i]], None if epoch < 0 else epoch,
                          None if batch < 0 else batch, meta >> 16, self._notes.get(seq))

    def entries(self) -> list[TraceEntry]:
        """The kept entries, oldest first, as :class:`TraceEntry` values."""
        return self.tail(len(self))

    def __iter__(self) -> Iterator[TraceEntry]:
        return iter(self.entries())

    def tail(self, n: int) -> list[TraceEntry]:
        """The last ``n`` entries (converts only those)."""
        n = min(n, len(self))
        return [self._entry(seq) for seq in range(self.total - n, self.total)]

    def state_counts(self) -> dict[str, int]:
        """How many kept entries each state name has."""
        counts: dict[str, int] = {}
        for seq in range(self.total - len(self), self.total):
            i = seq % self.maxlen
            name = self._keys[self._meta[i] & 0xFFFF][self._state[i]]
            counts[name] = counts.get(name, 0) + 1
        return counts

    def clear(self) -> None:
        """Forget every entry and restart the numbering."""
        self.start_at(0)


class Program:
    """A compiled machine bound to one trainer: the calls of each state and guard checks."""

    def __init__(
        self,
        table: CompiledMachine,
        calls: Sequence[tuple[Call, ...]],
        guards: Sequence[Check],
        call_names: dict[int, str],
    ) -> None:
        self.table = table
        self.lifecycle = table.lifecycle.name
        self.calls = tuple(calls)
        self.call_names = call_names
        self.names = table.names
        # The trace stores this tuple: state names plus the lifecycle name last.
        self.trace_key = (*table.names, self.lifecycle)
        self.fast = tuple(
            tuple((_compose(r.guards, guards), r.target) for r in rows) for rows in table.normal
        )
        self.full = tuple(
            tuple((_compose(r.guards, guards), r.target, r.edge) for r in rows)
            for rows in table.edges
        )


def _compose(ids: tuple[int, ...], guards: Sequence[Check]) -> Check | None:
    """One check for a conjunction of guards (``None`` when unconditional)."""
    if not ids:
        return None
    if len(ids) == 1:
        return guards[ids[0]]
    checks = tuple(guards[i] for i in ids)
    return lambda: all(c() for c in checks)


class Driver:
    """Runs :class:`Program` values; owns the live position, control flags and trace."""

    def __init__(self, trace_size: int = 10_000) -> None:
        self.position = Position()
        self.control = Control()
        self.trace = Trace(trace_size)
        self.observers: list[Callable[[str, str], None]] = []
        self.recent_size = 8
        self.rank: int | None = None  # named in errors under data parallel

    def run(
        self,
        program: Program,
        start: int,
        *,
        return_after: int = -1,
        body: frozenset[int] | None = None,
        resume: bool = False,
    ) -> int:
        """Advance ``program`` from state ``start``; return the last state entered.

        Stops at a final state, after ``return_after``'s calls, or rather than enter a
        state outside ``body``. With ``resume`` the machine is already in ``start`` (its
        calls ran before a checkpoint): the trace records one ``resume`` entry and the
        driver goes straight to choosing the next edge.
        """
        pos = self.position
        saved = (pos.lifecycle, pos.names, pos.state, pos.previous)
        pos.lifecycle, pos.names = program.lifecycle, program.names
        s = start
        try:
            if resume:
                pos.previous, pos.state = pos.state, s
                self.trace.record(program.trace_key, s, pos.epoch, pos.batch, pos.depth, "resume")
                s = self._choose(program, s, body)
                if s < 0:
                    return pos.state
            return self._loop(program, s, return_after, body)
        finally:
            if pos.depth > 0:
                pos.lifecycle, pos.names = saved[0], saved[1]
                pos.state, pos.previous = saved[2], saved[3]

    def _loop(self, program: Program, s: int, return_after: int, body: frozenset[int] | None) -> int:
        pos, ctl, trace = self.position, self.control, self.trace
        calls, fast, full, observers = program.calls, program.fast, program.full, self.observers
        rings = (trace._state, trace._epoch, trace._batch, trace._meta)
        st, ep, ba, me = rings
        size = trace.maxlen
        meta = (pos.depth << 16) | trace.key_id(program.trace_key)
        fn: Call | None = None
        phase = 0
        try:
            while True:
                pos.previous = pos.state
                pos.state = s
                seq = trace.total
                i = seq % size
                st[i] = s
                epoch = pos.epoch
                ep[i] = -1 if epoch is None else epoch
                ba[i] = pos.batch
                me[i] = meta
                trace.total = seq + 1
                phase = 0
                for fn in calls[s]:
                    fn()
                if s == return_after:
                    return s
                phase = 1
                if ctl.pending:
                    if ctl.boundary is not None and body is None and return_after < 0:
                        boundary, ctl.boundary = ctl.boundary, None
                        phase = 0
                        fn = boundary  # type: ignore[assignment]
                        boundary(s)
                        phase = 1
                    for check, target, edge in full[s]:  # noqa: B007 - read after break
                        if check is None or check():
                            break
                    else:
                        return s
                    if body is not None and target not in body:
                        return s
                    ctl.settle(edge)
                else:
                    for check, target in fast[s]:  # noqa: B007 - read after break
                        if check is None or check():
                            break
                    else:
                        return s
                    if body is not None and target not in body:
                        return s
                if observers:
                    self._notify(program, s, target)
                s = target
        except TrainerRunError:
            raise
        except Exception as exc:
            where = "guard of the next transition" if phase else program.call_names.get(
                id(fn), getattr(fn, "__qualname__", repr(fn))
            )
            raise self._error(program, s, where, exc) from exc

    def _choose(self, program: Program, s: int, body: frozenset[int] | None) -> int:
        """The target of the first applicable edge out of ``s`` (-1: none, or outside ``body``)."""
        try:
            for check, target, edge in program.full[s]:
                if check is None or check():
                    if body is not None and target not in body:
                        return -1
                    self.control.settle(edge)
                    return target
        except Exception as exc:
            raise self._error(program, s, "guard of the next transition", exc) from exc
        return -1

    def _notify(self, program: Program, source: int, target: int) -> None:
        for observe in tuple(self.observers):
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
