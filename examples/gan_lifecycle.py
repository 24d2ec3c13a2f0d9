"""farabio's GAN lifecycle as a custom machine: per batch, the discriminator's
zero_grad/loss/backward/step, then the generator's. Run: ``python examples/gan_lifecycle.py``.

The GAN learns a 1-D Gaussian (mean 3) from noise; tiny, CPU, a few seconds.
"""

import torch
import torch.nn as nn

from statetrainer import Edge, Guard, ItemLoop, Lifecycle, LifecycleTrainer, State, with_stop_edges

_STEPS = [
    "discriminator_zero_grad", "discriminator_loss", "discriminator_backward", "discriminator_optim_step",
    "generator_zero_grad", "generator_loss", "generator_backward", "generator_optim_step",
]

GAN = with_stop_edges(Lifecycle(
    name="gan",
    states=(
        State("train", 1, compound=True),
        State("on_train_epoch_start", 2),
        State("on_start_training_batch", 3),
        *(State(s, 4) for s in _STEPS),
        State("on_end_training_batch", 3),
        State("on_train_epoch_end", 2),
        State("on_train_end", 1),
    ),
    edges=(
        Edge("train", "on_train_epoch_start"),
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
    guards=(
        Guard("has_next_batch", "another batch of real samples is waiting"),
        Guard("epochs_remaining", "_epoch < _num_epochs"),
    ),
    graph_name="Ganloop",
), target="on_train_end")


class GanTrainer(LifecycleTrainer):
    lifecycle = GAN

    def define_train_attr(self):
        self._num_epochs = (self.config or {}).get("epochs", 30)
        self._epoch = 0

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
        self.batches = ItemLoop()

    def has_next_batch(self):
        return self.batches.has_next()

    def epochs_remaining(self):
        return self._epoch < self._num_epochs

    def on_train_epoch_start(self):
        self._epoch += 1
        self.batches.start(self.train_loader)

    def on_start_training_batch(self):
        self.real = self.batches.take()
        self.fake = self.netG(torch.randn(len(self.real), 1))

    def discriminator_zero_grad(self):
        self.optimizerD.zero_grad()

    def discriminator_loss(self):
        ones, zeros = torch.ones(len(self.real), 1), torch.zeros(len(self.real), 1)
        self.d_loss = self.bce(self.netD(self.real), ones) + self.bce(self.netD(self.fake.detach()), zeros)

    def discriminator_backward(self):
        self.d_loss.backward()

    def discriminator_optim_step(self):
        self.optimizerD.step()

    def generator_zero_grad(self):
        self.optimizerG.zero_grad()

    def generator_loss(self):
        self.g_loss = self.bce(self.netD(self.fake), torch.ones(len(self.real), 1))

    def generator_backward(self):
        self.g_loss.backward()

    def generator_optim_step(self):
        self.optimizerG.step()

    def generated_mean(self):
        with torch.no_grad():
            return float(self.netG(torch.randn(2000, 1)).mean())


if __name__ == "__main__":
    trainer = GanTrainer({"epochs": 30})
    trainer.run()
    print(f"generated mean: {trainer.generated_mean():.2f} (target 3.0)")
