"""``statetrainer demo``: a small convnet on the 8x8 handwritten digits shipped in the package.

``DigitsTrainer`` is a ConvnetTrainer subclass written the way a user writes one. The
data (UCI optical recognition of handwritten digits, CC BY 4.0, see
``statetrainer/data/README.md``) is read from the package: nothing is downloaded.
"""

from __future__ import annotations

import csv
import gzip
import sys
import time
from importlib import resources
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from statetrainer.builtin_callbacks import CSVLogger, ModelCheckpoint, ProgressBar
from statetrainer.trainer import ConvnetTrainer


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 digits as ``(images [N,1,8,8] in 0..1, labels [N])``."""
    with resources.files("statetrainer.data").joinpath("digits.csv.gz").open("rb") as raw:
        rows = list(csv.reader(gzip.open(raw, "rt")))
    values = torch.tensor([[float(v) for v in row] for row in rows])
    return (values[:, :64] / 16.0).reshape(-1, 1, 8, 8), values[:, 64].long()


class DigitsTrainer(ConvnetTrainer):
    """Train/valid/test split, per-epoch table, best-model checkpoint, test accuracy."""

    def define_data_attr(self) -> None:
        self._batch_size = int(self.config.get("batch_size", 32))
        self._seed = int(self.config.get("seed", 0))

    def define_train_attr(self) -> None:
        self._num_epochs = int(self.config.get("epochs", 12))
        self._lr = float(self.config.get("lr", 3e-3))

    def define_compute_attr(self) -> None:
        self._device = _device(self.config.get("device", "auto"))

    def get_trainloader(self) -> None:
        images, labels = load_digits()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self._seed))
        images, labels = images[order], labels[order]
        train, valid = slice(0, 1257), slice(1257, 1527)
        self._test = (images[1527:], labels[1527:])
        self.train_loader = DataLoader(
            TensorDataset(images[train], labels[train]), batch_size=self._batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(self._seed),
        )
        self.valid_loader = DataLoader(TensorDataset(images[valid], labels[valid]), batch_size=256)

    def get_testloader(self) -> None:
        self.test_loader = DataLoader(TensorDataset(*self._test), batch_size=256)

    def build_model(self) -> None:
        torch.manual_seed(self._seed)
        self.model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 4 * 4, 10),
        ).to(self._device)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self._lr)

    def start_logger(self) -> None:
        self._epoch_started = time.time()
        if not self.config.get("quiet"):
            print(threads_line(self.config.get("threads")))
            print(f"{'epoch':>5} {'train loss':>10} {'valid loss':>10} {'valid acc':>9} {'time':>6}")

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._epoch_started = time.time()

    def on_start_training_batch(self, args: Any) -> None:
        self.inputs, self.targets = (a.to(self._device) for a in args)

    def training_step(self) -> None:
        self.optimizer_zero_grad()
        self.loss = self.criterion(self.model(self.inputs), self.targets)
        self.loss_backward()
        self.optimizer_step()
        self.log("train_loss", self.loss)

    def evaluate_batch(self, args: Any) -> None:
        inputs, targets = (a.to(self._device) for a in args)
        outputs = self.model(inputs)
        self.log("valid_loss", self.criterion(outputs, targets))
        self.log("valid_acc", (outputs.argmax(1) == targets).float().mean())

    def on_epoch_end(self) -> None:
        m = self.metrics()
        if not self.config.get("quiet"):
            print(f"{self._epoch:>5} {m['train_loss']:>10.4f} {m.get('valid_loss', float('nan')):>10.4f} "
                  f"{m.get('valid_acc', float('nan')):>9.3f} {time.time() - self._epoch_started:>5.1f}s")

    def on_train_end(self) -> None:
        if self.run_dir:
            self.save_model()

    def load_model(self) -> None:
        best = ModelCheckpoint.best_file(self)
        if best is not None:
            from statetrainer.checkpoint import load_state_dict

            load_state_dict(self.model, best)

    def on_test_start(self) -> None:
        self.model.eval()
        self.correct = 0
        self.total = 0

    def test_step(self, args: Any) -> None:
        inputs, targets = (a.to(self._device) for a in args)
        with torch.no_grad():
            self.correct += int((self.model(inputs).argmax(1) == targets).sum())
        self.total += len(targets)

    def on_test_end(self) -> None:
        self.test_accuracy = self.correct / max(1, self.total)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from statetrainer._errors import ConfigurationError

        raise ConfigurationError("--device cuda: this machine has no CUDA device; use --device cpu")
    return torch.device(name)


#: The demo's torch threads unless told otherwise: one thread gives the same result on every
#: machine, and is the fastest for this small model on a busy one (10 s vs 128 s with two
#: threads for 12 epochs, measured on a 2-core AMD EPYC VM shared with other jobs).
DEFAULT_THREADS = 1


def set_threads(threads: int | None) -> int:
    """Use ``threads`` torch threads (``None``: :data:`DEFAULT_THREADS`); returns the count in use.

    The demo's result and speed depend on it: the convolutions sum in another order with
    another thread count, and a busy machine slows many threads down.
    """
    count = DEFAULT_THREADS if threads is None else threads
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        from statetrainer._errors import ConfigurationError

        raise ConfigurationError(f"threads must be an int >= 1, got {threads!r}")
    torch.set_num_threads(count)
    return torch.get_num_threads()


def threads_line(threads: int | None) -> str:
    """What the demo prints about its threads, e.g. ``torch threads: 1 (the demo's default; ...)``."""
    how = "set by --threads" if threads is not None else "the demo's default; --threads N to change it"
    return f"torch threads: {torch.get_num_threads()} ({how})"


def build(config: dict[str, Any], run_dir: str | None, checkpoint_every: int | None = None) -> DigitsTrainer:
    """The demo trainer with its callbacks: progress bar, CSV metrics, best checkpoint.

    Sets torch's thread count first: ``config["threads"]``, else :data:`DEFAULT_THREADS`.
    """
    set_threads(config.get("threads"))
    trainer = DigitsTrainer(config, run_dir=run_dir, checkpoint_every=checkpoint_every, checkpoint_epochs=True)
    if not config.get("quiet") and sys.stdout.isatty():  # a bar only where someone watches: not in a log
        trainer.add_callback(ProgressBar())
    trainer.add_callback(CSVLogger())
    trainer.add_callback(ModelCheckpoint(monitor="valid_acc", mode="max"))
    return trainer
