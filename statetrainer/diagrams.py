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

from statetrainer._errors import DiagramError
from statetrainer.spec import Edge, Lifecycle

GREY = "\"#8c8c8c\""
HIGHLIGHT = "\"#d62728\""
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


def drawn_seed_edges(spec: Lifecycle, nested: bool = False) -> list[tuple[str, str, str | None]]:
    """Distinct ``(source, target, label)`` of the seed edges as drawn, in spec order."""
    shown = set(seed_view_states(spec, nested))
    out: list[tuple[str, str, str | None]] = []
    for e in spec.seed_edges():
        src, dst = e.drawn
        if not nested and spec.state(e.source).region not in (None, spec.name) and e.drawn_from:
            src = e.drawn_from
        if src in shown and dst in shown and (src, dst, e.label) not in out:
            out.append((src, dst, e.label))
    return out


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


def to_dot(
    spec: Lifecycle,
    *,
    highlight: str | None = None,
    last: tuple[str, str] | None = None,
    callbacks: Mapping[str, Sequence[str]] | None = None,
    extensions: bool = True,
    nested: bool = False,
) -> str:
    """DOT text for ``spec`` in the seed's look.

    ``highlight`` marks the current state, ``last`` the last transition taken,
    ``callbacks`` lists callback names under each state's name.
    """
    shown = seed_view_states(spec, nested)
    lines = [
        f"digraph {spec.graph_name or spec.name.title()} {{",
        "",
        "   graph [fontsize=8];",
        "   edge [fontsize=8];",
        f"   node [fontsize=8, shape=box, colorscheme={spec.colorscheme}, style=rounded];",
        "",
    ]
    for src, dst, label in drawn_seed_edges(spec, nested):
        attrs_ = [f'label = "{label}"'] if label else []
        if last == (src, dst):
            attrs_ += [f"color={HIGHLIGHT}", "penwidth=2"]
        lines.append(f"   {src} -> {dst}{_attr_list(attrs_)};")
    if extensions:
        lines.extend(_extension_lines(spec, nested, last))
    lines.append("")
    for name in shown:
        lines.append(_node_line(spec, name, highlight, callbacks))
    lines += ["", "   }"]
    return "\n".join(lines) + "\n"


def _extension_lines(spec: Lifecycle, nested: bool, last: tuple[str, str] | None) -> list[str]:
    lines: list[str] = []
    requests: list[str] = []
    for src, dst, label, _ in drawn_extension_edges(spec, nested):
        if src in _CONTROL_LABELS.values() and src not in requests:
            requests.append(src)
        attrs_ = ["style=dashed", f"color={GREY}", f"fontcolor={GREY}"]
        if label:
            attrs_.insert(0, f'label = "{label}"')
        if last == (src, dst):
            attrs_ += [f"color={HIGHLIGHT}", "penwidth=2"]
        lines.append(f'   "{src}" -> {dst}{_attr_list(attrs_)};')
    for r in requests:
        lines.append(f'   "{r}" [shape=plaintext, fontcolor={GREY}];')
    return lines


def _node_line(spec: Lifecycle, name: str, highlight: str | None, callbacks: Mapping[str, Sequence[str]] | None) -> str:
    state = spec.state(name)
    style = "rounded,filled,dashed" if state.dashed else "rounded,filled"
    parts = [f"fillcolor={state.level}", f'style="{style}"']
    names = list((callbacks or {}).get(name, ()))
    if names:
        label = "\\n".join([name, *(f"+ {n}" for n in names)])
        parts.append(f'label="{label}"')
    if highlight == name:
        parts += [f"color={HIGHLIGHT}", "penwidth=3"]
    return f"   {name}  [{', '.join(parts)}]"


def _attr_list(items: list[str]) -> str:
    return f" [{', '.join(items)}]" if items else ""


# -- Mermaid --------------------------------------------------------------------------


def to_mermaid(spec: Lifecycle, *, highlight: str | None = None, extensions: bool = True, nested: bool = False) -> str:
    """Mermaid ``flowchart`` text for ``spec``; extension edges are dotted (``-.->``)."""
    lines = ["flowchart TD"]
    for name in seed_view_states(spec, nested):
        state = spec.state(name)
        lines.append(f"    {name}([{name}])" if not state.compound else f"    {name}[{name}]")
    for src, dst, label in drawn_seed_edges(spec, nested):
        arrow = f"-- {label} -->" if label else "-->"
        lines.append(f"    {src} {arrow} {dst}")
    if extensions:
        for src, dst, label, _ in drawn_extension_edges(spec, nested):
            node = _mermaid_id(src)
            if node != src:
                lines.append(f'    {node}["{src}"]')
            arrow = f"-. {label} .->" if label else "-.->"
            lines.append(f"    {node} {arrow} {dst}")
    if highlight:
        lines.append("    classDef current stroke:#d00,stroke-width:3px")
        lines.append(f"    class {highlight} current")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).strip("_") + (
        "_request" if not name.replace("_", "").isalnum() else ""
    )


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


def render(dot_text: str, fmt: str = "svg") -> bytes:
    """Render DOT text to ``svg`` or ``png`` bytes with Graphviz."""
    if fmt not in ("svg", "png"):
        raise DiagramError(f"cannot render format {fmt!r}: use svg or png")
    proc = subprocess.run(
        [dot_program(), f"-T{fmt}"], input=dot_text.encode(), capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise DiagramError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def to_format(spec: Lifecycle, fmt: str, **kwargs: object) -> bytes:
    """``spec`` in ``dot``, ``mermaid``, ``svg`` or ``png``, as bytes."""
    if fmt == "mermaid":
        allowed = {k: v for k, v in kwargs.items() if k in ("highlight", "extensions", "nested")}
        return to_mermaid(spec, **allowed).encode()  # type: ignore[arg-type]
    text = to_dot(spec, **kwargs)  # type: ignore[arg-type]
    if fmt == "dot":
        return text.encode()
    return render(text, fmt)


def mimebundle(spec: Lifecycle, **kwargs: object) -> dict[str, str]:
    """Jupyter display data: SVG when Graphviz is installed, plus the DOT text."""
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
    """The differences between a lifecycle and a seed diagram; ``ok`` when there are none."""

    lifecycle: str
    diagram: str
    missing_states: tuple[str, ...]
    extra_states: tuple[str, ...]
    missing_edges: tuple[str, ...]
    extra_edges: tuple[str, ...]
    label_mismatches: tuple[str, ...]
    extensions: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when states, seed edges and loop labels all match."""
        return not (
            self.missing_states or self.extra_states or self.missing_edges
            or self.extra_edges or self.label_mismatches
        )

    def format(self) -> str:
        """A readable report: the verdict, each difference, then the extension edges."""
        head = f"{self.lifecycle}: {'OK' if self.ok else 'MISMATCH'} against {self.diagram}"
        lines = [head]
        for title, items in (
            ("states in the diagram, missing from the code", self.missing_states),
            ("states in the code, missing from the diagram", self.extra_states),
            ("edges in the diagram, missing from the code", self.missing_edges),
            ("edges in the code, missing from the diagram", self.extra_edges),
            ("loop labels that differ", self.label_mismatches),
        ):
            lines += [f"  {title}:", *(f"    - {i}" for i in items)] if items else []
        lines.append(f"  extension edges (not in the seed, {len(self.extensions)}):")
        lines += [f"    ~ {x}" for x in self.extensions]
        return "\n".join(lines)


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
    return VerifyReport(
        lifecycle=spec.name,
        diagram=str(diagram),
        missing_states=tuple(sorted(nodes - states)),
        extra_states=tuple(sorted(states - nodes)),
        missing_edges=tuple(_fmt(e) for e in sorted(pairs_dot.keys() - pairs_code.keys())),
        extra_edges=tuple(_fmt(e) for e in sorted(pairs_code.keys() - pairs_dot.keys())),
        label_mismatches=tuple(mismatched),
        extensions=tuple(_ext(e) for e in spec.extension_edges()),
    )


def _fmt(pair: tuple[str, str]) -> str:
    return f"{pair[0]} -> {pair[1]}"


def _ext(e: Edge) -> str:
    return f"{e.kind}: {e.describe()} ({e.reason})"


def verify_all(specs: Iterable[Lifecycle], folder: str | Path) -> list[VerifyReport]:
    """Verify each spec against ``folder/<name>.dot``."""
    return [verify(spec, Path(folder) / f"{spec.name}.dot") for spec in specs]
