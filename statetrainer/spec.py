"""Declarative, torch-free lifecycle specs.

A :class:`Lifecycle` is immutable data: its states, its edges (each with a kind, an
optional seed loop label, and a guard) and the guards it names. It is validated when it
is built, and every problem is reported at once.

How the driver reads a spec: on leaving a state it looks at that state's out-edges in
declaration order and takes the first whose guards are all true. Every non-final state
has exactly one unguarded edge, declared last: the fallback. Control edges (stop, stop
the epoch, skip the batch) are declared first so that a request wins over the happy path.

Example::

    from statetrainer.spec import Edge, Guard, Lifecycle, State

    toy = Lifecycle(
        name="toy",
        states=(State("start"), State("work"), State("done")),
        edges=(
            Edge("start", "work"),
            Edge("work", "work", kind="loop", label="items", guard="has_next"),
            Edge("work", "done"),
        ),
        initial="start",
        finals=("done",),
        guards=(Guard("has_next", "another item is waiting"),),
    )
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator

import attrs

from statetrainer._errors import SpecError, UnknownStateError, close_matches, suggestion_text

#: Edges the seed's diagrams draw.
SEED_KINDS = frozenset({"sequence", "descend", "return", "loop", "choice"})
#: Edges the seed leaves implicit; each must say why it exists.
EXTENSION_KINDS = frozenset({"extension", "control", "override"})
EDGE_KINDS = SEED_KINDS | EXTENSION_KINDS

#: Guards every lifecycle may use for control requests; the driver owns them.
CONTROL_GUARDS = ("stop_requested", "epoch_stop_requested", "skip_requested")


def _as_guard(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class State:
    """One state of a lifecycle; its name is the hook the trainer runs on entry.

    ``level`` is the seed's fill colour index, ``compound`` marks a node whose body is
    other states (``train_loop``), ``dashed`` draws it dashed, ``region`` names the
    nested lifecycle a state came from (``"evaluate"`` inside train), ``parent`` the
    compound state whose body it belongs to (``training_step`` is in ``train_batch``).
    """

    name: str
    level: int = 1
    compound: bool = False
    dashed: bool = False
    region: str | None = None
    doc: str = ""
    parent: str | None = None


@attrs.frozen
class Guard:
    """A named predicate an edge can require; ``doc`` says when it is true."""

    name: str
    doc: str


@attrs.frozen
class Edge:
    """A possible transition ``source -> target``.

    * ``kind``: one of :data:`EDGE_KINDS`. Seed kinds are drawn in the seed's diagrams;
      ``extension``/``control``/``override`` edges are ours and need a ``reason``.
    * ``guard``: names of guards that must all be true (empty: unconditional).
    * ``label``: the seed's loop label (``"train_epoch_iter"``).
    * ``drawn_from``: for a return realised from inside a compound's body, the compound
      the seed draws it from (``on_end_training_batch -> on_train_epoch_end`` is drawn
      ``train_batch -> on_train_epoch_end``).
    """

    source: str
    target: str
    kind: str = "sequence"
    guard: tuple[str, ...] = attrs.field(default=(), converter=_as_guard)
    label: str | None = None
    drawn_from: str | None = None
    reason: str | None = None

    @property
    def is_seed(self) -> bool:
        """True for the kinds the seed's diagrams draw."""
        return self.kind in SEED_KINDS

    @property
    def drawn(self) -> tuple[str, str]:
        """The ``(source, target)`` pair as a diagram draws this edge."""
        return (self.drawn_from or self.source, self.target)

    def describe(self) -> str:
        """Short human-readable form, e.g. ``a -> b [label] if g``."""
        text = f"{self.source} -> {self.target}"
        if self.label:
            text += f" [{self.label}]"
        if self.guard:
            text += " if " + " and ".join(self.guard)
        return text


def _states(value: Iterable[State]) -> tuple[State, ...]:
    return tuple(value)


def _edges(value: Iterable[Edge]) -> tuple[Edge, ...]:
    return tuple(value)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _guards(value: Iterable[Guard]) -> tuple[Guard, ...]:
    return tuple(value)


@attrs.frozen
class Lifecycle:
    """A validated lifecycle: states, edges in priority order, guards, initial/final states.

    Building one with a problem raises :class:`~statetrainer.SpecError` listing all of them.
    """

    name: str
    states: tuple[State, ...] = attrs.field(converter=_states)
    edges: tuple[Edge, ...] = attrs.field(converter=_edges)
    initial: str
    finals: tuple[str, ...] = attrs.field(converter=_names)
    guards: tuple[Guard, ...] = attrs.field(default=(), converter=_guards)
    colorscheme: str = "set36"
    graph_name: str | None = None
    doc: str = ""

    def __attrs_post_init__(self) -> None:
        problems = list(_validate(self))
        if problems:
            raise SpecError(self.name, problems)

    # -- lookups ---------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        """State names in declaration order."""
        return tuple(s.name for s in self.states)

    @property
    def guard_names(self) -> tuple[str, ...]:
        """Every guard an edge may use: the declared ones and the control guards."""
        return tuple(g.name for g in self.guards) + CONTROL_GUARDS

    def state(self, name: str) -> State:
        """The state called ``name``; unknown names raise with close matches."""
        for s in self.states:
            if s.name == name:
                return s
        raise UnknownStateError(name, self.state_names)

    def out_edges(self, name: str) -> tuple[Edge, ...]:
        """Edges leaving ``name``, in the order the driver tries them."""
        return tuple(e for e in self.edges if e.source == name)

    def seed_edges(self) -> tuple[Edge, ...]:
        """Edges of the kinds the seed draws."""
        return tuple(e for e in self.edges if e.is_seed)

    def extension_edges(self) -> tuple[Edge, ...]:
        """Edges the seed leaves implicit (extension, control, override)."""
        return tuple(e for e in self.edges if not e.is_seed)

    def enclosing(self, name: str) -> tuple[str, ...]:
        """The compound states around ``name``, outermost first (``train``, ``train_loop``, ...)."""
        chain: list[str] = []
        parent = self.state(name).parent
        while parent is not None and parent not in chain:
            chain.append(parent)
            parent = self.state(parent).parent
        return tuple(reversed(chain))

    def region_states(self, region: str | None) -> tuple[str, ...]:
        """Names of the states whose ``region`` is ``region``."""
        return tuple(s.name for s in self.states if s.region == region)

    def fingerprint(self) -> str:
        """A stable hash of states and edges; checkpoints record it."""
        data = {
            "name": self.name,
            "states": [s.name for s in self.states],
            "edges": [attrs.astuple(e) for e in self.edges],
            "initial": self.initial,
            "finals": list(self.finals),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        from statetrainer import diagrams

        return diagrams.mimebundle(self)


# -- validation -----------------------------------------------------------------


def _validate(spec: Lifecycle) -> Iterator[str]:
    names = [s.name for s in spec.states]
    known = set(names)
    yield from _duplicates(names)
    yield from _unknown_names(spec, known)
    yield from _edge_shapes(spec, known)
    if spec.initial in known:
        yield from _reachability(spec, known)


def _duplicates(names: list[str]) -> Iterator[str]:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            yield f"state {n!r} is declared twice"
        seen.add(n)


def _unknown(name: str, known: Iterable[str], what: str, where: str) -> str:
    return f"{where} names unknown {what} {name!r}{suggestion_text(close_matches(name, known))}"


def _unknown_names(spec: Lifecycle, known: set[str]) -> Iterator[str]:
    compounds = {s.name for s in spec.states if s.compound}
    for s in spec.states:
        if s.parent is not None and s.parent not in compounds:
            yield _unknown(s.parent, compounds, "compound state", f"state {s.name!r} parent")
    if spec.initial not in known:
        yield _unknown(spec.initial, known, "state", "initial")
    for f in spec.finals:
        if f not in known:
            yield _unknown(f, known, "state", "finals")
    guards = set(spec.guard_names)
    for e in spec.edges:
        for end in (e.source, e.target) + ((e.drawn_from,) if e.drawn_from else ()):
            if end not in known:
                yield _unknown(end, known, "state", f"edge {e.describe()}")
        for g in e.guard:
            if g not in guards:
                yield _unknown(g, guards, "guard", f"edge {e.describe()}")


def _edge_shapes(spec: Lifecycle, known: set[str]) -> Iterator[str]:
    for e in spec.edges:
        if e.kind not in EDGE_KINDS:
            yield f"edge {e.describe()} has unknown kind {e.kind!r} (one of {sorted(EDGE_KINDS)})"
        if e.kind in EXTENSION_KINDS and not e.reason:
            yield f"{e.kind} edge {e.describe()} needs a reason: say which case the seed leaves implicit"
        if e.kind == "loop" and not e.guard:
            yield f"loop edge {e.describe()} has no guard: it could never exit"
    by_source: dict[str, list[Edge]] = defaultdict(list)
    for e in spec.edges:
        by_source[e.source].append(e)
    for name in known:
        out = by_source.get(name, [])
        unguarded = [e for e in out if not e.guard]
        if name in spec.finals:
            continue
        if not out:
            yield f"state {name!r} is a trap: it is not final and has no outgoing edge"
        elif len(unguarded) > 1:
            listed = ", ".join(e.describe() for e in unguarded)
            yield f"state {name!r} has {len(unguarded)} unguarded edges ({listed}); keep one as the fallback"
        elif not unguarded:
            yield f"state {name!r} has no unguarded fallback edge: when every guard is false it is stuck"
        elif out[-1].guard:
            yield f"state {name!r}: the unguarded edge {unguarded[0].describe()} must be declared last"


def _reachability(spec: Lifecycle, known: set[str]) -> Iterator[str]:
    forward: dict[str, set[str]] = defaultdict(set)
    backward: dict[str, set[str]] = defaultdict(set)
    for e in spec.edges:
        if e.source in known and e.target in known:
            forward[e.source].add(e.target)
            backward[e.target].add(e.source)
    reached = _closure({spec.initial}, forward)
    for name in spec.state_names:
        if name not in reached:
            yield f"state {name!r} is unreachable from the initial state {spec.initial!r}"
    can_finish = _closure({f for f in spec.finals if f in known}, backward)
    for name in spec.state_names:
        if name in reached and name not in can_finish:
            yield f"state {name!r} cannot reach a final state: a loop with no exit"


def _closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    seen = set(start)
    stack = list(start)
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def with_stop_edges(spec: Lifecycle, target: str, reason: str = "stop requested: end gracefully") -> Lifecycle:
    """``spec`` plus a control edge ``state -> target`` (guard ``stop_requested``) from every
    non-final state, declared first so a stop wins. Use it to make a custom lifecycle stoppable.
    """
    spec.state(target)
    stops = tuple(
        Edge(s, target, "control", guard="stop_requested", reason=reason)
        for s in spec.state_names
        if s not in spec.finals and not any("stop_requested" in e.guard for e in spec.out_edges(s))
    )
    by_source: dict[str, list[Edge]] = defaultdict(list)
    for e in stops:
        by_source[e.source].append(e)
    edges: list[Edge] = []
    for name in spec.state_names:
        edges += by_source.get(name, [])
        edges += spec.out_edges(name)
    return attrs.evolve(spec, edges=tuple(edges))
