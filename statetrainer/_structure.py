"""The shape of a lifecycle as a reader sees it: its loops and how often each state runs.

Both the diagrams (colours by *tier*) and ``statetrainer explain`` (nested-loop
pseudo-code) read a lifecycle through this module, so they agree with each other and
with the machine. Everything is derived from the spec:

* **loops**: each ``loop`` edge closes a loop at its target (the *head*); the loop's body
  is the head and every state that reaches the loop's tail without passing the head
  (a natural loop, over the happy-path edges: control and override edges excluded). Loop
  edges sharing a head form one loop (``micro_batch`` loops back twice in the
  accumulation example). A loop is an *epoch* loop when its guard is
  ``epochs_remaining``, an *item* loop when its guard is a feed's.
* **tiers**: ``entry`` (the initial compound: what ``train()`` or ``test()`` enters),
  ``item`` (inside an item loop, or a per-item compound such as ``train_batch``),
  ``epoch`` (inside an epoch loop, or the innermost compound around the state that opens
  the epoch), ``run`` (the rest: once per run of the lifecycle).

Torch-free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import attrs

from statetrainer.spec import EPOCHS_GUARD, Edge, Feed, Lifecycle

#: Tiers in nesting order, with what each means in a legend.
TIERS: dict[str, str] = {
    "entry": "the lifecycle's entry",
    "run": "once per run",
    "epoch": "once per epoch",
    "item": "once per item (batch)",
}


@attrs.frozen
class Loop:
    """A loop of the lifecycle: its head, the loop edges closing it, and its body."""

    head: str
    edges: tuple[Edge, ...]
    body: frozenset[str]
    feed: Feed | None

    @property
    def guard(self) -> tuple[str, ...]:
        """The guards every loop edge of this loop shares (the loop's condition)."""
        common = set(self.edges[0].guard)
        for e in self.edges[1:]:
            common &= set(e.guard)
        return tuple(g for g in self.edges[0].guard if g in common)

    @property
    def labels(self) -> tuple[str, ...]:
        """The seed's loop labels of the loop edges (``train_epoch_iter``), in declaration order."""
        return tuple(e.label for e in self.edges if e.label)

    @property
    def tails(self) -> frozenset[str]:
        """The states whose loop edge goes back to the head."""
        return frozenset(e.source for e in self.edges)

    @property
    def counts_epochs(self) -> bool:
        """True for the epoch loop (guard ``epochs_remaining``)."""
        return EPOCHS_GUARD in self.guard


def flow_edges(spec: Lifecycle) -> tuple[Edge, ...]:
    """The happy-path edges: every edge but control requests and compound overrides."""
    return tuple(e for e in spec.edges if e.kind not in ("control", "override"))


def loops(spec: Lifecycle) -> tuple[Loop, ...]:
    """The lifecycle's loops, by the declaration order of their first loop edge."""
    by_head: dict[str, list[Edge]] = defaultdict(list)
    for e in spec.edges:
        if e.kind == "loop":
            by_head[e.target].append(e)
    backward: dict[str, set[str]] = defaultdict(set)
    for e in flow_edges(spec):
        backward[e.target].add(e.source)
    out = []
    for head, edges in by_head.items():
        body = _natural_body(head, [e.source for e in edges], backward)
        feed = next((f for f in spec.feeds if any(f.guard in e.guard for e in edges)), None)
        out.append(Loop(head, tuple(edges), frozenset(body), feed))
    return tuple(out)


def _natural_body(head: str, tails: Iterable[str], backward: dict[str, set[str]]) -> set[str]:
    body = {head}
    stack = [t for t in tails if t != head]
    body.update(stack)
    while stack:
        for before in backward.get(stack.pop(), ()):
            if before not in body:
                body.add(before)
                stack.append(before)
    return body


def tiers(spec: Lifecycle) -> dict[str, str]:
    """Each state's tier (``entry``, ``run``, ``epoch`` or ``item``), see the module docstring."""
    found = loops(spec)
    item_states = set().union(*(lp.body for lp in found if lp.feed is not None))
    epoch_states = set().union(*(lp.body for lp in found if lp.counts_epochs))
    epoch_compound = _epoch_compound(spec)
    out: dict[str, str] = {}
    for s in spec.states:
        if s.name == spec.initial and s.compound:
            out[s.name] = "entry"
        elif (s.compound and s.item) or (not s.compound and s.name in item_states):
            out[s.name] = "item"
        elif s.name in epoch_states or s.name == epoch_compound:
            out[s.name] = "epoch"
        else:
            out[s.name] = "run"
    return out


def _epoch_compound(spec: Lifecycle) -> str | None:
    """The innermost compound around the state that opens the epoch (``train_epoch``)."""
    starts = spec.with_role("epoch_start")
    if not starts:
        return None
    around = spec.enclosing(starts[0])
    return around[-1] if around and around[-1] != spec.initial else None
