"""The command line: demo, run, diagram, verify-trace, inspect, and its bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from statetrainer import lifecycles, testing
from statetrainer.cli import main

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_the_full_demo_reaches_95_percent_test_accuracy(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The README's demo (12 epochs) ends with a test accuracy of at least 0.95."""
    assert main(["demo", "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and float(last.split(": ")[1]) >= 0.95


def test_a_short_demo_fills_its_run_directory(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """One epoch of the demo trains, tests, and leaves status, trace, metrics, model and diagram;
    its trace verifies and inspect reads its status."""
    run = tmp_path / "run"
    assert main(["demo", "--epochs", "1", "--run-dir", str(run), "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and 0.0 <= float(last.split(": ")[1]) <= 1.0
    for name in ("status.json", "trace.jsonl", "metrics.csv", "model.pt", "lifecycle.dot", "run.json"):
        assert (run / name).is_file(), name
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and status["lifecycle"] == "test"
    assert [row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()] == ["epoch", "1"]
    assert main(["verify-trace", str(run / "trace.jsonl")]) == 0
    assert main(["inspect", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["status"] == "finished"


def test_demo_is_deterministic_for_a_seed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Two one-epoch runs with the same seed print the same accuracy and save bitwise the same model."""
    import torch

    outs = []
    for name in ("a", "b"):
        assert main(["demo", "--epochs", "1", "--seed", "3", "--run-dir", str(tmp_path / name), "--quiet"]) == 0
        outs.append(capsys.readouterr().out.splitlines()[-1])
    assert outs[0] == outs[1]
    a, b = (torch.load(tmp_path / name / "model.pt", weights_only=True) for name in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_python_dash_m_works() -> None:
    """python -m statetrainer is the same command."""
    out = subprocess.run([sys.executable, "-m", "statetrainer", "diagram", "test", "--format", "mermaid"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("flowchart TD")


def test_run_a_users_trainer_file_with_config(tmp_path: Path) -> None:
    """statetrainer run file.py:Class --config k=v passes an attribute/key config."""
    assert main(["run", f"{ROOT}/examples/grad_accumulation.py:AccumulatingTrainer", "--config", "epochs=1",
                 "--run-dir", str(tmp_path / "r"), "--mode", "train"]) == 0
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["trainer"].endswith("AccumulatingTrainer")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["diagram", "trian"], "unknown lifecycle 'trian'; did you mean 'train'"),
        (["diagram", "train", "--highlight", "on_epoch_ned"], "did you mean 'on_epoch_end'"),
        (["diagram", "train", "--trainer", "no_such_module:X"], "cannot import 'no_such_module'"),
        (["diagram", "train", "--trainer", "statetrainer.spec:Edge"], "is not a statetrainer trainer class"),
        (["run", "missing.py:T"], "file 'missing.py' does not exist"),
        (["run", "statetrainer.spec:Edge"], "is not a ConvnetTrainer subclass"),
        (["inspect", "."], "is not a run directory"),
        (["verify-trace", "nope.jsonl"], "does not exist"),
    ],
)
def test_user_mistakes_are_one_line_errors(argv: list[str], message: str, capsys) -> None:  # type: ignore[no-untyped-def]
    """Bad names and paths exit 2 with one line naming the thing; no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_verify_trace_reports_the_first_impossible_step(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A trace with a forbidden step is rejected with that step and what was allowed."""
    rows = [{"lifecycle": "train", "state": s, "depth": 0} for s in ("train", "on_train_start", "train_loop")]
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["verify-trace", str(path)]) == 1
    assert "on_train_start -> train_loop is not a transition" in capsys.readouterr().out


def test_trace_file_appends_and_rotates(tmp_path: Path) -> None:
    """trace.jsonl grows by appending and is cut back to the kept trace past ROTATE_AT times its size."""
    from recording import Config, RecordingTrainer

    from statetrainer.inspect import ROTATE_AT

    t = RecordingTrainer(Config(num_epochs=12, batches=5, valid_items=1), trace_size=40, run_dir=tmp_path)
    t.train()
    from statetrainer import tracefile

    rows = tracefile.read(tmp_path / "trace.jsonl")
    assert t.trace.total > ROTATE_AT * 40, "the run must pass the rotation point"
    assert 0 < len(rows) <= ROTATE_AT * 40
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gaps or repeats"
    assert seqs[-1] == t.trace.total - 1 and rows[-1]["state"] == "on_train_end"
    assert testing.check_trace(rows, lifecycles.BUILTIN) is None


def test_resume_with_nothing_to_resume_and_foreign_run_dirs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """--resume without a run, or in another kind of run directory: one-line errors, exit 2."""
    assert main(["demo", "--resume", "--run-dir", str(tmp_path / "none")]) == 2
    assert "has nothing to resume" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"trainer": "SomethingElse", "run_dir": str(other), "config": {}}))
    assert main(["demo", "--resume", "--run-dir", str(other)]) == 2
    assert "belongs to another kind of run (SomethingElse)" in capsys.readouterr().err
    (other / "status.json").write_text(json.dumps({"format": "statetrainer.status/1", "trainer": "x:Other"}))
    assert main(["demo", "--run-dir", str(other), "--quiet"]) == 2
    assert "belongs to another kind of run (x:Other)" in capsys.readouterr().err
    assert main(["demo", "--resume"]) == 2
    assert "--resume needs --run-dir" in capsys.readouterr().err


def test_diagram_with_callbacks_of_a_trainer(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """--callbacks lists each state's callbacks under its name; a trainer needing args is a clear error."""
    module = tmp_path / "cbmod.py"
    module.write_text(
        "from statetrainer import ConvnetTrainer, EarlyStopping\n"
        "class WithCallbacks(ConvnetTrainer):\n"
        "    def __init__(self):\n"
        "        super().__init__({})\n"
        "        self.add_callback(EarlyStopping('val_loss'))\n"
        "class NeedsArgs(ConvnetTrainer):\n"
        "    def __init__(self, a):\n"
        "        super().__init__(a)\n"
    )
    assert main(["diagram", "train", "--trainer", f"{module}:WithCallbacks", "--callbacks"]) == 0
    nodes = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("   on_")}
    assert "<BR/>+ EarlyStopping.check>" in nodes["on_epoch_end"]
    assert not [name for name, line in nodes.items() if "+ " in line and name != "on_epoch_end"]
    assert main(["diagram", "train", "--trainer", f"{module}:NeedsArgs", "--callbacks"]) == 2
    assert "cannot build" in capsys.readouterr().err
