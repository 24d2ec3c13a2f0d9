"""Diagrams come from the code, match the seed's files, and cannot go stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from statetrainer import DiagramError, diagrams, lifecycles
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


def test_rendered_dot_has_the_seed_look_and_highlights() -> None:
    """Level colours, rounded boxes, dashed evaluate_epoch, labels, grey extensions, highlight."""
    dot = diagrams.to_dot(lifecycles.TRAIN, highlight="training_step", last=("training_step", "on_end_training_batch"))
    assert "colorscheme=set36" in dot and 'evaluate_epoch  [fillcolor=4, style="rounded,filled,dashed"]' in dot
    assert 'on_end_training_batch -> on_start_training_batch [label = "train_epoch_iter"]' in dot
    assert '"stop()" -> on_train_end [style=dashed' in dot
    assert 'training_step  [fillcolor=5, style="rounded,filled", color="#d62728", penwidth=3]' in dot
    assert 'training_step -> on_end_training_batch [color="#d62728", penwidth=2]' in dot
    mermaid = diagrams.to_mermaid(lifecycles.TEST, highlight="test_step")
    assert "on_end_test_batch -- test_loop_iter --> on_start_test_batch" in mermaid and "class test_step current" in mermaid


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
