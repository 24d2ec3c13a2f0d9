"""A custom lifecycle: gradient accumulation drawn as part of the machine.

Each training item is a micro-batch; every ``accumulate`` micro-batches (and at the end
of the data) the machine takes the ``step_due`` edge to ``optimizer_step``. Run it:
``python examples/grad_accumulation.py``; draw it:
``statetrainer diagram accumulate --trainer examples/grad_accumulation.py:AccumulatingTrainer``.
"""

import torch

from statetrainer import Edge, Guard, ItemLoop, Lifecycle, LifecycleTrainer, State, with_stop_edges

ACCUMULATE = with_stop_edges(Lifecycle(
    name="accumulate",
    states=(
        State("train", 1, compound=True),
        State("on_train_epoch_start", 2),
        State("micro_batch", 3),
        State("optimizer_step", 3),
        State("on_train_epoch_end", 2),
        State("on_train_end", 1),
    ),
    edges=(
        Edge("train", "on_train_epoch_start"),
        Edge("on_train_epoch_start", "micro_batch", "descend", guard="has_next_batch"),
        Edge("on_train_epoch_start", "on_train_epoch_end", "extension", reason="no data this epoch"),
        Edge("micro_batch", "optimizer_step", guard="step_due"),
        Edge("micro_batch", "micro_batch", "loop", guard="has_next_batch", label="accumulate"),
        Edge("micro_batch", "optimizer_step", "extension", reason="end of data: step the remainder"),
        Edge("optimizer_step", "micro_batch", "loop", guard="has_next_batch", label="train_epoch_iter"),
        Edge("optimizer_step", "on_train_epoch_end", "return"),
        Edge("on_train_epoch_end", "on_train_epoch_start", "loop", guard="epochs_remaining", label="_num_epochs"),
        Edge("on_train_epoch_end", "on_train_end", "return"),
    ),
    initial="train",
    finals=("on_train_end",),
    guards=(
        Guard("has_next_batch", "another micro-batch is waiting"),
        Guard("step_due", "`accumulate` micro-batches have been back-propagated"),
        Guard("epochs_remaining", "_epoch < _num_epochs"),
    ),
    graph_name="Accumulate",
), target="on_train_end")


class AccumulatingTrainer(LifecycleTrainer):
    lifecycle = ACCUMULATE

    def define_train_attr(self):
        self._num_epochs = (self.config or {}).get("epochs", 2)
        self.accumulate = (self.config or {}).get("accumulate", 4)
        self._epoch = 0

    def get_trainloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 5, generator=g)
        y = x @ torch.arange(1.0, 6.0).unsqueeze(1)
        self.train_loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]

    def build_model(self):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(5, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)
        self.steps = 0
        self.batches = ItemLoop()

    # guards
    def has_next_batch(self):
        return self.batches.has_next()

    def step_due(self):
        return self.micro % self.accumulate == 0

    def epochs_remaining(self):
        return self._epoch < self._num_epochs

    # hooks
    def on_train_epoch_start(self):
        self._epoch += 1
        self.batches.start(self.train_loader)
        self.micro = 0
        self.optimizer.zero_grad()

    def micro_batch(self):
        x, y = self.batches.take()
        loss = torch.nn.functional.mse_loss(self.model(x), y, reduction="sum") / (8 * self.accumulate)
        loss.backward()
        self.micro += 1

    def optimizer_step(self):
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.steps += 1


if __name__ == "__main__":
    trainer = AccumulatingTrainer({"epochs": 3, "accumulate": 4})
    trainer.run()
    print(f"optimizer steps: {trainer.steps}, weights: {trainer.model.weight.data.tolist()}")
