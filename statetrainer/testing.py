"""Model-based testing helpers for built-in and custom lifecycles.

* :func:`check_trace`: is a recorded trace a path through the machine?
* :func:`transition_coverage`: which ``(source, target)`` transitions a trace exercised.
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
    """Which transitions of a lifecycle a set of traces took."""

    lifecycle: str
    covered: frozenset[tuple[str, str]]
    missing: frozenset[tuple[str, str]]

    @property
    def ratio(self) -> float:
        """Covered transitions over all transitions (1.0 is full coverage)."""
        total = len(self.covered) + len(self.missing)
        return len(self.covered) / total if total else 1.0


def transition_coverage(traces: Iterable[Iterable[Any]], spec: Lifecycle) -> Coverage:
    """Transition coverage of ``spec`` by one or more traces."""
    taken: set[tuple[str, str]] = set()
    for trace in traces:
        taken |= {(s, t) for lc, s, t in trace_pairs(trace) if lc == spec.name}
    every = transitions_of(spec)
    return Coverage(spec.name, frozenset(taken & every), frozenset(every - taken))


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
