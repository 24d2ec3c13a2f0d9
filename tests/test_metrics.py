"""Metrics: one number per log (checked without a sync), epoch means, step values, the metrics API."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from farabio_like import TinyTrainer

from statetrainer import CSVLogger, TensorBoardLogger, TrainerRunError
from statetrainer.metrics import STEP_CHUNK, Metrics, MetricsHistory


class StepLogging(TinyTrainer):
    """Logs the loss per step too, and a Python float per step only."""

    def training_step(self) -> None:
        super().training_step()
        self.log("loss", self.loss, on_step=True)
        self.log("lr", 0.1, on_step=True, on_epoch=False)


def test_metrics_after_train_are_the_last_epochs_and_history_is_both_method_and_list() -> None:
    """metrics() after train() returns the last epoch's means; metrics_history() == metrics_history."""
    trainer = TinyTrainer(epochs=2)
    trainer.train()
    history = trainer.metrics_history
    assert isinstance(history, MetricsHistory) and len(history) == 2
    assert trainer.metrics_history() == list(history) == [dict(h) for h in history]
    last = {k: v for k, v in history[-1].items() if k != "epoch"}
    assert trainer.metrics() == last and set(last) == {"train_loss", "val_loss"}


def test_metrics_during_an_epoch_are_its_own_means() -> None:
    """Within an epoch, once something is logged, metrics() is that epoch's running means."""
    seen: list[dict[str, float]] = []
    trainer = TinyTrainer(epochs=2)
    trainer.on("on_train_epoch_end", lambda t: seen.append(t.metrics()))
    trainer.train()
    assert [set(s) for s in seen] == [{"train_loss"}, {"train_loss"}]
    assert seen[1]["train_loss"] == pytest.approx(trainer.metrics_history[1]["train_loss"])


def test_a_log_is_checked_without_reading_the_value() -> None:
    """One-element tensors of any shape, numbers and numpy scalars pass; the check reads only the shape."""
    import numpy as np

    m = Metrics()
    for value in (torch.tensor(1.0), torch.ones(1, 1), 2, 3.0):
        m.log("x", value)
    for value in (np.float32(4.0), np.ones(1)):
        m.log("n", value)
    assert m.compute() == {"x": pytest.approx(7 / 4), "n": pytest.approx(5 / 2)}
    with pytest.raises(ValueError, match=r"log\('y', value\).*array of shape \(2,\) \(2 elements\)"):
        m.log("y", np.ones(2))
    with pytest.raises(ValueError, match=r"tensor of shape \(3, 128\) \(384 elements\)"):
        m.log("y", torch.ones(3, 128))


def test_step_values_reach_csv_per_step_without_a_sync_per_batch(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """on_step=True values land in metrics_steps.csv (step, epoch, metric, value), converted at epoch ends."""
    syncs = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: syncs.append(1) or original(self))
    trainer = StepLogging(epochs=2, run_dir=tmp_path)
    trainer.add_callback(CSVLogger())
    trainer.train()
    rows = list(csv.DictReader((tmp_path / "metrics_steps.csv").read_text().splitlines()))
    assert [(r["step"], r["epoch"], r["metric"]) for r in rows[:4]] == [
        ("1", "1", "loss"), ("1", "1", "lr"), ("2", "1", "loss"), ("2", "1", "lr")]
    assert len(rows) == 2 * 4 * 2 and rows[-1]["step"] == "8" and rows[-1]["epoch"] == "2"
    losses = [float(r["value"]) for r in rows if r["metric"] == "loss" and r["epoch"] == "1"]
    assert sum(losses) / 4 == pytest.approx(trainer.metrics_history[0]["loss"])
    assert "lr" not in trainer.metrics_history[0]
    assert len(syncs) == 2  # one conversion per epoch, not one per batch
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,seconds,train_loss,loss,val_loss"


def test_step_values_are_converted_in_chunks_and_kept_in_checkpoints() -> None:
    """A long epoch converts its step values every STEP_CHUNK logs; state_dict carries them."""
    m = Metrics()
    for step in range(STEP_CHUNK + 3):
        m.log("x", torch.tensor(float(step)), on_step=True, step=step)
    assert len(m._pending) == 3 and len(m._steps) == STEP_CHUNK
    restored = Metrics()
    restored.load_state_dict(m.state_dict())
    assert restored.steps() == m.steps() and restored.steps()[-1] == (STEP_CHUNK + 2, "x", float(STEP_CHUNK + 2))
    old = {"sums": {}, "counts": {}, "history": []}  # a checkpoint from before step values
    restored.load_state_dict(old)
    assert restored.steps() == []


def test_step_values_reach_tensorboard_at_their_global_step(tmp_path: Path) -> None:
    """TensorBoard gets <name>_step scalars at the global step, and the epoch means at the epoch."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = StepLogging(epochs=1, run_dir=tmp_path)
    trainer.add_callback(TensorBoardLogger())
    trainer.train()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss_step")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("loss")] == [1]


def test_a_resumed_run_writes_the_same_step_file(tmp_path: Path) -> None:
    """Crashed after epoch 3's rows were appended but before its checkpoint, then resumed from epoch 2's:
    metrics_steps.csv is cut back to the checkpoint's rows and ends equal to an uninterrupted run's."""
    whole = tmp_path / "whole"
    trainer = StepLogging(epochs=3, run_dir=whole)
    trainer.add_callback(CSVLogger())
    trainer.train()
    part = tmp_path / "part"
    first = StepLogging(epochs=3, run_dir=part, checkpoint_epochs=True)
    first.add_callback(CSVLogger())
    first.on("on_epoch_end", _crash, once=3)  # after CSVLogger's row: epoch 3's steps are in the file
    with pytest.raises(TrainerRunError):
        first.train()
    assert (part / "metrics_steps.csv").read_text().count("\n") == 1 + 3 * 8
    second = StepLogging(epochs=3, run_dir=part, checkpoint_epochs=True)
    second.add_callback(CSVLogger())
    second.train(resume_from=part)
    expected = (whole / "metrics_steps.csv").read_text().splitlines()
    assert (part / "metrics_steps.csv").read_text().splitlines() == expected


def _crash(trainer: object) -> None:
    raise RuntimeError("killed")


def test_status_json_carries_the_last_epochs_metrics_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """status.json's metrics_history is the last STATUS_HISTORY epochs (a status write stays
    bounded however long the run); the trainer keeps them all."""
    import json

    from statetrainer import inspect

    monkeypatch.setattr(inspect, "STATUS_HISTORY", 2)
    trainer = TinyTrainer(epochs=3, run_dir=tmp_path / "run")
    trainer.train()
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert [h["epoch"] for h in status["metrics_history"]] == [2.0, 3.0]
    assert status["metrics_history"] == [dict(h) for h in trainer.metrics_history][-2:]
    assert len(trainer.metrics_history) == 3
