"""A small trainer for the run-directory, signal and fault tests, run by the real CLI:

    statetrainer run tests/runs_train.py:Tiny --mode both --checkpoint-every 2 --run-dir RUN \\
        --config epochs=3 --config signal_at=on_evaluate_batch_end:2:SIGINT

Shuffling loader with its own generator, dropout and momentum (so an inexact resume shows in
the weights); epoch checkpoints on; ``model.pt`` written at the end of training. Config:

* ``epochs``, ``hidden`` (the model's size), ``lr``, ``batches`` (training batches per epoch);
* ``signal_at=STATE:N:SIGNAME``: the process sends itself that signal on the N-th entry of
  STATE (a real signal through the real handler; the filter counter is checkpointed, so a
  resumed run does not send it again);
* ``sleep``: seconds each training and evaluation step sleeps (for signals sent from outside);
* ``test_sleep``: seconds each test step sleeps;
* ``wait_for=PATH``: the third training step waits (at most two minutes) until PATH exists,
  so that a test can act while the run is certainly in the middle of training.

The CLI prints ``run directory: RUN  status: finished`` at the end of a complete run.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from statetrainer import ConvnetTrainer


class Tiny(ConvnetTrainer):
    """Regression on 8 features; 4 validation and 3 test batches."""

    def __init__(self, config: Any = None, **kw: Any) -> None:
        kw.setdefault("checkpoint_epochs", True)
        kw.setdefault("status_interval", 0.05)
        super().__init__(config if config is not None else {}, **kw)
        where = self.config.get("signal_at")
        if where:
            state, nth, name = str(where).split(":")
            sig = getattr(signal, name)
            self.on(state, lambda t: os.kill(os.getpid(), sig), once=int(nth), order=10**6)

    def define_train_attr(self) -> None:
        self._num_epochs = int(self.config.get("epochs", 3))
        self._sleep = float(self.config.get("sleep", 0.0))
        self._test_sleep = float(self.config.get("test_sleep", 0.0))
        self._wait_for = self.config.get("wait_for")

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(1)
        n = 8 * int(self.config.get("batches", 6))
        x, y = torch.randn(n + 32, 8, generator=g), torch.randn(n + 32, 1, generator=g)
        self.train_loader = DataLoader(TensorDataset(x[:n], y[:n]), batch_size=8, shuffle=True,
                                       generator=torch.Generator().manual_seed(7))
        self.valid_loader = DataLoader(TensorDataset(x[n:], y[n:]), batch_size=8)

    def get_testloader(self) -> None:
        g = torch.Generator().manual_seed(2)
        self.test_loader = DataLoader(TensorDataset(torch.randn(24, 8, generator=g), torch.randn(24, 1, generator=g)),
                                      batch_size=8)

    def build_model(self) -> None:
        torch.manual_seed(0)
        hidden = int(self.config.get("hidden", 16))
        self.model = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                         torch.nn.Linear(hidden, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=float(self.config.get("lr", 0.05)), momentum=0.9)

    def on_start_training_batch(self, args: Any) -> None:
        self.x, self.y = args

    def training_step(self) -> None:
        time.sleep(self._sleep)
        if self._wait_for and self.global_step == 3:
            for _ in range(12_000):
                if os.path.exists(self._wait_for):
                    break
                time.sleep(0.01)
        self.optimizer_zero_grad()
        self.loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()
        self.log("train_loss", self.loss)

    def evaluate_batch(self, args: Any) -> None:
        time.sleep(self._sleep)
        self.log("valid_loss", torch.nn.functional.mse_loss(self.model(args[0]), args[1]))

    def on_train_end(self) -> None:
        self.save_model()

    def on_test_start(self) -> None:
        self.model.eval()
        self.total = 0.0

    def test_step(self, args: Any) -> None:
        time.sleep(self._test_sleep)
        with torch.no_grad():
            self.total += float(torch.nn.functional.mse_loss(self.model(args[0]), args[1]))

    def on_test_end(self) -> None:
        self.test_loss = self.total
