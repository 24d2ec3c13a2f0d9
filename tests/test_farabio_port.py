"""A farabio trainer runs by changing only its import, with real torch training."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

EXAMPLE = Path(__file__).parent.parent / "examples" / "farabio_port.py"


def _load():
    spec = importlib.util.spec_from_file_location("farabio_port", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["farabio_port"] = module
    spec.loader.exec_module(module)
    return module


def test_the_only_statetrainer_line_is_the_import() -> None:
    """The example's code mentions statetrainer only in its import line."""
    code = [line for line in EXAMPLE.read_text().splitlines() if "statetrainer" in line and not line.startswith(("    -", "    +"))]
    assert code == ["from statetrainer import ConvnetTrainer"]


def test_port_trains_stops_early_saves_best_and_tests(tmp_path: Path) -> None:
    """Loss goes down, best model is saved via save_model, test() after train() loads it."""
    module = _load()
    trainer = module.main(epochs=6, patience=100, folder=str(tmp_path))
    losses = [h[1] for h in trainer.history]
    assert losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "best.pt").is_file()
    assert trainer.accuracy > 0.9
    assert trainer.status == "finished"
    assert [e.state for e in trainer.trace][-1] == "on_test_end"


def test_early_stop_via_stop_train_ends_gracefully(tmp_path: Path) -> None:
    """stop_train() from on_evaluate_epoch_end ends the run at on_train_end, no sys.exit."""
    module = _load()

    class Impatient(module.StripesTrainer):
        def on_evaluate_epoch_end(self):
            super().on_evaluate_epoch_end()
            if self._epoch == 2:
                self.stop_train()

        def on_train_end(self):
            self.ended_in = self.state

    config = {"batch_size": 32, "epochs": 10, "lr": 0.05, "patience": 100,
              "model_path": str(tmp_path / "m.pt")}
    trainer = Impatient(config)
    trainer.train()
    assert trainer.status == "stopped" and len(trainer.history) == 2
    assert trainer.ended_in == "on_train_end"
    states = [e.state for e in trainer.trace]
    assert states[-2:] == ["on_evaluate_epoch_end", "on_train_end"]
    assert torch.is_grad_enabled(), "a stop inside evaluation must restore grad mode"


def test_evaluation_runs_under_no_grad() -> None:
    """Every evaluation hook sees grad disabled; training hooks see it enabled."""
    from recording import Config, RecordingTrainer

    seen = {}

    class Probe(RecordingTrainer):
        def _rec(self, hook, *args, batch=-1):
            seen.setdefault(hook, set()).add(torch.is_grad_enabled())
            super()._rec(hook, *args, batch=batch)

    Probe(Config(num_epochs=1, batches=1, valid_items=1)).train()
    for hook in ("on_evaluate_epoch_start", "on_evaluate_batch_start", "evaluate_batch", "on_evaluate_batch_end", "on_evaluate_epoch_end"):
        assert seen[hook] == {False}, hook
    for hook in ("on_train_epoch_start", "training_step", "on_epoch_end", "on_train_end"):
        assert seen[hook] == {True}, hook
