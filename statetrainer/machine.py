"""Declare a lifecycle as a ``transitions`` Machine and compile it to a dispatch table.

``transitions`` is the declaration and the introspection: a flat core ``Machine``
(``auto_transitions=False``) over a small guard-only model, one trigger ``advance`` whose
transitions are a state's out-edges in priority order. It never drives a batch: one
trigger costs ~10 µs, and triggers fired from callbacks recurse. :func:`compile_machine`
reads the Machine's transitions back into a :class:`CompiledMachine`, a tuple-based
table the driver walks in a flat loop at well under a microsecond per step.

``transitions`` types never leave this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import attrs

from statetrainer.spec import CONTROL_GUARDS, Edge, Lifecycle

TRIGGER = "advance"


class CompiledEdge(NamedTuple):
    """One row of the dispatch table: guard indices (all must hold), target index, spec edge,
    and the edge's index in ``lifecycle.edges`` (the trace records which edge was taken)."""

    guards: tuple[int, ...]
    target: int
    edge: Edge
    position: int


@attrs.frozen
class CompiledMachine:
    """A lifecycle compiled for the driver: states and guards as indices, edges as tuples.

    ``edges[s]`` lists every out-edge of state ``s`` in priority order; ``normal[s]`` the
    same without control edges (the driver's fast path when no request is pending).
    """

    lifecycle: Lifecycle
    names: tuple[str, ...]
    index: Mapping[str, int]
    guards: tuple[str, ...]
    edges: tuple[tuple[CompiledEdge, ...], ...]
    normal: tuple[tuple[CompiledEdge, ...], ...]
    finals: frozenset[int]

    @property
    def initial(self) -> int:
        """Index of the initial state."""
        return self.index[self.lifecycle.initial]

    def next_state(self, state: str, outcome: Callable[[str], bool] | Mapping[str, bool]) -> str | None:
        """The pure transition function: the state after ``state`` for the given guard outcomes.

        ``outcome`` maps a guard name to its truth. Returns ``None`` from a final state.
        """
        decide = outcome.__getitem__ if isinstance(outcome, Mapping) else outcome
        for row in self.edges[self.index[state]]:
            if all(decide(self.guards[g]) for g in row.guards):
                return self.names[row.target]
        return None

    def next_edge(self, state: str, outcome: Callable[[str], bool] | Mapping[str, bool]) -> Edge | None:
        """Like :meth:`next_state`, but the spec edge taken."""
        decide = outcome.__getitem__ if isinstance(outcome, Mapping) else outcome
        for row in self.edges[self.index[state]]:
            if all(decide(self.guards[g]) for g in row.guards):
                return row.edge
        return None


class _GuardModel:
    """The object ``transitions`` drives: it only answers guards from ``outcomes``.

    Never the trainer or an ``nn.Module``: their ``train``/``to`` would collide with
    what ``transitions`` patches onto its model.
    """

    state: str  # set by transitions

    def __init__(self) -> None:
        self.outcomes: dict[str, bool] = {}


def _guard_method(name: str) -> Callable[[Any], bool]:
    def check(self: Any) -> bool:
        return bool(self.outcomes[name])

    check.__name__ = name
    return check


def build_machine(spec: Lifecycle) -> tuple[Any, _GuardModel]:
    """Declare ``spec`` as a flat ``transitions.Machine``; returns ``(machine, model)``."""
    from transitions import Machine

    model_cls = type(
        f"_{spec.name.title()}Guards",
        (_GuardModel,),
        {g: _guard_method(g) for g in spec.guard_names},
    )
    model = model_cls()
    machine = Machine(
        model=model,
        states=list(spec.state_names),
        initial=spec.initial,
        auto_transitions=False,
        send_event=False,
        ignore_invalid_triggers=False,
    )
    for edge in spec.edges:
        machine.add_transition(TRIGGER, edge.source, edge.target, conditions=list(edge.guard))
    return machine, model


def compile_machine(spec: Lifecycle) -> CompiledMachine:
    """Build the ``transitions`` Machine for ``spec`` and compile its table from it."""
    machine, _ = build_machine(spec)
    names = spec.state_names
    index = {n: i for i, n in enumerate(names)}
    guards = spec.guard_names
    gindex = {g: i for i, g in enumerate(guards)}
    event = machine.events[TRIGGER]
    control = {gindex[g] for g in CONTROL_GUARDS}
    position = {id(e): i for i, e in enumerate(spec.edges)}
    rows_by_state: list[tuple[CompiledEdge, ...]] = []
    for name in names:
        declared = spec.out_edges(name)
        declared_rows = event.transitions.get(name, [])
        rows = []
        for transition, edge in zip(declared_rows, declared, strict=True):
            if transition.dest != edge.target:  # pragma: no cover - transitions keeps order
                raise AssertionError(f"transitions reordered the edges of {name!r}")
            conds = tuple(gindex[c.func] for c in transition.conditions if c.target)
            rows.append(CompiledEdge(conds, index[transition.dest], edge, position[id(edge)]))
        rows_by_state.append(tuple(rows))
    normal = tuple(
        tuple(r for r in rows if not control.intersection(r.guards)) for rows in rows_by_state
    )
    return CompiledMachine(
        lifecycle=spec,
        names=names,
        index=index,
        guards=guards,
        edges=tuple(rows_by_state),
        normal=normal,
        finals=frozenset(index[f] for f in spec.finals),
    )


def step_with_transitions(spec: Lifecycle, state: str, outcomes: Mapping[str, bool]) -> str | None:
    """Ask a fresh ``transitions`` Machine for the state after ``state``.

    Slow (it builds a Machine); for tests that check the compiled table against
    ``transitions`` itself. Returns ``None`` when no transition applies (a final state).
    """
    machine, model = build_machine(spec)
    machine.set_state(state)
    model.outcomes = dict(outcomes)
    if not machine.get_triggers(state):
        return None
    getattr(model, TRIGGER)()
    return str(model.state)
