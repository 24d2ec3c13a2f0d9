"""Model-based testing helpers for built-in and custom lifecycles.

* :func:`check_trace`: is a recorded trace a path through the machine?
* :func:`transition_coverage`: which declared edges (the seed's and the extensions') one or
  more traces took, edge by edge, from the edge index each trace entry records.
* :func:`outcome_for`: guard outcomes that make the machine take a given edge (an edge
  for which none exist is dead: an earlier edge always wins).
* :func:`covering_paths`: shortest state paths from the initial state that together take
  every transition (loops are entered at most once per path).
* :func:`guard_outcomes`: a hypothesis strategy of guard truth tables for a spec.

Torch-free.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from statetrainer.spec import Edge, Lifecycle


def transitions_of(spec: Lifecycle) -> set[tuple[str, str]]:
    """Every distinct ``(source, target)`` pair the machine can take."""
    return {(e.source, e.target) for e in spec.edges}


def _field(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def trace_pairs(entries: Iterable[Any]) -> list[tuple[str, str, str]]:
    """``(lifecycle, source, target)`` steps of a trace, pairing states at the same call depth.

    A deeper entry starts a nested run (a call, not a transition); returning to a depth
    continues that depth's path. A ``resume`` entry starts a new segment at the checkpointed
    state it names: the trace of a resumed run is two (or more) paths joined there, and the
    entries the interrupted process made after its checkpoint (or lost when it was killed)
    are no step.
    """
    last: dict[int, tuple[str, str]] = {}
    steps: list[tuple[str, str, str]] = []
    depth = 0
    for row in entries:
        lifecycle, state, d = _field(row, "lifecycle"), _field(row, "state"), int(_field(row, "depth"))
        note = row.get("note") if isinstance(row, Mapping) else getattr(row, "note", None)
        if note == "resume":
            last.clear()
        for deeper in [k for k in last if k > d]:
            del last[deeper]
        prev = last.get(d)
        if prev is not None and prev[0] == lifecycle and d <= depth:
            steps.append((lifecycle, prev[1], state))
        last[d] = (lifecycle, state)
        depth = d
    return steps


def check_trace(entries: Iterable[Any], specs: Mapping[str, Lifecycle]) -> str | None:
    """``None`` when every step of the trace is a transition of its lifecycle, else the first problem."""
    rows = list(entries)
    for index, (lifecycle, source, target) in enumerate(trace_pairs(rows)):
        spec = specs.get(lifecycle)
        if spec is None:
            return f"step {index}: unknown lifecycle {lifecycle!r}"
        if (source, target) not in transitions_of(spec):
            allowed = sorted({e.target for e in spec.out_edges(source)})
            return (f"step {index}: {source} -> {target} is not a transition of {lifecycle!r} "
                    f"(from {source} the machine can go to {', '.join(allowed) or 'nowhere'})")
    return None


@attrs.frozen
class Coverage:
    """Which of a lifecycle's declared edges a set of traces took, counted edge by edge.

    ``edges`` is every edge the lifecycle declares, the seed's and the extensions', in
    declaration order (a trace entry records the index of the edge it was entered by);
    ``taken`` holds the indices some trace took. Two edges between the same states count
    apart: a stop and a ``stop_epoch()`` edge out of one state are two edges to cover.
    """

    lifecycle: str
    edges: tuple[Edge, ...]
    taken: frozenset[int]

    @property
    def covered(self) -> tuple[Edge, ...]:
        """The edges some trace took, in declaration order."""
        return tuple(e for i, e in enumerate(self.edges) if i in self.taken)

    @property
    def missing(self) -> tuple[Edge, ...]:
        """The edges no trace took, in declaration order: a to-do list for tests."""
        return tuple(e for i, e in enumerate(self.edges) if i not in self.taken)

    @property
    def ratio(self) -> float:
        """Edges taken over edges declared (1.0 is full coverage)."""
        return len(self.taken) / len(self.edges) if self.edges else 1.0

    def format(self) -> str:
        """A readable summary: edges taken of the seed's and of the extensions', then each missing edge."""
        seed = [i for i, e in enumerate(self.edges) if e.is_seed]
        extension = [i for i, e in enumerate(self.edges) if not e.is_seed]
        lines = [
            f"{self.lifecycle}: {len(self.taken)} of {len(self.edges)} edges taken "
            f"(seed {len(self.taken.intersection(seed))}/{len(seed)}, "
            f"extensions {len(self.taken.intersection(extension))}/{len(extension)})"
        ]
        lines += [f"  missing #{i} {e.kind}: {e.describe()}" for i, e in enumerate(self.edges) if i not in self.taken]
        return "\n".join(lines)


def _edge_index(row: Any) -> int | None:
    value = row.get("edge") if isinstance(row, Mapping) else getattr(row, "edge", None)
    return None if value is None else int(value)


def transition_coverage(traces: Iterable[Iterable[Any]], spec: Lifecycle) -> Coverage:
    """Edge coverage of ``spec`` by one or more traces (``trainer.trace``, or ``trace.jsonl`` rows).

    Each entry of ``spec``'s lifecycle records the index of the edge it was entered by; entries
    with none (the first of a run, a nested run or a resume) take no edge. An index that is not
    an edge into the entry's state means the trace was recorded with another version of the
    lifecycle: ``ValueError``.
    """
    taken: set[int] = set()
    for trace in traces:
        for row in trace:
            index = _edge_index(row)
            if index is None or _field(row, "lifecycle") != spec.name:
                continue
            state = _field(row, "state")
            if not 0 <= index < len(spec.edges) or spec.edges[index].target != state:
                seq = row.get("seq") if isinstance(row, Mapping) else getattr(row, "seq", None)
                raise ValueError(
                    f"trace entry {seq} entered {state!r} by edge #{index}, which is not an edge "
                    f"into {state!r} of lifecycle {spec.name!r}: the trace was recorded with another version of it"
                )
            taken.add(index)
    return Coverage(spec.name, spec.edges, frozenset(taken))


def outcome_for(spec: Lifecycle, edge: Edge) -> dict[str, bool] | None:
    """Guard outcomes under which the machine takes ``edge`` from its source (``None``: dead edge)."""
    from statetrainer.machine import compile_machine

    outcome = {g: g in edge.guard for g in spec.guard_names}
    table = compile_machine(spec)
    return outcome if table.next_edge(edge.source, outcome) == edge else None


def covering_paths(spec: Lifecycle) -> list[list[str]]:
    """State paths from the initial state that together take every transition once or more."""
    parent = _shortest_tree(spec)
    paths: list[list[str]] = []
    for source, target in sorted(transitions_of(spec)):
        if source not in parent:
            continue
        path = _path_to(parent, source) + [target]
        path += _path_to_final(spec, target)[1:]
        paths.append(path)
    return paths


def _shortest_tree(spec: Lifecycle) -> dict[str, str | None]:
    parent: dict[str, str | None] = {spec.initial: None}
    queue = deque([spec.initial])
    while queue:
        state = queue.popleft()
        for e in spec.out_edges(state):
            if e.target not in parent:
                parent[e.target] = state
                queue.append(e.target)
    return parent


def _path_to(parent: Mapping[str, str | None], state: str) -> list[str]:
    path = [state]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])  # type: ignore[arg-type]
    return path[::-1]


def _path_to_final(spec: Lifecycle, start: str) -> list[str]:
    seen = {start: [start]}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state in spec.finals:
            return seen[state]
        for e in spec.out_edges(state):
            if e.target not in seen:
                seen[e.target] = seen[state] + [e.target]
                queue.append(e.target)
    return [start]


def guard_outcomes(spec: Lifecycle) -> Any:
    """A hypothesis strategy of ``{guard: bool}`` for every guard of ``spec``."""
    from hypothesis import strategies as st

    return st.fixed_dictionaries({g: st.booleans() for g in spec.guard_names})


def random_walk(spec: Lifecycle, outcomes: Iterable[Mapping[str, bool]], max_steps: int = 1000) -> list[str]:
    """The states the pure transition function visits for a sequence of guard outcomes."""
    from statetrainer.machine import compile_machine

    table = compile_machine(spec)
    state: str | None = spec.initial
    walk = [spec.initial]
    for outcome, _ in zip(outcomes, range(max_steps)):
        state = table.next_state(walk[-1], outcome)
        if state is None:
            break
        walk.append(state)
    return walk
