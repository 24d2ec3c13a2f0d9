"""The torch workloads: data, the shared steps, ConvnetTrainer subclasses, plain loops, Ignite.

Two workloads, each run the same way by every framework:

* ``noop``: the items are plain ints and the user's step does nothing, so what is measured
  is the framework alone (its loop, hooks, events, bookkeeping);
* ``linear``: ``Linear(32, 1)``, batch 32, MSE, SGD, pre-batched tensors, one thread
  (DESIGN §5's per-batch workload).

Each ``prepare_*`` function does all the set-up for ``n`` batches and returns the timed call.
Ignite is imported only by its own functions (it is optional: benchmarks/requirements.txt).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from workloads import Timed, noop_items, noop_process

from statetrainer import ConvnetTrainer

# Every benchmark compares single-thread per-batch costs; more threads only add noise here.
torch.set_num_threads(1)

#: Where the linear workload runs; ``overhead.py --device cuda`` changes it.
DEVICE = torch.device("cpu")

Batch = tuple[torch.Tensor, torch.Tensor]


def sync() -> None:
    """Wait for the device, so a timer read afterwards includes queued GPU work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def linear_data(batches: int) -> list[Batch]:
    """``batches`` pre-made (x, y) batches of 32, the same for every framework (seeded)."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 32, generator=g).to(DEVICE), torch.randn(32, 1, generator=g).to(DEVICE))
            for _ in range(batches)]


def linear_model() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.nn.Module]:
    """The model, optimizer and loss every framework trains (seeded, so all start equal)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 1).to(DEVICE)
    return model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.MSELoss()


# ---------------------------------------------------------------------------- farabio-style steps


class Steps:
    """The per-batch steps written the farabio way (hook methods, ``self.`` attributes)."""

    model: torch.nn.Module

    def _build(self) -> None:
        self.model, self.optimizer, self.loss_fn = linear_model()

    def on_start_training_batch(self, args: Batch) -> None:
        self.x, self.y = args

    def training_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss = self.loss_fn(self.model(self.x), self.y)
        self.loss.backward()
        self.optimizer.step()

    def on_end_training_batch(self) -> None:
        pass


class NoOp(ConvnetTrainer):
    """ConvnetTrainer with every per-batch hook the base class's no-op; items are plain ints."""

    def __init__(self, items: Sequence[Any], epochs: int = 1, **options: Any) -> None:
        self.items, self.epochs = items, epochs
        super().__init__({}, **options)

    def define_train_attr(self) -> None:
        self._num_epochs, self._has_eval = self.epochs, False

    def get_trainloader(self) -> None:
        self.train_loader = self.items

    def on_train_epoch_start(self) -> None:
        pass  # the base hook puts a model in train mode; there is none


class Linear(Steps, ConvnetTrainer):
    """The linear steps through ConvnetTrainer's lifecycle (trace and live state on)."""

    def __init__(self, data: Sequence[Batch], epochs: int = 1, **options: Any) -> None:
        self.data, self.epochs = data, epochs
        super().__init__({}, **options)

    def define_train_attr(self) -> None:
        self._num_epochs, self._has_eval = self.epochs, False

    def get_trainloader(self) -> None:
        self.train_loader = self.data

    def build_model(self) -> None:
        self._build()


class MethodStyle(Steps):
    """The same steps and hooks called from a plain loop: the hook style, no statetrainer."""

    def __init__(self) -> None:
        self._build()


class MethodNoOp:
    """Three no-op hook methods, called per item as ConvnetTrainer calls its per-batch hooks."""

    def on_start_training_batch(self, args: Any) -> None:
        pass

    def training_step(self) -> None:
        pass

    def on_end_training_batch(self) -> None:
        pass


# ---------------------------------------------------------------------------- prepared runs


def raw_linear(n: int) -> Timed:
    """A hand-written loop: the step inlined, locals only, nothing else."""
    data = linear_data(n)
    model, optimizer, loss_fn = linear_model()

    def run() -> None:
        model.train()
        for x, y in data:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()

    return run


def method_linear(n: int) -> Timed:
    """The farabio-style hook methods called from a plain loop."""
    data = linear_data(n)
    trainer = MethodStyle()
    return lambda: _method_loop(trainer, data)


def method_noop(n: int) -> Timed:
    """Three no-op hook methods per item from a plain loop."""
    items = noop_items(n)
    hooks = MethodNoOp()
    return lambda: _method_loop(hooks, items)


def _method_loop(trainer: Any, items: Sequence[Any]) -> None:
    model = getattr(trainer, "model", None)
    if model is not None:
        model.train()
    for item in items:
        trainer.on_start_training_batch(item)
        trainer.training_step()
        trainer.on_end_training_batch()


def statetrainer_linear(n: int, epochs: int = 1, **options: Any) -> Timed:
    """ConvnetTrainer running the linear steps (no run directory unless ``run_dir=`` is given)."""
    return Linear(linear_data(n), epochs, **options).train


def statetrainer_noop(n: int, epochs: int = 1, **options: Any) -> Timed:
    """ConvnetTrainer with no-op hooks over ``n`` ints per epoch."""
    return NoOp(noop_items(n), epochs, **options).train


def ignite_noop(n: int) -> Timed:
    """Ignite's Engine with a no-op process function over ``n`` ints."""
    from ignite.engine import Engine

    items = noop_items(n)
    engine = Engine(noop_process)
    return lambda: engine.run(items, max_epochs=1)


def ignite_linear(n: int) -> Timed:
    """Ignite's Engine whose process function is the hand-written loop's step."""
    from ignite.engine import Engine

    data = linear_data(n)
    model, optimizer, loss_fn = linear_model()

    def process(engine: Any, batch: Batch) -> torch.Tensor:
        # the hand-written step as the process function itself: no extra call per batch
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    engine = Engine(process)

    def run() -> None:
        model.train()
        engine.run(data, max_epochs=1)

    return run
