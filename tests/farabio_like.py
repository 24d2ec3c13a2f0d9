"""A tiny real-torch trainer for callback tests: Linear regression, 4 batches/epoch."""

from __future__ import annotations

from typing import Any

import torch

from statetrainer import ConvnetTrainer


class TinyTrainer(ConvnetTrainer):
    def __init__(self, epochs: int = 2, **kw: Any) -> None:
        self.epochs = epochs
        super().__init__({}, **kw)

    def define_train_attr(self) -> None:
        self._num_epochs = self.epochs

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 3, generator=g)
        y = x.sum(1, keepdim=True)
        self.train_loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
        self.valid_loader = self.train_loader[:2]

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    def on_start_training_batch(self, args: Any) -> None:
        self.x, self.y = args

    def training_step(self) -> None:
        self.optimizer_zero_grad()
        self.loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()
        self.log("train_loss", self.loss)

    def evaluate_batch(self, args: Any) -> None:
        x, y = args
        self.log("val_loss", torch.nn.functional.mse_loss(self.model(x), y))
