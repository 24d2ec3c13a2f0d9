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
from collections import defaultdict, deque
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

_MEMO: dict[tuple[str, int], tuple[weakref.ref[Any], Any]] = {}


def _memo(what: str, spec: Any, build: Any) -> Any:
    """``build(spec)``, computed once per spec object (by identity: a frozen spec hashes by value,
    which costs as much as building) and forgotten with it."""
    key = (what, id(spec))
    cached = _MEMO.get(key)
    if cached is not None and cached[0]() is spec:
        return cached[1]
    value = build(spec)
    _MEMO[key] = (weakref.ref(spec, lambda _: _MEMO.pop(key, None)), value)
    return value


def _lookup(spec: Any) -> tuple[tuple[str, ...], dict[str, State]]:
    """A spec's state names and states by name (runs ask often)."""
    return _memo("lookup", spec, lambda s: (tuple(x.name for x in s.states), {x.name: x for x in s.states}))  # type: ignore[no-any-return]


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

    The spec refuses a data flow the runtime cannot serve: a taking state is entered only
    on edges that carry the feed's guard (its lookahead fetches the item), after a state
    that opens the feed on every path, and neither opens nor closes that feed itself; a
    state with ``item=`` comes after a take in the same pass; no ``resumable`` state lies
    on a path from a take to a use of its item (a checkpoint does not hold the item).
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
      (true while another item is waiting). Each feed has a guard of its own, not named
      like a control, epoch or override guard.
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
        return _memo("fingerprint", self, Lifecycle._fingerprint)  # type: ignore[no-any-return]

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
    yield from _feed_flow(spec, known)
    yield from _feed_guards(spec)
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


def _feed_guards(spec: Lifecycle) -> Iterator[str]:
    """A feed's guard is its own: the runtime answers a guard name from the first feed with it,
    and control, epoch and override guards come before feeds."""
    owner: dict[str, str] = {}
    overrides = {s.name + OVERRIDDEN_SUFFIX: s.name for s in spec.states if s.compound}
    for f in spec.feeds:
        first = owner.setdefault(f.guard, f.name)
        if first != f.name:
            yield (f"feeds {first!r} and {f.name!r} share the guard {f.guard!r}: the runtime answers it from "
                   f"feed {first!r} only, so feed {f.name!r} would never be read; give each feed a guard of "
                   f"its own (guard='has_next_{f.name}')")
        taken = (
            "a control request guard the driver answers" if f.guard in CONTROL_GUARDS
            else "the epoch counter's guard" if f.guard == EPOCHS_GUARD
            else f"the guard of compound {overrides[f.guard]!r}'s override" if f.guard in overrides
            else None
        )
        if taken:
            yield (f"feed {f.name!r} has guard {f.guard!r}, which is {taken}; give the feed a guard name "
                   f"of its own (guard='has_next_{f.name}')")


# A state of the walk below: (state entered, feed open, an item taken in this pass).
_Flow = tuple[str, bool, bool]


def _feed_flow(spec: Lifecycle, known: set[str]) -> Iterator[str]:
    """The feed's item is fetched, opened, taken and used in an order the runtime can serve.

    A taking state takes the item its in-edge's guard fetched (the feed's one-item
    lookahead), so every edge into it carries that guard, and it neither opens nor closes
    the feed (both discard the fetched item). On every path from the initial state the
    feed is opened before it is taken, and an item is taken before a state uses it
    (``item=``). A resumable state holds no item in flight: no path leads from it to a
    state that uses the item before a new one is taken (a checkpoint does not hold it).
    """
    if spec.initial not in known:
        return
    by_name = {s.name: s for s in spec.states}
    out: dict[str, list[Edge]] = defaultdict(list)
    into: dict[str, list[Edge]] = defaultdict(list)
    for e in spec.edges:
        if e.source in known and e.target in known:
            out[e.source].append(e)
            into[e.target].append(e)
    seen: set[str] = set()
    for feed in spec.feeds:
        if feed.name in seen:
            continue
        seen.add(feed.name)
        yield from _taking_states(spec, feed, by_name, into)
        yield from _feed_paths(spec, feed, by_name, out)


def _taking_states(spec: Lifecycle, feed: Feed, by_name: dict[str, State],
                   into: dict[str, list[Edge]]) -> Iterator[str]:
    name, guard = feed.name, feed.guard
    for s in spec.states:
        if s.takes != name or s.compound:
            continue
        guarded = [e for e in into[s.name] if guard in e.guard]
        fetched = f"the item the guard {guard!r} fetched" + (f" on edge {guarded[0].describe()}" if guarded else "")
        if s.opens == name:
            yield (f"state {s.name!r} both opens and takes feed {name!r}: opening the pass (done first) discards "
                   f"{fetched}, so its hook would get a placeholder; split it: keep opens={name!r} on "
                   f"{s.name!r} and move takes={name!r} (and item=) to a new state entered from {s.name!r} on an "
                   f"edge guarded by {guard!r}")
        if s.closes == name:
            yield (f"state {s.name!r} both closes and takes feed {name!r}: closing the pass (done first) discards "
                   f"{fetched}, so its hook would get a placeholder; split it: keep takes={name!r} on "
                   f"{s.name!r} and move closes={name!r} to a new state its loop exits to (the fallback edge "
                   f"taken when {guard!r} is false)")
        if s.name == spec.initial:
            yield (f"state {s.name!r} is the initial state but takes feed {name!r}: a run starts there with no "
                   f"item fetched; begin at a state that opens={name!r} and enter {s.name!r} on an edge "
                   f"guarded by {guard!r}")
        for e in into[s.name]:
            if guard not in e.guard:
                yield (f"edge {e.describe()} enters {s.name!r}, which takes feed {name!r}, without the feed's "
                       f"guard {guard!r}: nothing fetched the item, so {s.name!r} would take a placeholder; add "
                       f"{guard!r} to the edge's guard= (its lookahead fetches the item)")


def _after(state: State, feed: str, opened: bool, taken: bool) -> tuple[bool, bool]:
    """The feed's (open, item taken in this pass) after ``state``'s bookkeeping, in the
    runtime's order: open, close, take."""
    if state.opens == feed:
        opened, taken = True, False
    if state.closes == feed:
        opened, taken = False, False
    if state.takes == feed:
        taken = True
    return opened, taken


def _path(parent: dict[Any, Any], node: Any, name: Callable[[Any], str]) -> list[str]:
    names: list[str] = []
    while node is not None:
        names.append(name(node))
        node = parent[node]
    return names[::-1]


def _feed_paths(spec: Lifecycle, feed: Feed, by_name: dict[str, State],
                out: dict[str, list[Edge]]) -> Iterator[str]:
    """Walk every path from the initial state, tracking the feed (breadth first: the first path
    found to a state is a shortest one)."""
    name = feed.name
    start: _Flow = (spec.initial, False, False)
    parent: dict[_Flow, _Flow | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        after = _after(by_name[node[0]], name, node[1], node[2])
        for e in out[node[0]]:
            nxt = (e.target, *after)
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    opened_somewhere = any(s.opens == name for s in spec.states)
    taken_somewhere = any(s.takes == name and not s.compound for s in spec.states)
    reported: set[tuple[str, str]] = set()
    for node in parent:
        s = by_name[node[0]]
        if (s.name, "flow") in reported:
            continue
        resets = s.opens == name or s.closes == name  # bookkeeping before the hook
        if (s.takes == name and not s.compound and not resets and not node[1] and opened_somewhere
                and s.name != spec.initial):
            reported.add((s.name, "flow"))
            path = _path(parent, node, lambda n: n[0])
            openers = [o.name for o in spec.states if o.opens == name]
            yield (f"state {s.name!r} takes feed {name!r} {_unopened(path, by_name, name)}, on the path "
                   f"{' -> '.join(path)} (opens={name!r} is on {', '.join(map(repr, openers))}); give a state "
                   f"that every path passes before {s.name!r} opens={name!r} (the edge into {s.name!r} guarded "
                   f"by {feed.guard!r} then fetches from the open pass)")
        elif (s.item == name and not s.compound and s.takes != name and (resets or not node[2])
              and taken_somewhere):
            reported.add((s.name, "flow"))
            path = _path(parent, node, lambda n: n[0])
            since = f"since the pass {'opened' if s.opens == name else 'closed'} at {s.name!r} itself" if resets \
                else _untaken(path, by_name, name)
            yield (f"state {s.name!r} receives the item of feed {name!r} (item={name!r}) but no item was taken "
                   f"{since}, on the path {' -> '.join(path)}; its hook would get a stale item or None: "
                   f"enter it only after a state that takes={name!r}")
        if s.has("resumable") and _after(s, name, node[1], node[2])[1] and (s.name, "resumable") not in reported:
            reported.add((s.name, "resumable"))
            yield from _in_flight(s.name, name, by_name, out)


def _unopened(path: list[str], by_name: dict[str, State], feed: str) -> str:
    for before in reversed(path[:-1]):
        if by_name[before].closes == feed:
            return f"after the pass closed at {before!r} and before it is opened again"
        if by_name[before].opens == feed:
            break
    return "before any state opens it"


def _untaken(path: list[str], by_name: dict[str, State], feed: str) -> str:
    for before in reversed(path[:-1]):
        s = by_name[before]
        if s.opens == feed or s.closes == feed:
            return f"since the pass {'closed' if s.closes == feed else 'opened'} at {before!r}"
    return "before it"


def _in_flight(resumable: str, feed: str, by_name: dict[str, State], out: dict[str, list[Edge]]) -> Iterator[str]:
    """An item of ``feed`` is in flight after ``resumable``: no path from it may reach a state
    that uses the item before the feed is taken, opened or closed again."""
    parent: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for e in out[resumable]:
        if e.target not in parent:
            parent[e.target] = None
            queue.append(e.target)
    while queue:
        name = queue.popleft()
        s = by_name[name]
        if feed in (s.takes, s.opens, s.closes):
            continue  # a new item (or a new pass): the one in flight is no longer used
        if s.item == feed and not s.compound:
            path = " -> ".join([resumable, *_path(parent, name, lambda n: n)])
            yield (f"state {resumable!r} is resumable but {name!r} after it receives the item in flight of feed "
                   f"{feed!r} (path {path}, no new item taken): a checkpoint at {resumable!r} does not hold the "
                   f"item, so a resume would hand {name!r} None; drop 'resumable' from {resumable!r} (declare it "
                   f"where the item is no longer used) or take a new item before {name!r}")
            return
        for e in out[name]:
            if e.target not in parent:
                parent[e.target] = name
                queue.append(e.target)


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
