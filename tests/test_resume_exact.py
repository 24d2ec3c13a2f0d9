"""Resume equivalence beyond one interruption: a run resumed twice within one epoch, and a run
with stateful callbacks attached, end exactly as the uninterrupted run does."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from farabio_like import TinyTrainer
from torch.utils.data import DataLoader, TensorDataset

from statetrainer import ConvnetTrainer, CSVLogger, EarlyStopping, ModelCheckpoint, TrainerRunError


class _Crash(Exception):
    pass


def _crash_once_written(trainer: ConvnetTrainer, path: Path) -> None:
    """Fail on the first transition after ``path`` exists (the process dies after its checkpoint)."""

    def crash(source: str, target: str) -> None:
        if path.exists():
            raise _Crash

    trainer.observe(crash)


def _run_until_crash(trainer: ConvnetTrainer, resume_from: Path | None = None) -> None:
    with pytest.raises(TrainerRunError, match=r"^_Crash: ") as info:
        trainer.train(resume_from=resume_from)
    assert isinstance(info.value.__cause__, _Crash)


class Shuffled(ConvnetTrainer):
    """A DataLoader shuffling with the global torch RNG (no generator of its own), and dropout:
    the order of an epoch's items depends on the RNG state at the moment the epoch opens."""

    def __init__(self, **kw: Any) -> None:
        self.seen: list[list[int]] = []
        super().__init__({}, **kw)

    def define_train_attr(self) -> None:
        self._num_epochs, self._has_eval = 2, False

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(3)
        x, y = torch.randn(12, 4, generator=g), torch.randn(12, 1, generator=g)
        self.train_loader = DataLoader(TensorDataset(x, y, torch.arange(12)), batch_size=2, shuffle=True)

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    def on_start_training_batch(self, args: Any) -> None:
        self.x, self.y, index = args
        self.seen.append(index.tolist())

    def training_step(self) -> None:
        self.optimizer_zero_grad()
        self.loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()


def test_resumed_twice_within_one_epoch_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    """Checkpointed after batch 2 of epoch 1 and crashed; resumed (in a scrambled RNG), checkpointed
    after batch 4 of the same epoch and crashed; resumed again: the same items in the same order
    and bitwise the same weights — the second resume re-opens the epoch with the RNG the epoch began
    with, carried through the first resumed run's checkpoint."""
    torch.manual_seed(7)
    reference = Shuffled()
    reference.train()
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"

    torch.manual_seed(7)
    run = Shuffled()
    run.on("on_end_training_batch", lambda t: t.save_checkpoint(first), when=lambda t: t.global_step == 2)
    _crash_once_written(run, first)
    _run_until_crash(run)

    torch.manual_seed(12345)  # a new process starts from other RNG states
    resumed = Shuffled()
    resumed.on("on_end_training_batch", lambda t: t.save_checkpoint(second), when=lambda t: t.global_step == 4)
    _crash_once_written(resumed, second)
    _run_until_crash(resumed, first)
    assert resumed.global_step == 4 and len(resumed.seen) == 4

    torch.manual_seed(54321)
    final = Shuffled()
    final.train(resume_from=second)
    assert final.seen == reference.seen
    assert sorted(i for batch in final.seen[:6] for i in batch) == list(range(12))
    for a, b in zip(final.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)


#: The validation loss of each epoch: best at epoch 2, then three epochs without improvement.
VAL_LOSS = {1: 5.0, 2: 4.0, 3: 4.5, 4: 4.6, 5: 4.7, 6: 4.8, 7: 4.9, 8: 5.0}


class Scheduled(TinyTrainer):
    """Real training (TinyTrainer's), and a validation loss read from a schedule so the callbacks'
    decisions are known."""

    def __init__(self) -> None:
        super().__init__(epochs=8)

    def get_trainloader(self) -> None:
        super().get_trainloader()
        self.valid_loader = [0]

    def evaluate_batch(self, args: Any) -> None:
        self.log("val_loss", torch.tensor(VAL_LOSS[self._epoch]))


def _with_callbacks(folder: Path) -> tuple[Scheduled, ModelCheckpoint, EarlyStopping, CSVLogger]:
    trainer = Scheduled()
    keeper = ModelCheckpoint(dirpath=folder / "models", monitor="val_loss", save_top_k=2)
    stopper = EarlyStopping("val_loss", patience=3)
    logger = CSVLogger(folder / "metrics.csv")
    for callback in (keeper, stopper, logger):
        trainer.add_callback(callback)
    return trainer, keeper, stopper, logger


def _rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(path.read_text().splitlines())]


def test_stateful_callbacks_resume_where_they_were(tmp_path: Path) -> None:
    """Interrupted at the end of epoch 4 (two epochs without improvement) and resumed with fresh
    callbacks: EarlyStopping stops at epoch 5 as uninterrupted (its patience counter came back),
    ModelCheckpoint keeps the same two files and best model, CSVLogger's file has every epoch's row."""
    reference, ref_keeper, ref_stopper, _ = _with_callbacks(tmp_path / "reference")
    reference.train()
    assert ref_stopper.stopped_epoch == 5 and reference.status == "stopped"

    path = tmp_path / "ck.pt"
    first, _, _, _ = _with_callbacks(tmp_path / "resumed")
    first.on("on_epoch_end", lambda t: t.save_checkpoint(path), once=4, order=10**6)
    _crash_once_written(first, path)
    _run_until_crash(first)

    second, keeper, stopper, _ = _with_callbacks(tmp_path / "resumed")
    second.train(resume_from=path)
    assert (stopper.stopped_epoch, stopper.bad_epochs, stopper.best) == (5, 3, 4.0) and second.status == "stopped"
    assert keeper.kept == ref_keeper.kept == [(4.0, "top-epoch2.pt"), (4.5, "top-epoch3.pt")]
    files = {p.name for p in (tmp_path / "resumed" / "models").iterdir()}
    assert files == {p.name for p in (tmp_path / "reference" / "models").iterdir()} == {
        "best.pt", "top-epoch2.pt", "top-epoch3.pt"}
    assert ModelCheckpoint.best_file(second) == tmp_path / "resumed" / "models" / "best.pt"
    best = torch.load(tmp_path / "resumed" / "models" / "best.pt", weights_only=True)
    assert all(torch.equal(v, w) for v, w in zip(best.values(), torch.load(ref_keeper.best_path, weights_only=True).values()))
    rows = _rows(tmp_path / "resumed" / "metrics.csv")
    assert rows == _rows(tmp_path / "reference" / "metrics.csv") and [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"]

