"""Mermaid flowcharts of lifecycles: what :mod:`statetrainer.diagrams` draws in DOT, as far
as Mermaid can express it (no double borders: a thick border marks resumable states).

Torch-free.
"""

from __future__ import annotations

from statetrainer import _drawing, _structure, diagrams
from statetrainer.spec import Lifecycle


def flowchart(
    spec: Lifecycle, *, highlight: str | None = None, failed: str | None = None, extensions: bool = True,
    nested: bool = False, legend: bool = False,
) -> str:
    """Mermaid ``flowchart`` text for ``spec``, with what Mermaid can show of the DOT drawing.

    Tier colours (``classDef``), the role line under each name, guards on edge labels,
    dotted extension edges (``-.->``), a thick border for resumable states, a ``no grad``
    subgraph, the current (``highlight``) and ``failed`` states, and an optional legend.
    """
    shown = list(diagrams.seed_view_states(spec, nested))
    tiers = _structure.tiers(spec)
    lines = ["flowchart TD", *_mermaid_classes()]
    regions = diagrams.no_grad_regions(spec, shown)
    inside = {n for names in regions.values() for n in names}
    lines += [_mermaid_node(spec, n) for n in shown if n not in inside]
    for root, names in regions.items():
        lines += [f'    subgraph no_grad_{root} ["no grad"]', *("    " + _mermaid_node(spec, n) for n in names),
                  "    end", f"    style no_grad_{root} fill:{_drawing.NO_GRAD_FILL},stroke:{_drawing.NO_GRAD_BORDER}"]
    for (src, dst, label), edges in diagrams.seed_edge_groups(spec, nested).items():
        guard = _drawing.guard_text(edges, choice_fallback=all(e.kind == "choice" for e in edges))
        text = " ".join(part for part in (label or "", guard) if part)
        lines.append(f'    {src} -- "{text}" --> {dst}' if text else f"    {src} --> {dst}")
    if extensions:
        lines += _mermaid_extensions(spec, nested)
    lines += _mermaid_class_lines(spec, shown, tiers, highlight, failed)
    if legend:
        lines += _mermaid_legend(spec, shown, tiers)
    return "\n".join(lines) + "\n"


def _mermaid_classes() -> list[str]:
    out = [f"    classDef {tier} fill:{hex_},stroke:#333,color:#000" for tier, hex_ in _drawing.TIER_HEX.items()]
    out += [
        "    classDef resumable stroke-width:3px",
        f"    classDef current stroke:{_drawing.CURRENT},stroke-width:3px",
        f"    classDef failed fill:{_drawing.FAILED_FILL},stroke:{_drawing.FAILED_BORDER},stroke-width:3px,color:#fff",
    ]
    return out


def _mermaid_node(spec: Lifecycle, name: str) -> str:
    state = spec.state(name)
    words = _drawing.role_words(state)
    text = f'{name}<br/><small>{" · ".join(words)}</small>' if words else name
    return f'    {name}["{text}"]' if state.compound else f'    {name}(["{text}"])'


def _mermaid_extensions(spec: Lifecycle, nested: bool) -> list[str]:
    lines: list[str] = []
    declared: set[str] = set()
    for src, dst, label, edge in diagrams.drawn_extension_edges(spec, nested):
        node = _mermaid_id(src)
        if node != src and node not in declared:
            declared.add(node)
            lines.append(f'    {node}["{src}"]')
        guard = "" if edge.kind == "override" else _drawing.guard_text([edge])
        text = " ".join(part for part in (label, guard) if part)
        lines.append(f'    {node} -. "{text}" .-> {dst}' if text else f"    {node} -.-> {dst}")
    return lines


def _mermaid_class_lines(
    spec: Lifecycle, shown: list[str], tiers: dict[str, str], highlight: str | None, failed: str | None,
) -> list[str]:
    lines = []
    for tier in _drawing.TIER_HEX:
        names = [n for n in shown if tiers[n] == tier]
        if names:
            lines.append(f"    class {','.join(names)} {tier}")
    resumable = [n for n in shown if spec.state(n).has("resumable")]
    if resumable:
        lines.append(f"    class {','.join(resumable)} resumable")
    if highlight:
        lines.append(f"    class {highlight} current")
    if failed:
        lines.append(f"    class {failed} failed")
    return lines


def _mermaid_legend(spec: Lifecycle, shown: list[str], tiers: dict[str, str]) -> list[str]:
    lines = ['    subgraph legend ["legend"]']
    used = [t for t in _structure.TIERS if any(tiers[n] == t for n in shown)]
    for tier in used:
        lines.append(f'    legend_{tier}["{_structure.TIERS[tier]}"]:::{tier}')
    lines += [
        '    legend_edges["solid: an edge of the seed\'s diagram<br/>dotted: a case the seed leaves implicit<br/>'
        '[guard]: taken when the guard is true"]',
        '    legend_roles["thick border: resumable<br/>small text: roles and feeds<br/>grey box: no grad"]',
        "    end",
    ]
    return lines


def _mermaid_id(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).strip("_") + (
        "_request" if not name.replace("_", "").isalnum() else ""
    )
