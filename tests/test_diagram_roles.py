"""Diagrams a newcomer can read: tiers, roles, guards, legend, failure; verify's summary and roles."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydot
import pytest

from statetrainer import _drawing, _structure, _verify_roles, diagrams, lifecycles
from statetrainer.cli import main

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples"))
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")


def _all_node_attrs(dot: str) -> dict[str, dict[str, str]]:
    """Each node's attributes, subgraphs included (parsed once: pydot is slow)."""
    graph = pydot.graph_from_dot_data(dot)[0]
    found: dict[str, dict[str, str]] = {}
    for node in [*graph.get_nodes(), *(n for sub in graph.get_subgraphs() for n in sub.get_nodes())]:
        found.setdefault(node.get_name().strip('"'), {}).update(node.get_attributes())
    return found


def _node_attrs(dot: str, name: str) -> dict[str, str]:
    return _all_node_attrs(dot)[name]


def test_a_colour_means_the_same_tier_in_every_lifecycle() -> None:
    """Per-item states share one colour in train, evaluate and test; so do once-per-run ones."""
    for spec in (lifecycles.TRAIN, lifecycles.EVALUATE, lifecycles.TEST, lifecycles.GAN_TRAIN):
        nodes = _all_node_attrs(diagrams.to_dot(spec, nested=True))
        tiers = _structure.tiers(spec)
        for name in spec.state_names:
            fill = nodes[name]["fillcolor"]
            assert fill == str(_drawing.TIER_COLOUR[tiers[name]]), (spec.name, name)
    item = str(_drawing.TIER_COLOUR["item"])
    for spec, name in ((lifecycles.TRAIN, "training_step"), (lifecycles.EVALUATE, "evaluate_batch"),
                       (lifecycles.TEST, "test_step")):
        assert _node_attrs(diagrams.to_dot(spec), name)["fillcolor"] == item
    assert _structure.tiers(lifecycles.TRAIN)["on_train_epoch_start"] == "epoch"
    assert _structure.tiers(lifecycles.TEST)["on_test_start"] == "run"


def test_roles_are_drawn_on_their_states() -> None:
    """Role words on a second line, a double border when resumable, a no-grad region, feed bindings."""
    dot = diagrams.to_dot(lifecycles.TRAIN)
    nodes = _all_node_attrs(dot)
    start = nodes["on_train_epoch_start"]
    assert "epoch opens · opens train" in start["label"] and start["peripheries"] == "2"
    assert "epoch closes" in nodes["on_epoch_end"]["label"]
    assert "batch end" in nodes["on_end_training_batch"]["label"]
    assert "takes train" in nodes["on_start_training_batch"]["label"]
    assert "peripheries" not in nodes["training_step"]
    assert re.search(r'subgraph "cluster_no_grad_evaluate_epoch" \{[^}]*evaluate_epoch', dot)
    nested = diagrams.to_dot(lifecycles.TRAIN, nested=True)
    region = nested.split('subgraph "cluster_no_grad_evaluate_epoch"')[1].split("   }")[0]
    assert all(n in region for n in lifecycles.TRAIN.body("evaluate_epoch"))


def test_guards_label_their_edges_and_loops_keep_the_seed_label() -> None:
    """``[guard]`` on every guarded happy-path edge, under the seed's loop label; ``[else]`` on a choice."""
    dot = diagrams.to_dot(lifecycles.TRAIN)
    assert 'on_end_training_batch -> on_start_training_batch [label = "train_epoch_iter\\n[has_next_batch]"]' in dot
    assert 'on_train_epoch_end -> evaluate_epoch [label = "[eval_due]"]' in dot
    test = diagrams.to_dot(lifecycles.TEST)
    assert 'test -> load_parallel_model [label = "[data_parallel]"]' in test
    assert 'test -> load_model [label = "[else]"]' in test
    mermaid = diagrams.to_mermaid(lifecycles.TEST)
    assert 'on_end_test_batch -- "test_loop_iter [has_next_test_batch]" --> on_start_test_batch' in mermaid


def test_failed_is_drawn_apart_from_current() -> None:
    """The current state has a red border on its tier colour; the failed one is filled red with white text."""
    dot = diagrams.to_dot(lifecycles.TRAIN, highlight="training_step", failed="on_epoch_end", legend=True)
    nodes = _all_node_attrs(dot)
    current, failed = nodes["training_step"], nodes["on_epoch_end"]
    assert current["fillcolor"] == "5" and current["color"] == f'"{_drawing.CURRENT}"'
    assert failed["fillcolor"] == f'"{_drawing.FAILED_FILL}"' and failed["fontcolor"] == "white"
    assert failed["color"] == f'"{_drawing.FAILED_BORDER}"' and failed["color"] != current["color"]
    assert "the current state" in dot and "failed here" in dot
    mermaid = diagrams.to_mermaid(lifecycles.TRAIN, highlight="training_step", failed="on_epoch_end")
    assert "class training_step current" in mermaid and "class on_epoch_end failed" in mermaid


def test_the_legend_explains_only_what_the_diagram_draws() -> None:
    """Tiers present, solid/dashed edges, guards, requests, resumable, roles, no grad; not the absent ones."""
    train = diagrams.to_dot(lifecycles.TRAIN, legend=True)
    for text in ("once per run", "once per epoch", "once per item", "an edge of the seed", "leaves implicit",
                 "[guard]", "stop()", "double border: resumable", "roles: epoch opens/closes", "no grad"):
        assert text in train, text
    test = diagrams.to_dot(lifecycles.TEST, legend=True)
    assert "once per epoch" not in test and "resumable" not in test and "torch.no_grad" not in test
    assert "legend" not in diagrams.to_dot(lifecycles.TEST)
    assert "subgraph legend" in diagrams.to_mermaid(lifecycles.TRAIN, legend=True)


def test_node_and_edge_names_stay_the_state_names() -> None:
    """The web view finds states and edges by their SVG titles: nodes are named after states."""
    dot = diagrams.to_dot(lifecycles.TRAIN, nested=True, legend=True)
    graph = pydot.graph_from_dot_data(dot)[0]
    names = {n.get_name().strip('"') for n in graph.get_nodes()}
    names |= {n.get_name().strip('"') for sub in graph.get_subgraphs() for n in sub.get_nodes()}
    assert set(lifecycles.TRAIN.state_names) <= names


@needs_dot
def test_render_resolution_and_svg_on_stdout(tmp_path: Path) -> None:
    """--scale and --dpi size the image; SVG goes to stdout; -o - forces it; PNG refuses a terminal."""
    small = diagrams.to_format(lifecycles.TEST, "png")
    big = diagrams.to_format(lifecycles.TEST, "png", scale=2)
    assert _png_width(big) > 1.8 * _png_width(small)
    assert _png_width(diagrams.to_format(lifecycles.TEST, "png", dpi=192)) == _png_width(big)
    svg = subprocess.run([sys.executable, "-m", "statetrainer", "diagram", "test", "--format", "svg"],
                         capture_output=True, check=True).stdout
    assert svg.startswith(b"<?xml") and b"<title>test_step</title>" in svg
    png = subprocess.run([sys.executable, "-m", "statetrainer", "diagram", "test", "--format", "png", "-o", "-",
                          "--scale", "0.5"], capture_output=True, check=True).stdout
    assert png.startswith(b"\x89PNG")
    out = tmp_path / "t.svg"
    assert main(["diagram", "train", "--format", "svg", "-o", str(out), "--dpi", "144", "--failed", "training_step"]) == 0
    assert 'fill="#d62728"' in out.read_text()


def test_png_to_a_terminal_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Binary output to a terminal is a one-line usage error naming the ways out."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert main(["diagram", "test", "--format", "png"]) == 2
    assert "give -o FILE" in capsys.readouterr().err


def _png_width(data: bytes) -> int:
    return int.from_bytes(data[16:20], "big")


# -- verify -----------------------------------------------------------------------------


def test_verify_works_outside_the_repository(tmp_path: Path) -> None:
    """From a folder with no diagrams/, verify uses the seed files shipped in the package."""
    proc = subprocess.run([sys.executable, "-m", "statetrainer", "verify"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    heads = lines[0:9:3]
    assert [line.split(":")[0] for line in heads] == ["train", "evaluate", "test"]
    assert all(" OK against " in line and "statetrainer/seed/" in line for line in heads)
    assert lines[2] == "  roles drawn: epoch, 2 feeds, batch end, 10 resumable, 1 no-grad region"
    assert len(lines) == 10 and "-v" in lines[9]


def test_the_packaged_seed_is_the_repositorys_seed() -> None:
    """statetrainer/seed/*.dot are byte-for-byte diagrams/*.dot (the seed, unchanged)."""
    for name in ("train", "evaluate", "test"):
        assert (diagrams.seed_folder() / f"{name}.dot").read_bytes() == (ROOT / "diagrams" / f"{name}.dot").read_bytes()


def test_verbose_verify_lists_extensions_and_roles(capsys: pytest.CaptureFixture[str]) -> None:
    """-v adds each extension edge with its reason and each role: epoch, feeds, batch end, resumable, no grad."""
    assert main(["verify", "-v"]) == 0
    out = capsys.readouterr().out
    assert "extension edges (not in the seed, 41)" in out
    assert "epoch: opens at on_train_epoch_start, closes at on_epoch_end" in out
    assert ("feed 'train' (self.train_epoch_iter else self.train_loader; loop guard has_next_batch; counts training "
            "steps): opened at on_train_epoch_start, taken at on_start_training_batch") in out
    assert "resumable (10): on_train_start," in out and "no grad: evaluate_epoch and its body" in out


def test_verify_fails_when_the_drawing_loses_a_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """A diagram that stops drawing double borders or role words fails verify, naming the state."""
    original = diagrams._node_line

    def forgetful(*args, **kwargs):  # type: ignore[no-untyped-def]
        return original(*args, **kwargs).replace(", peripheries=2", "").replace("epoch opens · ", "")

    monkeypatch.setattr(diagrams, "_node_line", forgetful)
    report = diagrams.verify(lifecycles.TRAIN, diagrams.seed_folder() / "train.dot")
    assert not report.ok and "roles NOT DRAWN" not in report.summary()
    assert "diagram: on_train_epoch_start: role 'epoch opens' is not in its label" in report.undrawn
    assert any("on_train_start: resumable is True but its border is not double" in p for p in report.undrawn)
    assert "roles the rendered diagram does not show" in report.format(verbose=False)


def test_custom_lifecycles_draw_and_report_their_roles() -> None:
    """The accumulation example: micro-batches per item, its roles drawn, its report complete."""
    from grad_accumulation import ACCUMULATE

    assert _verify_roles.undrawn_roles(ACCUMULATE) == []
    tiers = _structure.tiers(ACCUMULATE)
    assert tiers["micro_batch"] == tiers["optimizer_step"] == "item" and tiers["on_train_epoch_start"] == "epoch"
    report = _verify_roles.role_report(ACCUMULATE)
    assert report[0].startswith("epoch: opens at on_train_epoch_start, closes at on_train_epoch_end")
    assert "resumable (4): on_train_epoch_start, optimizer_step, on_train_epoch_end, on_train_end" in report
    assert "batch end: optimizer_step" in report and any(line.startswith("feed 'micro'") for line in report)
