"""``verify``'s role checks: what a lifecycle's roles are, and that its diagram draws them.

:func:`role_report` lists a lifecycle's runtime roles in words (where the epoch opens and
closes, each feed and where it is opened, taken and closed, the batch end, the resumable
states, the no-grad region). :func:`undrawn_roles` renders the lifecycle's DOT (every
state shown, nested regions included), parses it back with pydot and lists each role,
feed binding or guard the drawing is missing — empty when the diagram shows them all.

Torch-free.
"""

from __future__ import annotations

import html
import re
from typing import Any

from statetrainer import _drawing, diagrams
from statetrainer.spec import Lifecycle


def role_report(spec: Lifecycle) -> list[str]:
    """The lifecycle's roles, one line each (empty when it declares none)."""
    lines: list[str] = []
    starts, ends = spec.with_role("epoch_start"), spec.with_role("epoch_end")
    if starts or ends:
        c = spec.epochs
        lines.append(f"epoch: opens at {_names(starts)}, closes at {_names(ends)} "
                     f"(self.{c.attr} from self.{c.first} to self.{c.total})")
    for feed in spec.feeds:
        source = " else ".join(f"self.{a}" for a in (feed.iterable, feed.loader) if a)
        extra = "; counts training steps" if feed.counts_steps else ""
        extra += f"; self.{feed.skip_flag} skips an item" if feed.skip_flag else ""
        lines.append(f"feed {feed.name!r} ({source}; loop guard {feed.guard}{extra}): {_bindings(spec, feed.name)}")
    if spec.with_role("batch_end"):
        lines.append(f"batch end: {_names(spec.with_role('batch_end'))}")
    if spec.with_role("resumable"):
        lines.append(f"resumable ({len(spec.with_role('resumable'))}): {_names(spec.with_role('resumable'))}")
    for root in spec.with_role("no_grad"):
        body = sorted(spec.body(root))
        lines.append(f"no grad: {root}" + (f" and its body ({', '.join(body)})" if body else ""))
    return lines


def role_summary(spec: Lifecycle) -> str:
    """A few words for the one-line summary: ``epoch, 2 feeds, 9 resumable, 1 no-grad region``."""
    parts = []
    if spec.with_role("epoch_start"):
        parts.append("epoch")
    if spec.feeds:
        parts.append(f"{len(spec.feeds)} feed{'s' if len(spec.feeds) > 1 else ''}")
    if spec.with_role("batch_end"):
        parts.append("batch end")
    if spec.with_role("resumable"):
        parts.append(f"{len(spec.with_role('resumable'))} resumable")
    if spec.with_role("no_grad"):
        parts.append(f"{len(spec.with_role('no_grad'))} no-grad region")
    return ", ".join(parts) or "no roles"


_BINDINGS = {"opens": "opened at", "takes": "taken at", "item": "its item handed to", "closes": "closed at"}


def _bindings(spec: Lifecycle, feed: str) -> str:
    """``opened at a, taken at b, its item handed to b, c, closed at d``."""
    parts = []
    for use, words in _BINDINGS.items():
        states = tuple(s.name for s in spec.states if getattr(s, use) == feed)
        if states:
            parts.append(f"{words} {_names(states)}")
    return ", ".join(parts)


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "-"


# -- the drawing, parsed back -------------------------------------------------------------


def undrawn_roles(spec: Lifecycle) -> list[str]:
    """What the rendered DOT of ``spec`` fails to show: roles, feed bindings, guards."""
    import pydot

    problems: list[str] = []
    for nested in (False, True):
        text = diagrams.to_dot(spec, nested=nested, legend=True)
        graphs = pydot.graph_from_dot_data(text)
        if not graphs:  # pragma: no cover - our own DOT always parses
            return [f"the DOT rendered for {spec.name!r} does not parse"]
        nodes = _nodes(graphs[0])
        view = "nested view" if nested else "diagram"
        for name in diagrams.seed_view_states(spec, nested):
            problems += [f"{view}: {p}" for p in _state_problems(spec, name, nodes.get(name))]
        problems += [f"{view}: {p}" for p in _guard_problems(spec, nested, graphs[0])]
    return sorted(set(problems), key=problems.index)


def _nodes(graph: Any, clusters: tuple[str, ...] = ()) -> dict[str, tuple[dict[str, str], tuple[str, ...]]]:
    """Every node of ``graph`` (and its subgraphs): its attributes and the clusters around it."""
    out: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {}
    for node in graph.get_nodes():
        name = node.get_name().strip('"')
        if name not in ("graph", "node", "edge"):
            out[name] = (node.get_attributes(), clusters)
    for sub in graph.get_subgraphs():
        out.update(_nodes(sub, (*clusters, sub.get_name().strip('"'))))
    return out


def _label_text(label: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", label))


def _state_problems(spec: Lifecycle, name: str, found: tuple[dict[str, str], tuple[str, ...]] | None) -> list[str]:
    if found is None:
        return [f"state {name!r} is not drawn"]
    attributes, clusters = found
    state = spec.state(name)
    text = _label_text(attributes.get("label", name))
    out = [f"{name}: role {word!r} is not in its label" for word in _drawing.role_words(state) if word not in text]
    if state.has("resumable") != (attributes.get("peripheries") == "2"):
        out.append(f"{name}: resumable is {state.has('resumable')} but its border "
                   f"{'is' if attributes.get('peripheries') == '2' else 'is not'} double")
    in_region = any(c.startswith("cluster_no_grad") for c in clusters)
    if (name in spec.no_grad_states()) != in_region:
        out.append(f"{name}: {'runs' if name in spec.no_grad_states() else 'does not run'} without grad, "
                   f"but it is {'inside' if in_region else 'outside'} a no-grad region")
    return out


def _guard_problems(spec: Lifecycle, nested: bool, graph: Any) -> list[str]:
    drawn: dict[tuple[str, str], list[str]] = {}
    for e in graph.get_edges():
        key = (e.get_source().strip('"'), e.get_destination().strip('"'))
        drawn.setdefault(key, []).append(_label_text(e.get("label") or "").replace("\\n", " "))
    out = []
    for (src, dst, _), edges in diagrams.seed_edge_groups(spec, nested).items():
        guard = _drawing.guard_text(edges, choice_fallback=all(e.kind == "choice" for e in edges))
        if guard and not any(guard in label for label in drawn.get((src, dst), [])):
            out.append(f"edge {src} -> {dst}: guard {guard} is not in its label")
    return out
