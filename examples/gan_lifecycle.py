"""A GAN's step order as a custom lifecycle: per batch, the discriminator's
zero_grad/loss/backward/step, then the generator's — each a state you can see in the
trace and the diagram, and attach callbacks to.

The roles make every runtime feature work on it, as on the built-in lifecycles: the
epoch opens at ``on_train_epoch_start`` and closes at ``on_train_epoch_end`` (metrics per
epoch, early stopping, CSV rows, epoch checkpoints), the ``real`` feed is taken by
``on_start_training_batch`` and counts steps (periodic checkpoints, exact resume), and
the states with no item in flight are resumable.

Run: ``python examples/gan_lifecycle.py [RUN_DIR]`` (Ctrl-C it, then run it again with
``--resume``); draw it: ``statetrainer diagram gan --trainer examples/gan_lifecycle.py:GanLoop``.
The GAN learns a 1-D Gaussian (mean 3) from noise; tiny, CPU, a few seconds.
"""

import sys

import torch
import torch.nn as nn

from statetrainer import (
    CSVLogger,
    EarlyStopping,
    Edge,
    Feed,
    Lifecycle,
    LifecycleTrainer,
    State,
    with_stop_edges,
)

_STEPS = [
    "discriminator_zero_grad", "discriminator_loss", "discriminator_backward", "discriminator_optim_step",
    "generator_zero_grad", "generator_loss", "generator_backward", "generator_optim_step",
]

GAN = with_stop_edges(Lifecycle(
    name="gan",
    states=(
        State("train", 1, compound=True),
        State("on_train_epoch_start", 2, roles={"epoch_start", "resumable"}, opens="real"),
        State("on_start_training_batch", 3, takes="real", item="real"),
        *(State(s, 4) for s in _STEPS),
        State("on_end_training_batch", 3, roles={"batch_end", "resumable"}),
        State("on_train_epoch_end", 2, roles={"epoch_end", "resumable"}, closes="real"),
        State("on_train_end", 1, roles={"resumable"}),
    ),
    edges=(
        Edge("train", "on_train_epoch_start", guard="epochs_remaining"),
        Edge("train", "on_train_end", "extension", reason="no epoch to run"),
        Edge("on_train_epoch_start", "on_start_training_batch", "descend", guard="has_next_batch"),
        Edge("on_train_epoch_start", "on_train_epoch_end", "extension", reason="no data this epoch"),
        Edge("on_start_training_batch", _STEPS[0]),
        *(Edge(a, b) for a, b in zip(_STEPS, _STEPS[1:])),
        Edge(_STEPS[-1], "on_end_training_batch"),
        Edge("on_end_training_batch", "on_start_training_batch", "loop",
             guard="has_next_batch", label="train_epoch_iter"),
        Edge("on_end_training_batch", "on_train_epoch_end", "return"),
        Edge("on_train_epoch_end", "on_train_epoch_start", "loop", guard="epochs_remaining", label="_num_epochs"),
        Edge("on_train_epoch_end", "on_train_end", "return"),
    ),
    initial="train",
    finals=("on_train_end",),
    # the runtime answers has_next_batch (the feed's lookahead) and epochs_remaining (the epoch counter)
    feeds=(Feed("real", guard="has_next_batch", loader="train_loader", counts_steps=True),),
    graph_name="Ganloop",
), target="on_train_end")


class GanLoop(LifecycleTrainer):
    lifecycle = GAN

    def define_train_attr(self):
        self._num_epochs = (self.config or {}).get("epochs", 30)

    def get_trainloader(self):
        g = torch.Generator().manual_seed(0)
        real = 3.0 + 0.5 * torch.randn(512, 1, generator=g)
        self.train_loader = [real[i : i + 64] for i in range(0, 512, 64)]

    def build_model(self):
        torch.manual_seed(0)
        self.netG = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
        self.netD = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=1e-2)
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=1e-2)
        self.bce = nn.BCEWithLogitsLoss()

    def on_start_training_batch(self, real):
        self.real = real
        self.fake = self.netG(torch.randn(len(real), 1))

    def discriminator_zero_grad(self):
        self.optimizerD.zero_grad()

    def discriminator_loss(self):
        ones, zeros = torch.ones(len(self.real), 1), torch.zeros(len(self.real), 1)
        self.d_loss = self.bce(self.netD(self.real), ones) + self.bce(self.netD(self.fake.detach()), zeros)
        self.log("d_loss", self.d_loss)

    def discriminator_backward(self):
        self.d_loss.backward()

    def discriminator_optim_step(self):
        self.optimizerD.step()

    def generator_zero_grad(self):
        self.optimizerG.zero_grad()

    def generator_loss(self):
        self.g_loss = self.bce(self.netD(self.fake), torch.ones(len(self.real), 1))
        self.log("g_loss", self.g_loss)

    def generator_backward(self):
        self.g_loss.backward()

    def generator_optim_step(self):
        self.optimizerG.step()

    def generated_mean(self):
        with torch.no_grad():
            return float(self.netG(torch.randn(2000, 1)).mean())


def build(run_dir=None, epochs=30, patience=10):
    """The example's trainer as the demo sets one up: early stopping, CSV rows, checkpoints."""
    trainer = GanLoop({"epochs": epochs}, run_dir=run_dir, checkpoint_every=16 if run_dir else None,
                      checkpoint_epochs=run_dir is not None)
    trainer.add_callback(EarlyStopping("g_loss", patience=patience, mode="min"))
    trainer.add_callback(CSVLogger())
    return trainer


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--resume"]
    run_dir = args[0] if args else None
    trainer = build(run_dir)
    trainer.run(resume_from=run_dir if "--resume" in sys.argv and run_dir else None)
    print(f"generated mean: {trainer.generated_mean():.2f} (target 3.0), status {trainer.status}, "
          f"epochs run: {len(trainer.metrics_history)}")
