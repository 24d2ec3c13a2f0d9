"""A GAN trainer written against farabio's GanTrainer API (SRGAN's shape, tiny and synthetic).

The only line that differs from a farabio trainer is the import. Run as a script it trains
with epoch and periodic checkpoints in RUN_DIR (``--resume`` continues), and saves the
generator's weights to ``RUN_DIR/netG.pt`` — the SIGKILL test runs it in subprocesses.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from statetrainer import GanTrainer  # farabio: from farabio.core.gantrainer import GanTrainer


class PointGanTrainer(GanTrainer):
    """Learns a ring of 2-D points from noise; D and G each one step per batch, as SRGAN."""

    def define_data_attr(self) -> None:
        self._batch_size_train = self.config.get("batch_size", 16)

    def define_train_attr(self) -> None:
        self._num_epochs = self.config.get("num_epochs", 3)
        self._start_epoch = 1
        self._has_eval = self.config.get("has_eval", True)
        self.results: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
        self.optim = torch.optim.Adam

    def define_misc_attr(self) -> None:
        self._use_tqdm_iter = self.config.get("tqdm_iter", False)

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(3)
        angle = torch.rand(96, generator=g) * 6.283
        real = torch.stack([angle.cos(), angle.sin()], 1) * 2.0
        noise = torch.randn(96, 4, generator=g)
        self.train_loader = DataLoader(TensorDataset(noise, real), batch_size=self._batch_size_train, shuffle=True,
                                       generator=torch.Generator().manual_seed(5))
        self.valid_loader = DataLoader(TensorDataset(noise[:32], real[:32]), batch_size=16)

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.netG = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
        self.netD = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
        self.optimizerG = self.optim(self.netG.parameters(), lr=1e-2)
        self.optimizerD = self.optim(self.netD.parameters(), lr=1e-2)
        self.bce = nn.BCEWithLogitsLoss()

    def start_logger(self) -> None:
        self.results = {"d_loss": [], "g_loss": []}

    def on_train_epoch_start(self) -> None:
        if self._use_tqdm_iter:
            from tqdm import tqdm

            self.train_epoch_iter = tqdm(self.train_loader, disable=True)
        self.running = {"d_loss": 0.0, "g_loss": 0.0, "batches": 0}
        self.netG.train()
        self.netD.train()

    def on_start_training_batch(self, args: Any) -> None:
        self.z, self.real_img = args
        self.running["batches"] += 1

    def discriminator_zero_grad(self) -> None:
        self.netD.zero_grad()

    def discriminator_loss(self) -> None:
        fake = self.netG(self.z)
        ones, zeros = torch.ones(len(self.z), 1), torch.zeros(len(self.z), 1)
        self._discriminator_loss = self.bce(self.netD(self.real_img), ones) + self.bce(self.netD(fake.detach()), zeros)

    def discriminator_backward(self) -> None:
        self._discriminator_loss.backward()

    def discriminator_optim_step(self) -> None:
        self.optimizerD.step()

    def generator_zero_grad(self) -> None:
        self.netG.zero_grad()

    def generator_loss(self) -> None:
        self._generator_loss = self.bce(self.netD(self.netG(self.z)), torch.ones(len(self.z), 1))

    def generator_backward(self) -> None:
        self._generator_loss.backward()

    def generator_optim_step(self) -> None:
        self.optimizerG.step()

    def on_end_training_batch(self) -> None:
        self.running["d_loss"] += self._discriminator_loss.item()
        self.running["g_loss"] += self._generator_loss.item()

    def on_train_epoch_end(self) -> None:
        for key in ("d_loss", "g_loss"):
            self.results[key].append(self.running[key] / max(1, self.running["batches"]))

    def on_evaluate_epoch_start(self) -> None:
        self.netG.eval()
        self.valing = {"mse": 0.0, "batches": 0}

    def on_evaluate_batch_start(self) -> None:
        self.valing["batches"] += 1

    def evaluate_batch(self, args: Any) -> None:
        z, real = args
        self.valing["mse"] += float(((self.netG(z).norm(dim=1) - real.norm(dim=1)) ** 2).mean())

    def on_epoch_end(self) -> None:
        self.last_epoch_seen = self.epoch

    def load_model(self) -> None:
        self.loaded = True


def main(argv: list[str]) -> int:
    run_dir = argv[0]
    trainer = PointGanTrainer({"num_epochs": 4}, run_dir=run_dir, checkpoint_every=2, checkpoint_epochs=True)
    trainer.train(resume_from=run_dir if "--resume" in argv else None)
    torch.save(trainer.netG.state_dict(), f"{run_dir}/netG.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
