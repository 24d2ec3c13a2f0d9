"""Lifecycle diagrams: rendered from the spec, verified against the seed's DOT files.

* :func:`to_dot` / :func:`to_mermaid` draw a :class:`~statetrainer.Lifecycle` in the
  seed's look (level colours, rounded boxes, dashed ``evaluate_epoch``, labelled loops).
  Edges the seed leaves implicit are drawn dashed and grey; control requests are drawn
  once each, from a small "request" node, instead of from every state.
* :func:`render` turns DOT into SVG/PNG with Graphviz's ``dot`` program.
* :func:`verify` parses a seed DOT file with pydot and compares states, seed edges and
  loop labels with the spec; extension edges are listed apart.

Torch-free.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from statetrainer import _drawing, _structure
from statetrainer._errors import DiagramError
from statetrainer.spec import Edge, Lifecycle

#: Kept for compatibility: the colours :mod:`statetrainer._drawing` uses, quoted for DOT.
GREY = f'"{_drawing.GREY}"'
HIGHLIGHT = f'"{_drawing.CURRENT}"'
_CONTROL_LABELS = {
    "stop_requested": "stop()",
    "epoch_stop_requested": "stop_epoch()",
    "skip_requested": "skip_batch()",
}


# -- which states and edges a diagram shows -----------------------------------------


def seed_view_states(spec: Lifecycle, nested: bool = False) -> tuple[str, ...]:
    """States a diagram of ``spec`` shows: nested regions collapse into their compound."""
    if nested:
        return spec.state_names
    return tuple(s.name for s in spec.states if s.region is None or s.region == spec.name)


def seed_edge_groups(spec: Lifecycle, nested: bool) -> dict[tuple[str, str, str | None], list[Edge]]:
    """Each drawn seed edge ``(source, target, label)`` with the spec edges it draws, in spec order."""
    shown = set(seed_view_states(spec, nested))
    groups: dict[tuple[str, str, str | None], list[Edge]] = {}
    for e in spec.seed_edges():
        src, dst = e.drawn
        if not nested and spec.state(e.source).region not in (None, spec.name) and e.drawn_from:
            src = e.drawn_from
        if src in shown and dst in shown:
            groups.setdefault((src, dst, e.label), []).append(e)
    return groups


def drawn_seed_edges(spec: Lifecycle, nested: bool = False) -> list[tuple[str, str, str | None]]:
    """Distinct ``(source, target, label)`` of the seed edges as drawn, in spec order."""
    return list(seed_edge_groups(spec, nested))


def drawn_extension_edges(spec: Lifecycle, nested: bool = False) -> list[tuple[str, str, str, Edge]]:
    """Distinct ``(source, target, short label, edge)`` of the non-seed edges as drawn.

    Control edges come from a pseudo-node named after the request (``stop()``).
    """
    shown = set(seed_view_states(spec, nested))
    seen: set[tuple[str, str, str]] = set()
    out: list[tuple[str, str, str, Edge]] = []
    for e in spec.extension_edges():
        src, dst = e.drawn
        if e.kind == "control":
            request = next(g for g in e.guard if g in _CONTROL_LABELS)
            src, label = _CONTROL_LABELS[request], ""
        else:
            label = e.kind if e.kind == "override" else _short(e.reason or e.kind)
        if (src in shown or e.kind == "control") and dst in shown and (src, dst, label) not in seen:
            seen.add((src, dst, label))
            out.append((src, dst, label, e))
    return out


def _short(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()


# -- DOT ------------------------------------------------------------------------------


@attrs.frozen
class _Marks:
    """What one drawing highlights: the current state, a failed one, the last transition."""

    highlight: str | None = None
    failed: str | None = None
    last: tuple[str, str] | None = None
    callbacks: Mapping[str, Sequence[str]] | None = None


def to_dot(
    spec: Lifecycle,
    *,
    highlight: str | None = None,
    failed: str | None = None,
    last: tuple[str, str] | None = None,
    callbacks: Mapping[str, Sequence[str]] | None = None,
    extensions: bool = True,
    nested: bool = False,
    legend: bool = False,
) -> str:
    """DOT text for ``spec``: the seed's boxes and edges, with what the machine adds.

    Fill colours say how often a state runs (one palette for every lifecycle); a second
    line names a state's roles and feed bindings; resumable states have a double border;
    states that run without grad sit in a grey region; guarded edges show ``[guard]``.
    ``highlight`` marks the current state (red border), ``failed`` the state a run failed
    in (filled red), ``last`` the last transition taken; ``callbacks`` lists callback
    names under each state's name; ``legend`` adds a table explaining all of it. Node
    names are the state names, so Graphviz's SVG titles them ``state`` and ``a->b``.
    """
    marks = _Marks(highlight, failed, last, callbacks)
    shown = list(seed_view_states(spec, nested))
    tiers = _structure.tiers(spec)
    lines = [
        f"digraph {spec.graph_name or spec.name.title()} {{",
        "",
        "   graph [fontsize=8];",
        "   edge [fontsize=8];",
        f"   node [fontsize=8, shape=box, colorscheme={_drawing.COLORSCHEME}, style=rounded];",
        "",
    ]
    seed_lines, guarded = _seed_lines(spec, nested, last)
    lines += seed_lines
    requests: list[str] = []
    if extensions:
        ext_lines, requests = _extension_lines(spec, nested, last)
        lines += ext_lines
    lines.append("")
    lines += _node_lines(spec, shown, tiers, marks)
    if legend:
        used = {"extensions": extensions and bool(spec.extension_edges()), "guards": guarded,
                "requests": bool(requests), "no_grad": bool(no_grad_regions(spec, shown)),
                "current": highlight is not None, "failed": failed is not None, "last": last is not None}
        rows = _drawing.legend_rows(spec, shown, tiers, used)
        lines += ["", f'   "{_drawing.LEGEND_NODE}" [shape=plaintext, style="", '
                      f"label={_drawing.legend_label(rows)}];",
                  f'   {{ rank=sink; "{_drawing.LEGEND_NODE}" }}']
    lines += ["", "   }"]
    return "\n".join(lines) + "\n"


def _seed_lines(spec: Lifecycle, nested: bool, last: tuple[str, str] | None) -> tuple[list[str], bool]:
    lines: list[str] = []
    guarded = False
    for (src, dst, label), edges in seed_edge_groups(spec, nested).items():
        guard = _drawing.guard_text(edges, choice_fallback=all(e.kind == "choice" for e in edges))
        guarded |= bool(guard)
        text = _drawing.edge_label(label, guard)
        attrs_ = [f'label = "{text}"'] if text else []
        if last == (src, dst):
            attrs_ += [f'color="{_drawing.CURRENT}"', "penwidth=2"]
        lines.append(f"   {src} -> {dst}{_attr_list(attrs_)};")
    return lines, guarded


def _extension_lines(spec: Lifecycle, nested: bool, last: tuple[str, str] | None) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    requests: list[str] = []
    grey = f'"{_drawing.GREY}"'
    for src, dst, label, edge in drawn_extension_edges(spec, nested):
        if src in _CONTROL_LABELS.values() and src not in requests:
            requests.append(src)
        guard = "" if edge.kind == "override" else _drawing.guard_text([edge])
        text = _drawing.edge_label(label or None, guard)
        attrs_ = ["style=dashed", f"color={grey}", f"fontcolor={grey}"]
        if text:
            attrs_.insert(0, f'label = "{text}"')
        if last == (src, dst):
            attrs_ += [f'color="{_drawing.CURRENT}"', "penwidth=2"]
        lines.append(f'   "{src}" -> {dst}{_attr_list(attrs_)};')
    for r in requests:
        lines.append(f'   "{r}" [shape=plaintext, fontcolor={grey}];')
    return lines, requests


def no_grad_regions(spec: Lifecycle, shown: list[str]) -> dict[str, list[str]]:
    """Each shown ``no_grad`` state not inside another one, with the shown states of its region."""
    roots = [n for n in spec.with_role("no_grad") if n in shown]
    roots = [n for n in roots if not any(n in spec.body(other) for other in roots if other != n)]
    return {root: [n for n in shown if n == root or n in spec.body(root)] for root in roots}


def _node_lines(spec: Lifecycle, shown: list[str], tiers: dict[str, str], marks: _Marks) -> list[str]:
    regions = no_grad_regions(spec, shown)
    inside = {n for names in regions.values() for n in names}
    lines = [_node_line(spec, name, tiers[name], marks) for name in shown if name not in inside]
    for root, names in regions.items():
        lines += [
            f'   subgraph "cluster_no_grad_{root}" {{',
            f'      graph [label="no grad", style="filled,dashed", fillcolor="{_drawing.NO_GRAD_FILL}", '
            f'color="{_drawing.NO_GRAD_BORDER}", fontcolor="{_drawing.ROLE_TEXT_COLOUR}"];',
            *("   " + _node_line(spec, n, tiers[n], marks) for n in names),
            "   }",
        ]
    return lines


def _node_line(spec: Lifecycle, name: str, tier: str, marks: _Marks) -> str:
    state = spec.state(name)
    failed = marks.failed == name
    style = "rounded,filled,dashed" if state.dashed else "rounded,filled"
    fill = f'"{_drawing.FAILED_FILL}"' if failed else str(_drawing.tier_fill(tier))
    parts = [f"fillcolor={fill}", f'style="{style}"']
    callbacks = [str(c) for c in (marks.callbacks or {}).get(name, ())]
    label = _drawing.node_label(name, _drawing.role_words(state), callbacks, failed)
    if label:
        parts.append(f"label={label}")
    if state.has("resumable"):
        parts.append("peripheries=2")
    if failed:
        parts += [f'color="{_drawing.FAILED_BORDER}"', "fontcolor=white", "penwidth=3"]
    elif marks.highlight == name:
        parts += [f'color="{_drawing.CURRENT}"', "penwidth=3"]
    return f"   {name}  [{', '.join(parts)}]"


def _attr_list(items: list[str]) -> str:
    return f" [{', '.join(items)}]" if items else ""


# -- Mermaid --------------------------------------------------------------------------


def to_mermaid(
    spec: Lifecycle, *, highlight: str | None = None, failed: str | None = None, extensions: bool = True,
    nested: bool = False, legend: bool = False,
) -> str:
    """Mermaid ``flowchart`` text for ``spec``, with what Mermaid can show of the DOT drawing.

    Tier colours (``classDef``), the role line under each name, guards on edge labels,
    dotted extension edges (``-.->``), a thick border for resumable states, a ``no grad``
    subgraph, the current (``highlight``) and ``failed`` states, and an optional legend.
    """
    from statetrainer import _mermaid

    return _mermaid.flowchart(spec, highlight=highlight, failed=failed, extensions=extensions,
                              nested=nested, legend=legend)


# -- images ---------------------------------------------------------------------------


def dot_program() -> str:
    """Path of Graphviz's ``dot``; a clear error naming the package when it is missing."""
    path = shutil.which("dot")
    if path is None:
        raise DiagramError(
            "Graphviz's 'dot' program is not installed, so SVG/PNG cannot be rendered; "
            "install the 'graphviz' package (apt-get install graphviz, brew install graphviz) "
            "or use --format dot or --format mermaid, which need nothing installed"
        )
    return path


def render(dot_text: str, fmt: str = "svg", *, dpi: float | None = None) -> bytes:
    """Render DOT text to ``svg`` or ``png`` bytes with Graphviz.

    ``dpi`` sets the resolution (Graphviz's defaults: 96 for PNG, 72 for SVG, whose
    width and height scale with it).
    """
    if fmt not in ("svg", "png"):
        raise DiagramError(f"cannot render format {fmt!r}: use svg or png")
    command = [dot_program(), f"-T{fmt}"]
    if dpi is not None:
        if not dpi > 0:
            raise DiagramError(f"dpi must be a positive number, got {dpi!r}")
        command.append(f"-Gdpi={dpi:g}")
    proc = subprocess.run(command, input=dot_text.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise DiagramError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


#: Graphviz's resolution for each image format, which ``scale`` multiplies.
DEFAULT_DPI = {"png": 96.0, "svg": 72.0}


def to_format(spec: Lifecycle, fmt: str, *, legend: bool = True, dpi: float | None = None,
              scale: float | None = None, **kwargs: object) -> bytes:
    """``spec`` in ``dot``, ``mermaid``, ``svg`` or ``png``, as bytes, with a legend by default.

    ``dpi`` or ``scale`` (a factor on Graphviz's default resolution) size SVG and PNG.
    """
    if fmt == "mermaid":
        allowed = {k: v for k, v in kwargs.items() if k in ("highlight", "failed", "extensions", "nested")}
        return to_mermaid(spec, legend=legend, **allowed).encode()  # type: ignore[arg-type]
    text = to_dot(spec, legend=legend, **kwargs)  # type: ignore[arg-type]
    if fmt == "dot":
        return text.encode()
    if scale is not None:
        if not scale > 0:
            raise DiagramError(f"scale must be a positive number, got {scale!r}")
        dpi = DEFAULT_DPI.get(fmt, 96.0) * scale
    return render(text, fmt, dpi=dpi)


def mimebundle(spec: Lifecycle, **kwargs: object) -> dict[str, str]:
    """Jupyter display data: SVG (with its legend) when Graphviz is installed, plus the DOT text."""
    kwargs.setdefault("legend", True)
    text = to_dot(spec, **kwargs)  # type: ignore[arg-type]
    bundle = {"text/plain": f"<Lifecycle {spec.name}: {len(spec.states)} states, {len(spec.edges)} edges>"}
    try:
        bundle["image/svg+xml"] = render(text, "svg").decode()
    except DiagramError:
        bundle["text/vnd.graphviz"] = text
    return bundle


# -- verify ---------------------------------------------------------------------------


@attrs.frozen
class VerifyReport:
    """The differences between a lifecycle and a seed diagram; ``ok`` when there are none.

    ``roles`` lists the lifecycle's roles in words; ``undrawn`` what its rendered DOT
    fails to show of them (parsed back with pydot). ``states``, ``seed_edges`` and
    ``labels`` count what was compared.
    """

    lifecycle: str
    diagram: str
    missing_states: tuple[str, ...]
    extra_states: tuple[str, ...]
    missing_edges: tuple[str, ...]
    extra_edges: tuple[str, ...]
    label_mismatches: tuple[str, ...]
    extensions: tuple[str, ...]
    roles: tuple[str, ...] = ()
    undrawn: tuple[str, ...] = ()
    role_summary: str = ""
    states: int = 0
    seed_edges: int = 0
    labels: int = 0

    @property
    def ok(self) -> bool:
        """True when states, seed edges and loop labels all match and every role is drawn."""
        return not (
            self.missing_states or self.extra_states or self.missing_edges
            or self.extra_edges or self.label_mismatches or self.undrawn
        )

    def summary(self) -> str:
        """Three lines: the verdict, what was compared, the roles."""
        drawn = "drawn" if not self.undrawn else f"{len(self.undrawn)} NOT DRAWN"
        counts = (f"{_count(self.states, 'state')}, {_count(self.seed_edges, 'seed edge')}, "
                  f"{_count(self.labels, 'loop label')}; {_count(len(self.extensions), 'extension edge')} apart")
        return (f"{self.lifecycle}: {'OK' if self.ok else 'MISMATCH'} against {self.diagram}\n"
                f"  compared: {counts}\n  roles {drawn}: {self.role_summary or 'none'}")

    def format(self, verbose: bool = True) -> str:
        """The summary, then every difference; ``verbose`` adds the extension edges and roles."""
        lines = [self.summary()]
        for title, items in (
            ("states in the diagram, missing from the code", self.missing_states),
            ("states in the code, missing from the diagram", self.extra_states),
            ("edges in the diagram, missing from the code", self.missing_edges),
            ("edges in the code, missing from the diagram", self.extra_edges),
            ("loop labels that differ", self.label_mismatches),
            ("roles the rendered diagram does not show", self.undrawn),
        ):
            lines += [f"  {title}:", *(f"    - {i}" for i in items)] if items else []
        if verbose:
            lines.append(f"  extension edges (not in the seed, {len(self.extensions)}):")
            lines += [f"    ~ {x}" for x in self.extensions]
            lines.append("  roles (each drawn in the rendered diagram):" if not self.undrawn else "  roles:")
            lines += [f"    * {x}" for x in self.roles]
        return "\n".join(lines)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def parse_dot(path: str | Path) -> tuple[set[str], set[tuple[str, str, str | None]]]:
    """States and ``(source, target, label)`` edges of a DOT file, parsed with pydot."""
    import pydot

    p = Path(path)
    fix = "fix it, or restore it from the seed's diagrams"
    try:
        text = p.read_bytes().decode()
    except OSError as exc:
        raise DiagramError(f"cannot read diagram {str(p)!r}: {exc.strerror}; {fix}") from exc
    except UnicodeDecodeError:
        raise DiagramError(f"diagram {str(p)!r} is not text (a binary file?); {fix}") from None
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):  # pydot prints parse errors
            graphs = pydot.graph_from_dot_data(text)
    except Exception as exc:  # pydot raises bare exceptions from its parser
        raise DiagramError(f"diagram {str(p)!r} is not valid DOT ({_first_line(str(exc))}); {fix}") from exc
    if not graphs:
        reason = _first_line(printed.getvalue().strip().splitlines()[-1] if printed.getvalue().strip() else "")
        raise DiagramError(f"diagram {str(p)!r} is not valid DOT ({reason or 'no graph found'}); {fix}")
    graph = graphs[0]
    nodes = {_unquote(n.get_name()) for n in graph.get_nodes()} - {"graph", "node", "edge"}
    edges: set[tuple[str, str, str | None]] = set()
    for e in graph.get_edges():
        src, dst = _unquote(str(e.get_source())), _unquote(str(e.get_destination()))
        label = e.get("label")
        edges.add((src, dst, _unquote(label) if label is not None else None))
        nodes |= {src, dst}
    return nodes, edges


def _unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:120] if text.strip() else ""


def verify(spec: Lifecycle, diagram: str | Path) -> VerifyReport:
    """Compare ``spec`` with a seed DOT file: states, seed edges, loop labels."""
    nodes, dot_edges = parse_dot(diagram)
    states = set(seed_view_states(spec))
    code_edges = set(drawn_seed_edges(spec))
    pairs_code = {(s, t): lbl for s, t, lbl in code_edges}
    pairs_dot = {(s, t): lbl for s, t, lbl in dot_edges}
    mismatched = sorted(
        f"{s} -> {t}: diagram {pairs_dot[(s, t)]!r}, code {pairs_code[(s, t)]!r}"
        for (s, t) in pairs_code.keys() & pairs_dot.keys()
        if pairs_code[(s, t)] != pairs_dot[(s, t)]
    )
    from statetrainer import _verify_roles

    return VerifyReport(
        lifecycle=spec.name,
        diagram=str(diagram),
        missing_states=tuple(sorted(nodes - states)),
        extra_states=tuple(sorted(states - nodes)),
        missing_edges=tuple(_fmt(e) for e in sorted(pairs_dot.keys() - pairs_code.keys())),
        extra_edges=tuple(_fmt(e) for e in sorted(pairs_code.keys() - pairs_dot.keys())),
        label_mismatches=tuple(mismatched),
        extensions=tuple(_ext(e) for e in spec.extension_edges()),
        roles=tuple(_verify_roles.role_report(spec)),
        undrawn=tuple(_verify_roles.undrawn_roles(spec)),
        role_summary=_verify_roles.role_summary(spec),
        states=len(states),
        seed_edges=len(pairs_code),
        labels=sum(1 for label in pairs_code.values() if label),
    )


def _fmt(pair: tuple[str, str]) -> str:
    return f"{pair[0]} -> {pair[1]}"


def _ext(e: Edge) -> str:
    return f"{e.kind}: {e.describe()} ({e.reason})"


def seed_folder() -> Path:
    """The folder of the seed's DOT files shipped in the package (``statetrainer/seed``)."""
    return Path(__file__).resolve().parent / "seed"


def verify_all(specs: Iterable[Lifecycle], folder: str | Path | None = None) -> list[VerifyReport]:
    """Verify each spec against ``folder/<name>.dot`` (default: the packaged seed)."""
    base = Path(folder) if folder is not None else seed_folder()
    return [verify(spec, base / f"{spec.name}.dot") for spec in specs]
