"""What a run can trust about its callbacks (issue 12): a NaN is never "best", a non-finite
monitored value stops early stopping with a reason, and callbacks attached or removed
during a run take effect from the next state (never mid-state, never silently ignored)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from statetrainer import ConvnetTrainer, EarlyStopping, ModelCheckpoint


class Scripted(ConvnetTrainer):
    """Logs ``valid_loss`` from a script, one value per epoch; the model's weight is the epoch."""

    def __init__(self, values: list[float], **kw: Any) -> None:
        self.values = values
        super().__init__({}, **kw)

    def define_train_attr(self) -> None:
        self._num_epochs = len(self.values)
        self._has_eval = False

    def get_trainloader(self) -> None:
        self.train_loader = [0, 1]

    def build_model(self) -> None:
        self.model = torch.nn.Linear(1, 1, bias=False)

    def on_train_epoch_end(self) -> None:
        with torch.no_grad():
            self.model.weight.fill_(float(self._epoch))
        self.log("valid_loss", self.values[self._epoch - 1])


def _saved_epoch(path: Path) -> float:
    return float(torch.load(path, weights_only=True)["weight"].item())


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_nan_is_never_the_best_model(tmp_path: Path, mode: str) -> None:
    """ModelCheckpoint: NaN epochs are never kept, whatever the mode; best.pt stays the best finite epoch."""
    values = [0.5, math.nan, 0.4, math.nan] if mode == "min" else [0.4, math.nan, 0.5, math.nan]
    trainer = Scripted(values, run_dir=tmp_path)
    checkpoint = ModelCheckpoint(monitor="valid_loss", mode=mode, save_top_k=2)
    trainer.add_callback(checkpoint)
    trainer.train()
    assert all(math.isfinite(v) for v, _ in checkpoint.kept), checkpoint.kept
    assert sorted(name for _, name in checkpoint.kept) == ["top-epoch1.pt", "top-epoch3.pt"]
    best = ModelCheckpoint.best_file(trainer)
    assert best is not None and _saved_epoch(best) == 3.0


def test_early_stopping_stops_on_a_nan_with_a_reason(tmp_path: Path) -> None:
    """check_finite (the default): a NaN stops the run at that epoch; the reason is in the
    trainer and in status.json."""
    trainer = Scripted([1.0, 0.9, math.nan, 0.1, 0.05], run_dir=tmp_path)
    stopping = EarlyStopping("valid_loss", patience=3)
    trainer.add_callback(stopping)
    trainer.train()
    assert trainer.status == "stopped" and stopping.stopped_epoch == 3
    assert stopping.reason == "EarlyStopping: valid_loss is nan (not finite)"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "stopped" and status["stop_reason"] == stopping.reason


@pytest.mark.parametrize("mode", ["min", "max"])
def test_without_check_finite_a_nan_is_never_an_improvement(mode: str) -> None:
    """check_finite=False: NaN counts as an epoch without improvement in either mode."""
    trainer = Scripted([1.0, math.nan, math.nan, 2.0, 3.0])
    stopping = EarlyStopping("valid_loss", patience=2, mode=mode, check_finite=False)
    trainer.add_callback(stopping)
    trainer.train()
    assert stopping.stopped_epoch == 3 and trainer.status == "stopped"
    assert stopping.best == 1.0


def test_callbacks_attached_or_removed_during_a_run_take_effect_from_the_next_state() -> None:
    """A callback attached in a state runs from the next state entered (not in the rest of the
    current one); one removed during a run stops from the next state on."""
    trainer = Scripted([1.0, 1.0, 1.0])
    calls: list[tuple[str, int, int | None]] = []
    handles: dict[str, Any] = {}

    def record(name: str) -> Any:
        return lambda t: calls.append((name, t._epoch, t.snapshot().batch))

    def attach(t: Any) -> None:
        handles["end"] = t.on("on_end_training_batch", record("end"))
        handles["same"] = t.on("on_train_epoch_start", record("same"))  # this very state: from its next entry

    def detach(t: Any) -> None:
        t.off(handles["end"])

    trainer.on("on_train_epoch_start", attach, once=1)
    trainer.on("on_start_training_batch", lambda t: detach(t) if t._epoch == 2 and t.snapshot().batch == 1 else None)
    trainer.train()
    assert ("same", 1, None) not in calls, "not in the state that attached it"
    assert [c for c in calls if c[0] == "same"] == [("same", 2, None), ("same", 3, None)]
    ends = [(e, b) for name, e, b in calls if name == "end"]
    assert ends == [(1, 0), (1, 1), (2, 0)], "fired from the next state on, until removed"
