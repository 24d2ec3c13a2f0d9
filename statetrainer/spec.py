"""Declarative, torch-free lifecycle specs.

A :class:`Lifecycle` is immutable data: its states, its edges (each with a kind, an
optional seed loop label, and a guard) and the guards it names. It is validated when it
is built, and every problem is reported at once.

How the driver reads a spec: on leaving a state it looks at that state's out-edges in
declaration order and takes the first whose guards are all true. Every non-final state
has exactly one unguarded edge, declared last: the fallback. Control edges (stop, stop
the epoch, skip the batch) are declared first so that a request wins over the happy path.

States declare their runtime *roles* (:mod:`statetrainer.roles`: where an epoch opens and
closes, where a training item is done, where a checkpoint may be taken, which region runs
without grad) and their data flow (``opens``/``takes``/``item``/``closes`` a
:class:`Feed`). The runtime reads nothing else: a custom lifecycle that declares the
roles a feature needs gets that feature.

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
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from statetrainer._errors import SpecError, UnknownStateError, close_matches, suggestion_text
from statetrainer.roles import ROLES

#: Edges the seed's diagrams draw.
SEED_KINDS = frozenset({"sequence", "descend", "return", "loop", "choice"})
#: Edges the seed leaves implicit; each must say why it exists.
EXTENSION_KINDS = frozenset({"extension", "control", "override"})
EDGE_KINDS = SEED_KINDS | EXTENSION_KINDS

#: Guards every lifecycle may use for control requests; the driver owns them.
CONTROL_GUARDS = ("stop_requested", "epoch_stop_requested", "skip_requested")
#: The guard the runtime answers for a lifecycle with an ``epoch_start`` state.
EPOCHS_GUARD = "epochs_remaining"
#: ``<compound>_overridden``: true when the trainer overrides the compound state's hook.
OVERRIDDEN_SUFFIX = "_overridden"

_FINGERPRINTS: dict[int, tuple[weakref.ref[Any], str]] = {}
_LOOKUPS: dict[int, tuple[weakref.ref[Any], tuple[str, ...], dict[str, State]]] = {}


def _lookup(spec: Any) -> tuple[tuple[str, ...], dict[str, State]]:
    """A spec's state names and states by name, built once per spec object (runs ask often)."""
    cached = _LOOKUPS.get(id(spec))
    if cached is not None and cached[0]() is spec:
        return cached[1], cached[2]
    names = tuple(s.name for s in spec.states)
    by_name = {s.name: s for s in spec.states}
    key = id(spec)
    _LOOKUPS[key] = (weakref.ref(spec, lambda _: _LOOKUPS.pop(key, None)), names, by_name)
    return names, by_name


def _as_guard(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _roles(value: str | Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


@attrs.frozen
class State:
    """One state of a lifecycle; its name is the hook the trainer runs on entry.

    ``level`` is the seed's fill colour index, ``compound`` marks a node whose body is
    other states (``train_loop``), ``dashed`` draws it dashed, ``region`` names the
    nested lifecycle a state came from (``"evaluate"`` inside train), ``parent`` the
    compound state whose body it belongs to (``training_step`` is in ``train_batch``).

    Runtime meaning (see :mod:`statetrainer.roles`): ``roles`` (``epoch_start``,
    ``epoch_end``, ``batch_end``, ``resumable``, ``no_grad``); ``opens``, ``takes``,
    ``item``, ``closes`` name a :class:`Feed`: the loop over it begins here, this state
    takes its next item, the hook receives its current item, the loop is over. On a
    compound state, ``item`` makes it a per-item compound (``train_batch``): its body is
    one item, an override is called once per item with it, and a direct call handles
    the item it is given.
    """

    name: str
    level: int = 1
    compound: bool = False
    dashed: bool = False
    region: str | None = None
    doc: str = ""
    parent: str | None = None
    roles: frozenset[str] = attrs.field(default=frozenset(), converter=_roles)
    opens: str | None = None
    takes: str | None = None
    item: str | None = None
    closes: str | None = None

    def has(self, role: str) -> bool:
        """True when this state declares ``role``."""
        return role in self.roles


@attrs.frozen
class Feed:
    """A data feed a lifecycle loops over, bound to the trainer's attributes.

    * ``guard``: the loop guard's name; the runtime answers it with a one-item lookahead
      (true while another item is waiting).
    * ``iterable``: an attribute a hook may set for this pass (``train_epoch_iter``); read
      first. ``loader``: the attribute used when ``iterable`` is unset (``train_loader``).
    * ``counts_steps``: taking an item is a training step (``global_step``,
      ``checkpoint_every``); at most one feed of a lifecycle counts steps.
    * ``skip_flag``: an attribute a taking hook sets to skip its item (farabio's
      ``_next_loop``): the runtime resets it and requests ``skip_batch()``.
    """

    name: str
    guard: str
    iterable: str | None = None
    loader: str | None = None
    counts_steps: bool = False
    skip_flag: str | None = None
    doc: str = ""


@attrs.frozen
class EpochCounter:
    """The trainer attributes behind a lifecycle's epochs (farabio's by default).

    ``attr`` holds the current epoch, ``total`` the last epoch, ``first`` the first one.
    The guard ``epochs_remaining`` is true while the next epoch is ``<= total``.
    """

    attr: str = "_epoch"
    total: str = "_num_epochs"
    first: str = "_start_epoch"


@attrs.frozen
class Guard:
    """A named predicate an edge can require; ``doc`` says when it is true.

    ``predicate(trainer) -> bool`` answers it; without one, the trainer's method of the
    same name does. ``check(trainer)``, when given, validates the attributes the guard
    reads at the start of a run (raising :class:`~statetrainer.ConfigurationError`).
    Neither is part of the spec's data (fingerprint, serialisation).
    """

    name: str
    doc: str
    predicate: Callable[[Any], bool] | None = attrs.field(default=None, eq=False, repr=False)
    check: Callable[[Any], None] | None = attrs.field(default=None, eq=False, repr=False)


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


def _feeds(value: Iterable[Feed]) -> tuple[Feed, ...]:
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
    feeds: tuple[Feed, ...] = attrs.field(default=(), converter=_feeds)
    epochs: EpochCounter = EpochCounter()

    def __attrs_post_init__(self) -> None:
        problems = list(_validate(self))
        if problems:
            raise SpecError(self.name, problems)

    # -- lookups ---------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        """State names in declaration order."""
        return _lookup(self)[0]

    @property
    def guard_names(self) -> tuple[str, ...]:
        """Every guard an edge may use: declared, control, feed, epoch and override guards."""
        return tuple(g.name for g in self.guards) + CONTROL_GUARDS + self.runtime_guards

    @property
    def runtime_guards(self) -> tuple[str, ...]:
        """Guards the runtime answers from the roles: feeds, epochs, compound overrides."""
        out = [f.guard for f in self.feeds]
        if self.with_role("epoch_start"):
            out.append(EPOCHS_GUARD)
        out += [s.name + OVERRIDDEN_SUFFIX for s in self.states if s.compound]
        return tuple(out)

    def guard_doc(self, name: str) -> str:
        """What ``name`` means, for declared and runtime guards alike."""
        for g in self.guards:
            if g.name == name:
                return g.doc
        for f in self.feeds:
            if f.guard == name:
                return f"feed {f.name!r} has another item"
        if name == EPOCHS_GUARD:
            return f"the next epoch is <= {self.epochs.total}"
        if name.endswith(OVERRIDDEN_SUFFIX):
            return f"the trainer overrides {name.removesuffix(OVERRIDDEN_SUFFIX)}()"
        return {"stop_requested": "a stop was requested", "epoch_stop_requested": "stop_epoch() was requested",
                "skip_requested": "skip_batch() was requested"}.get(name, "")

    def with_role(self, role: str) -> tuple[str, ...]:
        """Names of the states that declare ``role``, in declaration order."""
        return tuple(s.name for s in self.states if role in s.roles)

    def feed(self, name: str) -> Feed:
        """The feed called ``name``; unknown names raise with close matches."""
        for f in self.feeds:
            if f.name == name:
                return f
        raise UnknownStateError(name, [f.name for f in self.feeds], what="feed")

    def body(self, compound: str) -> frozenset[str]:
        """The states inside ``compound`` (its descendants)."""
        return frozenset(s.name for s in self.states if compound in self.enclosing(s.name))

    def entry(self, compound: str) -> str | None:
        """The first state of ``compound``'s body: the target of its descend edge."""
        inside = self.body(compound)
        for e in self.out_edges(compound):
            if e.target in inside and e.kind not in ("control", "override"):
                return e.target
        return None

    def no_grad_states(self) -> frozenset[str]:
        """States that run without grad: those with ``no_grad`` and the bodies of such compounds."""
        out: set[str] = set()
        for name in self.with_role("no_grad"):
            out.add(name)
            out |= self.body(name)
        return frozenset(out)

    def state(self, name: str) -> State:
        """The state called ``name``; unknown names raise with close matches."""
        found = _lookup(self)[1].get(name)
        if found is None:
            raise UnknownStateError(name, self.state_names)
        return found

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
        """A stable hash of states (with their roles), edges, feeds and guards; checkpoints record it.

        Computed once per spec object (a run looks it up on every start).
        """
        cached = _FINGERPRINTS.get(id(self))
        if cached is not None and cached[0]() is self:
            return cached[1]
        value, key = self._fingerprint(), id(self)
        _FINGERPRINTS[key] = (weakref.ref(self, lambda _: _FINGERPRINTS.pop(key, None)), value)
        return value

    def _fingerprint(self) -> str:
        data = self.to_dict()
        for key in ("doc", "colorscheme", "graph_name"):
            data.pop(key)
        for state in data["states"]:
            state.pop("doc")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data of the spec (guard predicates are code, not data: left out)."""

        def plain(value: Any) -> Any:
            if isinstance(value, frozenset):
                return sorted(value)
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            return value

        def record(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
            return {f.name: plain(getattr(obj, f.name)) for f in attrs.fields(type(obj)) if f.name not in skip}

        return {
            "name": self.name,
            "states": [record(s) for s in self.states],
            "edges": [record(e) for e in self.edges],
            "initial": self.initial,
            "finals": list(self.finals),
            "guards": [record(g, ("predicate", "check")) for g in self.guards],
            "feeds": [record(f) for f in self.feeds],
            "epochs": record(self.epochs),
            "colorscheme": self.colorscheme,
            "graph_name": self.graph_name,
            "doc": self.doc,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lifecycle:
        """The spec :meth:`to_dict` returned (validated again; guards without predicates)."""
        return cls(
            name=data["name"],
            states=tuple(State(**s) for s in data["states"]),
            edges=tuple(Edge(**e) for e in data["edges"]),
            initial=data["initial"],
            finals=tuple(data["finals"]),
            guards=tuple(Guard(**g) for g in data.get("guards", ())),
            feeds=tuple(Feed(**f) for f in data.get("feeds", ())),
            epochs=EpochCounter(**data.get("epochs", {})),
            colorscheme=data.get("colorscheme", "set36"),
            graph_name=data.get("graph_name"),
            doc=data.get("doc", ""),
        )

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
    yield from _role_problems(spec, known)


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


def _role_problems(spec: Lifecycle, known: set[str]) -> Iterator[str]:
    """Roles and feeds: known names, consistent epochs, resumable states with no item in flight."""
    feeds = [f.name for f in spec.feeds]
    yield from _duplicates_of(feeds, "feed")
    yield from _feed_bindings(spec, feeds)
    yield from _epoch_roles(spec, known)
    yield from _resumable_states(spec)
    declared = [g.name for g in spec.guards]
    yield from _duplicates_of(declared, "guard")
    for name in sorted(set(declared) & set(CONTROL_GUARDS + spec.runtime_guards)):
        yield (f"guard {name!r} is answered by the runtime ({spec.guard_doc(name) or 'a control request'}); "
               f"do not declare it as a Guard")
    for f in spec.feeds:
        if f.iterable is None and f.loader is None:
            yield f"feed {f.name!r} reads nothing: give iterable= (an attribute hooks set) and/or loader="
    counting = [f.name for f in spec.feeds if f.counts_steps]
    if len(counting) > 1:
        yield f"feeds {counting} all count steps; at most one feed of a lifecycle counts training steps"
    if spec.with_role("batch_end") and not counting:
        yield (f"states {list(spec.with_role('batch_end'))} have role 'batch_end' but no feed counts steps: "
               f"declare the training feed with counts_steps=True")


def _duplicates_of(names: list[str], what: str) -> Iterator[str]:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            yield f"{what} {n!r} is declared twice"
        seen.add(n)


def _feed_bindings(spec: Lifecycle, feeds: list[str]) -> Iterator[str]:
    uses: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for s in spec.states:
        for role in sorted(s.roles - set(ROLES)):
            yield _unknown(role, ROLES, "role", f"state {s.name!r}")
        for use in ("opens", "takes", "item", "closes"):
            name = getattr(s, use)
            if name is None:
                continue
            if name not in feeds:
                yield _unknown(name, feeds, "feed", f"state {s.name!r} {use}=")
            elif s.compound and use == "takes":
                yield (f"compound state {s.name!r} cannot take an item of feed {name!r}; "
                       f"the first state of its body does")
            uses[name][use].append(s.name)
    for f in spec.feeds:
        if not uses[f.name]["opens"]:
            yield f"feed {f.name!r} is never opened: give the state where its loop begins opens={f.name!r}"
        if not uses[f.name]["takes"]:
            yield f"feed {f.name!r} is never taken from: give the state that handles an item takes={f.name!r}"


def _epoch_roles(spec: Lifecycle, known: set[str]) -> Iterator[str]:
    starts, ends = spec.with_role("epoch_start"), spec.with_role("epoch_end")
    for role, names in (("epoch_start", starts), ("epoch_end", ends)):
        if len(names) > 1:
            yield f"role {role!r} is declared by {len(names)} states {list(names)}; an epoch has one"
    if starts and not ends:
        yield f"the epoch opened at {starts[0]!r} never closes: give a state roles={{'epoch_end'}}"
    if ends and not starts:
        yield f"the epoch closed at {ends[0]!r} never opens: give a state roles={{'epoch_start'}}"
    if starts and ends and starts[0] in known:
        forward: dict[str, set[str]] = defaultdict(set)
        for e in spec.edges:
            if e.kind != "control":
                forward[e.source].add(e.target)
        if ends[0] not in _closure({starts[0]}, forward):
            yield f"the epoch opened at {starts[0]!r} never closes: {ends[0]!r} is not reachable from it"
    if not starts and any(EPOCHS_GUARD in e.guard for e in spec.edges):
        yield f"guard {EPOCHS_GUARD!r} counts epochs, but no state has role 'epoch_start'"


def _resumable_states(spec: Lifecycle) -> Iterator[str]:
    """A resumable state must not be followed by one that receives an item it did not take."""
    by_name = {s.name: s for s in spec.states}
    for name in spec.with_role("resumable"):
        for e in spec.out_edges(name):
            after = by_name.get(e.target)
            if (e.kind != "control" and after is not None and after.item and not after.compound
                    and after.takes != after.item):
                yield (f"state {name!r} is resumable but {after.name!r} after it receives the item in flight "
                       f"of feed {after.item!r}; a checkpoint there could not resume it")


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
