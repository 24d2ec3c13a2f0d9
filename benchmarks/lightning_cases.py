"""Lightning's side of the workloads: minimal LightningModules and a bare Trainer.

The Trainer is as light as Lightning makes it: one CPU device, ``barebones=True`` (no
logging, no checkpointing, no progress bar, no model summary, no sanity check), one epoch.
Lightning is optional (benchmarks/requirements.txt); only this module imports it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from trainers import Batch, linear_data, linear_model
from workloads import Timed, noop_items

# Lightning announces the devices and its barebones mode at every Trainer: not results.
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module=r"lightning\.")
warnings.filterwarnings("ignore", message=r".*(configure_optimizers|num_workers|barebones).*")


class NoOpModule(pl.LightningModule):
    """A module whose training step does nothing (manual optimization, no optimizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False  # no optimizer to step: the step is the whole batch

    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> None:
        return None


class LinearModule(pl.LightningModule):
    """The linear workload the Lightning way: the step returns the loss, Lightning optimizes."""

    def __init__(self) -> None:
        super().__init__()
        self.model, self.optimizer, self.loss_fn = linear_model()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss_fn(self.model(x), y)  # type: ignore[no-any-return]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer


class Loader:
    """A list seen as one iterable: Lightning takes a bare list for a *collection* of loaders."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)  # the list's own iterator: nothing added per item

    def __len__(self) -> int:
        return len(self.items)


def bare_trainer() -> pl.Trainer:
    """A Trainer with every optional feature off, on one CPU device, for one epoch."""
    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, barebones=True, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0)


def lightning_noop(n: int) -> Timed:
    """``Trainer.fit`` of the no-op module over ``n`` ints."""
    items, module, trainer = Loader(noop_items(n)), NoOpModule(), bare_trainer()
    return lambda: trainer.fit(module, train_dataloaders=items)


def lightning_linear(n: int) -> Timed:
    """``Trainer.fit`` of the linear module over ``n`` pre-made batches."""
    data, module, trainer = Loader(linear_data(n)), LinearModule(), bare_trainer()
    return lambda: trainer.fit(module, train_dataloaders=data)
