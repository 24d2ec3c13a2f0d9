"""A run's own lifecycles, drawn: specs from ``lifecycles.json``, SVG from Graphviz, a map for the page.

The page highlights states and edges in the SVG Graphviz renders from
:func:`statetrainer.diagrams.to_dot` by matching its ``<g class="node"><title>NAME</title>``
and ``<g class="edge"><title>A->B</title>`` elements. A transition ``a -> b`` of the
machine is not always drawn as ``a->b`` (a return is drawn from its compound state, a
stop from the ``stop()`` node), so :func:`client_spec` sends, for every transition the
spec allows, the title and occurrence of the edge that draws it.

Diagrams are drawn with their nested regions expanded (``nested=True``): every state the
runtime can be in is a node, so the live highlight never has to fall back to an
enclosing compound.

Until a runtime writes ``lifecycles.json``, the built-in lifecycle of the status'
name is used, and the page says so. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import attrs

from statetrainer import _drawing, _structure, diagrams
from statetrainer._structure import TIERS
from statetrainer.roles import ROLES
from statetrainer.spec import CONTROL_GUARDS, Edge, Lifecycle, State
from statetrainer.web.files import Cache, Refused, Roots, read_json, signature

LIFECYCLES = "lifecycles.json"


@attrs.frozen
class RunLifecycles:
    """The lifecycles the run page can draw, where they came from, and what went wrong."""

    specs: dict[str, Lifecycle]
    source: str
    note: str | None = None
    callbacks: dict[str, dict[str, list[str]]] = attrs.field(factory=dict)
    #: True when the run recorded its callbacks (then a state without any has none).
    callbacks_recorded: bool = False


def run_lifecycles(roots: Roots, run: Path, status: dict[str, Any] | None, cache: Cache) -> RunLifecycles:
    """The run's lifecycles: its ``lifecycles.json``, else the built-ins (with a note saying so)."""
    try:
        path = roots.file(run, LIFECYCLES)
    except Refused as exc:
        return _fallback(status, f"{exc}; ")
    sig = signature(path)
    if sig is None:
        return _fallback(status, "this run has no lifecycles.json (recorded by an older statetrainer); ")
    loaded = cache.get(("lifecycles", str(path)), sig, lambda: _load(run, path, cache))
    return loaded if loaded.specs else _fallback(status, f"{loaded.note}; ")


def _load(run: Path, path: Path, cache: Cache) -> RunLifecycles:
    from statetrainer._errors import StateTrainerError
    from statetrainer.inspect import read_lifecycles

    try:
        specs = read_lifecycles(run)
    except StateTrainerError as exc:
        return RunLifecycles({}, LIFECYCLES, note=str(exc).replace(str(run) + "/", ""))
    raw, _ = read_json(path, cache)
    recorded = isinstance(raw, dict) and isinstance(raw.get("callbacks"), dict)
    return RunLifecycles(dict(specs), LIFECYCLES, callbacks=_callbacks(raw), callbacks_recorded=recorded)


def _callbacks(raw: Any) -> dict[str, dict[str, list[str]]]:
    """``{"callbacks": {lifecycle: {state: [names]}}}`` when the runtime records them."""
    table = raw.get("callbacks") if isinstance(raw, dict) else None
    if not isinstance(table, dict):
        return {}
    out: dict[str, dict[str, list[str]]] = {}
    for lifecycle, states in table.items():
        if isinstance(states, dict):
            out[str(lifecycle)] = {str(s): [str(n) for n in names] for s, names in states.items()
                                   if isinstance(names, list)}
    return out


def _fallback(status: dict[str, Any] | None, why: str) -> RunLifecycles:
    from statetrainer import lifecycles

    name = (status or {}).get("lifecycle")
    specs = dict(lifecycles.BUILTIN)
    if isinstance(name, str) and name not in specs:
        return RunLifecycles({}, "none", note=f"{why}its lifecycle {name!r} is not a built-in one, "
                                             f"so it cannot be drawn")
    return RunLifecycles(specs, "builtin", note=f"{why}showing statetrainer's built-in lifecycles "
                                                f"({', '.join(specs)}), which may differ from the run's own")


# -- SVG ------------------------------------------------------------------------------


def spec_key(spec: Lifecycle) -> str:
    """A hash of everything the drawing depends on."""
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:20]


def svg(spec: Lifecycle, cache: Cache) -> bytes:
    """The SVG of ``spec`` with its nested regions drawn (rendered once per distinct spec).

    State names go into the DOT text as they are, so a spec read from a run directory
    must name its states with identifiers: anything else could carry DOT syntax to Graphviz.
    """
    from statetrainer._errors import DiagramError

    odd = [s.name for s in spec.states if not s.name.isidentifier()]
    if odd:
        raise DiagramError(f"lifecycle {spec.name!r} cannot be drawn: state names {odd[:5]} are not identifiers")
    key = spec_key(spec)
    return cache.get(("svg", key), key, lambda: diagrams.render(diagrams.to_dot(spec, nested=True), "svg"))


# -- what the page needs to light states and edges ------------------------------------


def edge_titles(spec: Lifecycle) -> tuple[list[str], dict[int, str]]:
    """The drawn edges' titles in DOT (and SVG) order, and each spec edge's (by index) title."""
    order: list[str] = []
    for src, dst, _ in diagrams.drawn_seed_edges(spec, nested=True):
        order.append(f"{src}->{dst}")
    drawn = diagrams.drawn_extension_edges(spec, nested=True)
    labels = {_request(e): src for src, _, _, e in drawn if e.kind == "control"}
    for src, dst, _, _ in drawn:
        order.append(f"{src}->{dst}")
    by_edge: dict[int, str] = {}
    for index, e in enumerate(spec.edges):
        src = labels.get(_request(e), e.source) if e.kind == "control" else e.drawn[0]
        by_edge[index] = f"{src}->{e.target}"
    return order, by_edge


def _request(e: Edge) -> str | None:
    return next((g for g in e.guard if g in CONTROL_GUARDS), None)


def client_spec(spec: Lifecycle, callbacks: dict[str, list[str]]) -> dict[str, Any]:
    """The spec as the run page uses it: states (with roles, feeds, docs, callbacks), the edge map, the legend.

    ``transitions`` maps ``"a->b"`` to ``[title, n]``: light the ``n``-th SVG edge titled
    ``title``. When several edges join ``a`` and ``b`` the first declared non-control one
    wins (a control edge only when nothing else joins them): the trace records states,
    not edges. ``edges`` is the same per spec edge index (with the edge's source and
    target, so a page can check an index against the two states), for a trace that names
    its edge. ``legend`` says which of the diagram's markings this drawing uses.
    """
    order, by_edge = edge_titles(spec)
    nth = {i: _occurrence(order, spec.edges, by_edge, i) for i in by_edge}
    transitions: dict[str, list[Any]] = {}
    for rank in range(3):  # seed edges, then extensions and overrides, then control requests
        for i, e in enumerate(spec.edges):
            key = f"{e.source}->{e.target}"
            if _priority(e) == rank and key not in transitions:
                transitions[key] = [by_edge[i], nth[i]]
    shown = list(diagrams.seed_view_states(spec, nested=True))
    tiers = _structure.tiers(spec)
    regions = diagrams.no_grad_regions(spec, shown)
    region_of = {n: root for root, names in regions.items() for n in names}
    return {
        "name": spec.name,
        "doc": spec.doc,
        "initial": spec.initial,
        "finals": list(spec.finals),
        "states": [_state(spec, s.name, callbacks.get(s.name, []), tiers.get(s.name), region_of.get(s.name))
                   for s in spec.states],
        "transitions": transitions,
        "edges": [[by_edge[i], nth[i], e.kind, e.describe(), e.reason, e.source, e.target]
                  for i, e in enumerate(spec.edges)],
        "regions": {f"cluster_no_grad_{root}": {"kind": "no_grad", "root": root, "states": names}
                    for root, names in regions.items()},
        "legend": legend(spec, shown, tiers, bool(regions)),
        "key": spec_key(spec),
    }


def _priority(e: Edge) -> int:
    return 0 if e.is_seed else 2 if e.kind == "control" else 1


def _occurrence(order: list[str], edges: tuple[Edge, ...], by_edge: dict[int, str], index: int) -> int:
    """Which of the SVG edges sharing a title draws spec edge ``index`` (seed before extension)."""
    title = by_edge[index]
    count = order.count(title)
    if count <= 1:
        return 0
    return count - 1 if not edges[index].is_seed else 0


def _state(spec: Lifecycle, name: str, callbacks: list[str], tier: str | None, region: str | None) -> dict[str, Any]:
    s = spec.state(name)
    return {"name": name, "doc": s.doc, "roles": sorted(s.roles), "parent": s.parent, "region": s.region,
            "compound": s.compound, "feed": s.takes or s.opens or s.closes,
            "opens": s.opens, "takes": s.takes, "item": s.item, "closes": s.closes,
            "words": _drawing.role_words(s), "marks": marks(spec, s), "tier": tier,
            "no_grad_region": region, "callbacks": callbacks}


# -- what the diagram's markings mean -------------------------------------------------

#: The role words of a state's second line (:func:`statetrainer._drawing.role_words`), by role.
ROLE_WORDS: dict[str, str] = {**_drawing.ROLE_WORDS, "resumable": "resumable"}


def marks(spec: Lifecycle, state: State) -> list[list[str]]:
    """``[word, role, meaning]`` for each role and feed binding of ``state``, as the diagram draws them.

    ``word`` is what the state's second line in the diagram says (``resumable`` is its
    double border), ``role`` the role or binding it stands for (``epoch_start``,
    ``takes``, ...), ``meaning`` what the runtime does there (:data:`statetrainer.roles.ROLES`).
    """
    out = [[ROLE_WORDS[r], r, ROLES[r]] for r in ("epoch_start", "epoch_end", "batch_end", "no_grad") if state.has(r)]
    feeds = {f.name: f for f in spec.feeds}

    def source(name: str) -> str:
        feed = feeds.get(name)
        where = " or ".join(x for x in (feed.iterable, feed.loader) if x) if feed is not None else ""
        return f"the feed {name!r}" + (f" ({where})" if where else "")

    if state.opens:
        out.append([f"opens {state.opens}", "opens",
                    f"a pass over {source(state.opens)} begins: its iterator is reset"])
    if state.takes:
        counts = state.takes in feeds and feeds[state.takes].counts_steps
        out.append([f"takes {state.takes}", "takes", f"takes the next item of {source(state.takes)}"
                    + ("; each item is a training step" if counts else "")])
    if state.item and state.item != state.takes:
        if state.compound:
            out.append([f"per {state.item} item", "item", f"its body runs once per item of {source(state.item)}"])
        else:
            out.append([f"gets {state.item} item", "item",
                        f"the hook receives the current item of {source(state.item)}"])
    if state.closes:
        out.append([f"closes {state.closes}", "closes", f"the pass over {source(state.closes)} is over"])
    if state.has("resumable"):
        out.append(["resumable", "resumable", ROLES["resumable"] + " (drawn with a double border)"])
    return out


def legend(spec: Lifecycle, shown: list[str], tiers: dict[str, str], no_grad: bool) -> dict[str, Any]:
    """Which markings the drawing of ``spec`` uses, for the page's legend (as the DOT legend chooses them)."""
    guarded = False
    for edges in diagrams.seed_edge_groups(spec, nested=True).values():
        guarded |= bool(_drawing.guard_text(edges, choice_fallback=all(e.kind == "choice" for e in edges)))
    extensions = diagrams.drawn_extension_edges(spec, nested=True)
    guarded |= any(_drawing.guard_text([e]) for _, _, _, e in extensions if e.kind != "override")
    states = [spec.state(n) for n in shown]
    words: list[str] = []
    for s in states:
        words += [w for w in _drawing.role_words(s) if w not in words]
    return {
        "tiers": [[tier, _drawing.TIER_HEX[tier], meaning] for tier, meaning in TIERS.items()
                  if any(tiers.get(n) == tier for n in shown)],
        "roles": [[ROLE_WORDS[r], r, ROLES[r]] for r in ("epoch_start", "epoch_end", "batch_end", "no_grad")
                  if any(s.has(r) for s in states)],
        "feeds": [f.name for f in spec.feeds if any(f.name in (s.opens, s.takes, s.item, s.closes) for s in states)],
        "words": words,
        "resumable": any(s.has("resumable") for s in states),
        "no_grad": no_grad,
        "guards": guarded,
        "extensions": any(e.kind != "control" for _, _, _, e in extensions),
        "requests": any(e.kind == "control" for _, _, _, e in extensions),
    }
