"""Resume captures the trainer's own state by default: farabio-style trainers resume bitwise.

farabio's U-Net trainer keeps its early-stopping helper and loss history in plain
attributes and never lists them anywhere; a resumed run must continue them exactly.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from statetrainer import ConvnetTrainer, TrainerRunError
from statetrainer import checkpoint as ck


class UnetStyleEarlyStopping:
    """farabio's EarlyStopping helper (utils/helpers.py): a plain object with counters."""

    def __init__(self, patience: int = 3) -> None:
        self.patience, self.counter, self.best_score = patience, 0, None
        self.early_stop, self.val_loss_min = False, np.inf

    def __call__(self, val_loss: float) -> None:
        score = -val_loss
        if self.best_score is None or score > self.best_score + 1e-3:
            self.best_score, self.val_loss_min, self.counter = score, val_loss, 0
        else:
            self.counter += 1
            self.early_stop = self.counter >= self.patience


class UnetStyle(ConvnetTrainer):
    """farabio's U-Net trainer shape: history lists, an early-stopping object, running sums."""

    def define_train_attr(self) -> None:
        self._num_epochs = 10
        self.early_stopping = UnetStyleEarlyStopping(patience=3)
        self.train_losses: list[float] = []
        self.valid_losses: list[float] = []

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(40, 4, generator=g), torch.randn(40, 1, generator=g)
        self.train_loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True,
                                       generator=torch.Generator().manual_seed(1))
        self.valid_loader = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                         torch.nn.Linear(16, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.epoch_loss, self.seen = 0.0, 0  # set here, read at the epoch's end: mid-epoch state

    def on_start_training_batch(self, args: Any) -> None:
        self.x, self.y = args

    def training_step(self) -> None:
        self.optimizer_zero_grad()
        self.loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()
        self.epoch_loss += float(self.loss.detach()) * len(self.x)
        self.seen += len(self.x)

    def on_evaluate_epoch_start(self) -> None:
        super().on_evaluate_epoch_start()
        self.valid_sum = 0.0

    def evaluate_batch(self, args: Any) -> None:
        self.valid_sum += float(torch.nn.functional.mse_loss(self.model(args[0]), args[1]))

    def on_epoch_end(self) -> None:
        self.train_losses.append(self.epoch_loss / self.seen)
        self.valid_losses.append(self.valid_sum)
        self.early_stopping(self.valid_sum)
        if self.early_stopping.early_stop:
            self.stop_train()


class Crash(Exception):
    pass


def _crash_when(trainer: UnetStyle, epoch: int, step: int) -> None:
    def crash(source: str, target: str) -> None:
        if trainer._epoch == epoch and trainer.global_step == step:
            raise Crash

    trainer.observe(crash)


def _same(a: UnetStyle, b: UnetStyle) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_killed_in_epoch_7_and_resumed_from_the_epoch_6_checkpoint(tmp_path: Path) -> None:
    """Epoch checkpoints only: crashed in epoch 7, resumed from epoch 6's end — the early-stopping
    helper and the loss histories come back, so it stops where the uninterrupted run stops, with
    bitwise the same weights (0.1 stopped an epoch later, histories missing epochs 1-6)."""
    reference = UnetStyle()
    reference.train()
    assert reference.status == "stopped" and len(reference.train_losses) == 8, "the helper stops it in epoch 8"
    first = UnetStyle(run_dir=tmp_path, checkpoint_epochs=True)
    _crash_when(first, epoch=7, step=6 * 5 + 2)
    with pytest.raises(TrainerRunError):
        first.train()
    _, data = ck.latest_good(tmp_path / "checkpoints")
    assert (data["state"], data["position"]["epoch"]) == ("on_epoch_end", 6)
    torch.manual_seed(77)
    second = UnetStyle()
    second.train(resume_from=tmp_path)
    assert second.train_losses == reference.train_losses and second.valid_losses == reference.valid_losses
    assert second.early_stopping.counter == reference.early_stopping.counter
    assert second._epoch == reference._epoch and second.status == "stopped" and _same(second, reference)


def test_a_mid_epoch_resume_restores_attributes_set_earlier_in_the_epoch(tmp_path: Path) -> None:
    """Periodic checkpoints: the running sums set in on_train_epoch_start come back (0.1 raised
    AttributeError for them), and the epoch's mean is the uninterrupted one."""
    reference = UnetStyle()
    reference.train()
    first = UnetStyle(run_dir=tmp_path, checkpoint_every=3)
    _crash_when(first, epoch=2, step=8)
    with pytest.raises(TrainerRunError):
        first.train()
    second = UnetStyle()
    second.train(resume_from=tmp_path)
    resume = second.trace.entries()[0]
    assert (resume.epoch, resume.batch) == (2, 0), "resumed inside epoch 2, after its first batch (step 6)"
    assert second.train_losses == reference.train_losses and _same(second, reference)


def test_unpicklable_attributes_are_named_once_and_left_out(tmp_path: Path) -> None:
    """A lock cannot be pickled: one warning names it and says what to do; excluded attributes
    are left out silently; the run and its checkpoints go on."""

    class WithLock(UnetStyle):
        checkpoint_exclude = ("scratch",)

        def define_misc_attr(self) -> None:
            self.lock = threading.Lock()
            self.scratch = threading.Lock()

    t = WithLock(run_dir=tmp_path, checkpoint_epochs=True)
    t._num_epochs = 3
    with pytest.warns(RuntimeWarning, match=r"leave out attributes that cannot be pickled: self.lock \(") as record:
        t.train()
    assert len([w for w in record if "cannot be pickled" in str(w.message)]) == 1
    assert "scratch" not in str(record[0].message) and len(ck.checkpoint_files(tmp_path / "checkpoints")) == 3


def test_attributes_referring_to_live_objects_come_back_as_references(tmp_path: Path) -> None:
    """An attribute holding the model (or a structure containing it) is restored pointing at the
    trainer's own model, not a copy, so the optimizer keeps training what the helper sees."""

    class Holder(UnetStyle):
        def define_misc_attr(self) -> None:
            self.refs: dict[str, Any] = {}

        def on_train_start(self) -> None:
            self.refs = {"model": self.model, "trainer": self}

    first = Holder(run_dir=tmp_path, checkpoint_epochs=True)
    first._num_epochs = 2
    first.train()
    second = Holder()
    second._num_epochs = 3
    second.train(resume_from=tmp_path)
    assert second.refs["model"] is second.model and second.refs["trainer"] is second
