"""A custom lifecycle: gradient accumulation drawn as part of the machine.

Each training item is a micro-batch; every ``accumulate`` micro-batches (and at the end
of the data) the machine takes the ``step_due`` edge to ``optimizer_step``. Only
``optimizer_step`` is declared resumable, so periodic checkpoints and signal stops land
on whole optimizer steps (a checkpoint would also hold the gradients in flight, but a
micro-batch is not a moment anyone wants to stop at). Run it: ``python examples/grad_accumulation.py``;
draw it: ``statetrainer diagram accumulate --trainer examples/grad_accumulation.py:AccumulatingTrainer``.
"""

import sys

import torch

from statetrainer import (
    CSVLogger,
    EarlyStopping,
    Edge,
    Feed,
    Guard,
    Lifecycle,
    LifecycleTrainer,
    State,
    with_stop_edges,
)

ACCUMULATE = with_stop_edges(Lifecycle(
    name="accumulate",
    states=(
        State("train", 1, compound=True),
        State("on_train_epoch_start", 2, roles={"epoch_start", "resumable"}, opens="micro"),
        State("micro_batch", 3, takes="micro", item="micro"),
        State("optimizer_step", 3, roles={"batch_end", "resumable"}),
        State("on_train_epoch_end", 2, roles={"epoch_end", "resumable"}, closes="micro"),
        State("on_train_end", 1, roles={"resumable"}),
    ),
    edges=(
        Edge("train", "on_train_epoch_start", guard="epochs_remaining"),
        Edge("train", "on_train_end", "extension", reason="no epoch to run"),
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
        Guard("step_due", "`accumulate` micro-batches have been back-propagated",
              predicate=lambda t: t.micro % t.accumulate == 0),
    ),
    feeds=(Feed("micro", guard="has_next_batch", loader="train_loader", counts_steps=True),),
    graph_name="Accumulate",
), target="on_train_end")


class AccumulatingTrainer(LifecycleTrainer):
    lifecycle = ACCUMULATE

    def define_train_attr(self):
        self._num_epochs = (self.config or {}).get("epochs", 2)
        self.accumulate = (self.config or {}).get("accumulate", 4)

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

    def on_train_epoch_start(self):
        self.micro = 0
        self.optimizer.zero_grad()

    def micro_batch(self, item):
        x, y = item
        loss = torch.nn.functional.mse_loss(self.model(x), y, reduction="sum") / (8 * self.accumulate)
        loss.backward()
        self.micro += 1
        self.log("loss", loss * self.accumulate)

    def optimizer_step(self):
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.steps += 1


def build(run_dir=None, epochs=3, accumulate=4):
    """The example's trainer as the demo sets one up: early stopping, CSV rows, checkpoints."""
    trainer = AccumulatingTrainer({"epochs": epochs, "accumulate": accumulate}, run_dir=run_dir,
                                  checkpoint_every=4 if run_dir else None, checkpoint_epochs=run_dir is not None)
    trainer.add_callback(EarlyStopping("loss", patience=2))
    trainer.add_callback(CSVLogger())
    return trainer


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--resume"]
    run_dir = args[0] if args else None
    trainer = build(run_dir)
    trainer.run(resume_from=run_dir if "--resume" in sys.argv and run_dir else None)
    print(f"optimizer steps: {trainer.steps}, weights: {trainer.model.weight.data.tolist()}")
