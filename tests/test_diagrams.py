"""Diagrams come from the code, match the seed's files, and cannot go stale."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from statetrainer import DiagramError, diagrams, lifecycles
from statetrainer._drawing import CURRENT, GREY
from statetrainer.cli import main

DIAGRAMS = Path(__file__).parent.parent / "diagrams"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")


@pytest.mark.parametrize("name", ["train", "evaluate", "test"])
def test_machines_match_the_seed_diagrams(name: str) -> None:
    """verify() finds the same states, seed edges and loop labels as diagrams/<name>.dot."""
    report = diagrams.verify(lifecycles.get(name), DIAGRAMS / f"{name}.dot")
    assert report.ok, report.format()
    assert report.extensions and all("(" in x for x in report.extensions)


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (lambda t: t.replace("   on_train_start -> start_logger;\n", ""), "edges in the code, missing from the diagram:\n    - on_train_start -> start_logger"),
        (lambda t: t.replace("start_logger", "begin_logger"), "states in the diagram, missing from the code:\n    - begin_logger"),
        (lambda t: t.replace('label = "_num_epochs"', 'label = "epochs"'), "on_epoch_end -> on_train_epoch_start: diagram 'epochs', code '_num_epochs'"),
    ],
)
def test_verify_fails_on_tampered_copies(tmp_path: Path, edit, expect: str, capsys) -> None:  # type: ignore[no-untyped-def]
    """Dropping an edge, renaming a state or changing a label fails verify with a readable diff."""
    for name in ("train", "evaluate", "test"):
        shutil.copy(DIAGRAMS / f"{name}.dot", tmp_path)
    (tmp_path / "train.dot").write_text(edit((tmp_path / "train.dot").read_text()))
    assert main(["verify", "--diagrams", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "train: MISMATCH" in out and expect in out
    assert "evaluate: OK" in out and "extension edges" in out


def test_malformed_and_missing_diagrams_are_clear_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Bad DOT and an unreadable file: one-line error, exit 2, no traceback."""
    (tmp_path / "train.dot").write_text("digraph { a -> ")
    assert main(["verify", "--diagrams", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not valid DOT" in err and "Traceback" not in err
    with pytest.raises(DiagramError, match="cannot read diagram"):
        diagrams.parse_dot(tmp_path / "missing.dot")


SPECS = [*lifecycles.BUILTIN.values(), *lifecycles.GAN.values()]
_MERMAID_NODE = re.compile(r'^ {4}(\w+)(?:\(\[|\[)"(.*?)(?:<br/>.*)?"(?:\]\)|\])$')
_MERMAID_SOLID = re.compile(r'^ {4}(\w+) (?:-- "[^"]*" )?--> (\w+)$')
_MERMAID_DOTTED = re.compile(r'^ {4}(\w+) -\.(?: "[^"]*" \.)?-> (\w+)$')


def _expected_edges(spec: lifecycles.Lifecycle) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The (source, target) pairs a diagram of ``spec`` draws: the seed's, and the extensions'
    (a control edge drawn from its request's node, ``stop()``)."""
    seed = {(src, dst) for src, dst, _ in diagrams.drawn_seed_edges(spec)}
    extension = {(src, dst) for src, dst, _, _ in diagrams.drawn_extension_edges(spec)}
    return seed, extension


def _mermaid_edges(text: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Solid and dotted edges of a Mermaid flowchart, nodes named by their label's first line."""
    lines = text.splitlines()
    label = {m[1]: m[2] for m in map(_MERMAID_NODE.match, lines) if m}
    solid = {(label.get(m[1], m[1]), m[2]) for m in map(_MERMAID_SOLID.match, lines) if m}
    dotted = {(label.get(m[1], m[1]), m[2]) for m in map(_MERMAID_DOTTED.match, lines) if m}
    return solid, dotted


def _dot_edges(text: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Edges of a DOT graph parsed with pydot: drawn plain, and drawn dashed."""
    import pydot

    graph = pydot.graph_from_dot_data(text)[0]
    plain, dashed = set(), set()
    for edge in graph.get_edges():
        pair = (diagrams._unquote(str(edge.get_source())), diagrams._unquote(str(edge.get_destination())))
        (dashed if "dashed" in str(edge.get("style") or "") else plain).add(pair)
    return plain, dashed


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.graph_name)
def test_mermaid_draws_seed_edges_solid_and_extensions_dotted(spec: lifecycles.Lifecycle) -> None:
    """Every seed edge is a solid arrow and every extension edge a dotted one; without extensions
    there is no dotted arrow and the seed edges stay."""
    seed, extension = _expected_edges(spec)
    assert _mermaid_edges(diagrams.to_mermaid(spec)) == (seed, extension)
    assert _mermaid_edges(diagrams.to_mermaid(spec, extensions=False)) == (seed, set())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.graph_name)
def test_dot_draws_seed_edges_plain_and_extensions_dashed_grey(spec: lifecycles.Lifecycle) -> None:
    """Every seed edge is drawn plain, every extension edge dashed in grey; without extensions no
    dashed edge and no request node is left."""
    seed, extension = _expected_edges(spec)
    dot = diagrams.to_dot(spec)
    assert _dot_edges(dot) == (seed, extension)
    assert all(f'color="{GREY}"' in line for line in dot.splitlines() if "style=dashed" in line and "->" in line)
    plain = diagrams.to_dot(spec, extensions=False)
    assert _dot_edges(plain) == (seed, set()) and '"stop()"' not in plain


def test_highlight_marks_exactly_the_current_state() -> None:
    """highlight= gives one state the current-state style in DOT (red border) and Mermaid (class current)."""
    import pydot

    dot = diagrams.to_dot(lifecycles.TRAIN, highlight="training_step", last=("training_step", "on_end_training_batch"))
    graph = pydot.graph_from_dot_data(dot)[0]
    nodes = [n for g in (graph, *graph.get_subgraphs()) for n in g.get_nodes()]
    current = [n.get_name() for n in nodes if n.get("color") == f'"{CURRENT}"']
    assert current == ["training_step"]
    last = [(e.get_source(), e.get_destination()) for e in graph.get_edges() if e.get("color") == f'"{CURRENT}"']
    assert last == [("training_step", "on_end_training_batch")]
    mermaid = diagrams.to_mermaid(lifecycles.TEST, highlight="test_step").splitlines()
    assert [line for line in mermaid if line.endswith(" current") and line.startswith("    class ")] == [
        "    class test_step current"]
    assert not [line for line in diagrams.to_mermaid(lifecycles.TEST).splitlines() if line.endswith(" current")]


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_the_diagram_command_honours_no_extensions_and_highlight(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """statetrainer diagram --no-extensions draws the seed's edges only; --highlight marks the state."""
    seed, extension = _expected_edges(lifecycles.TRAIN)
    parse = _mermaid_edges if fmt == "mermaid" else _dot_edges
    assert main(["diagram", "train", "--format", fmt, "--highlight", "training_step"]) == 0
    full = capsys.readouterr().out
    assert parse(full) == (seed, extension)
    assert main(["diagram", "train", "--format", fmt, "--no-extensions", "--highlight", "training_step"]) == 0
    seed_only = capsys.readouterr().out
    assert parse(seed_only) == (seed, set())
    mark = "    class training_step current" if fmt == "mermaid" else f'color="{CURRENT}", penwidth=3'
    assert mark in seed_only and mark in full


@needs_dot
@pytest.mark.parametrize("name", ["train", "evaluate", "test"])
def test_committed_svgs_are_what_the_code_renders_now(name: str) -> None:
    """diagrams/<name>.svg is regenerated from the code; a stale copy fails this test."""
    fresh = diagrams.to_format(lifecycles.get(name), "svg")
    assert (DIAGRAMS / f"{name}.svg").read_bytes() == fresh, (
        f"diagrams/{name}.svg is stale: run statetrainer diagram {name} --format svg -o diagrams/{name}.svg"
    )


@needs_dot
def test_png_and_notebook_display() -> None:
    """PNG renders through Graphviz; lifecycles display as SVG in Jupyter."""
    assert diagrams.to_format(lifecycles.TEST, "png").startswith(b"\x89PNG")
    assert "<svg" in lifecycles.TRAIN._repr_mimebundle_()["image/svg+xml"]


def test_missing_dot_program_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Graphviz, SVG fails naming the package; DOT and Mermaid still work."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DiagramError, match=r"install the 'graphviz' package"):
        diagrams.to_format(lifecycles.TRAIN, "svg")
    assert diagrams.to_format(lifecycles.TRAIN, "mermaid").startswith(b"flowchart")
