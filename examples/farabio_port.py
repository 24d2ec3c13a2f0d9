"""A trainer written the way farabio's users wrote them; only the import changed.

    - from farabio.core.convnettrainer import ConvnetTrainer
    + from statetrainer import ConvnetTrainer

Run it: ``python examples/farabio_port.py``. It trains a tiny convnet on synthetic 8x8
images (stripes of ten orientations/positions, made on the fly, nothing downloaded),
keeps the best model with ``save_model``, stops early with ``stop_train`` and tests it.
"""

import os
import tempfile

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from statetrainer import ConvnetTrainer


def make_images(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    for i, label in enumerate(labels.tolist()):
        row = label % 8
        if label < 8:
            images[i, 0, row, :] += 2.0
        else:
            images[i, 0, :, 2 + 3 * (label - 8)] += 2.0
    return images, labels


class StripesTrainer(ConvnetTrainer):
    def define_data_attr(self):
        self._batch_size = self.config["batch_size"]

    def define_train_attr(self):
        self._num_epochs = self.config["epochs"]
        self._lr = self.config["lr"]
        self._patience = self.config["patience"]
        self._model_path = self.config["model_path"]

    def define_log_attr(self):
        self.history = []

    def get_trainloader(self):
        x, y = make_images(512, seed=1)
        vx, vy = make_images(128, seed=2)
        torch.manual_seed(0)
        self.train_loader = DataLoader(TensorDataset(x, y), batch_size=self._batch_size, shuffle=True)
        self.valid_loader = DataLoader(TensorDataset(vx, vy), batch_size=64)

    def get_testloader(self):
        tx, ty = make_images(256, seed=3)
        self.test_loader = DataLoader(TensorDataset(tx, ty), batch_size=64)

    def build_model(self):
        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
        )
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self._lr, momentum=0.9)

    def on_train_start(self):
        self.best_loss = float("inf")
        self.bad_epochs = 0

    def on_train_epoch_start(self):
        self.model.train()
        self.epoch_loss = 0.0
        self.train_epoch_iter = enumerate(self.train_loader)

    def on_start_training_batch(self, args):
        self.batch_idx = args[0]
        self.inputs = args[-1][0]
        self.targets = args[-1][-1]

    def training_step(self):
        self.optimizer_zero_grad()
        self.outputs = self.model(self.inputs)
        self.loss = self.criterion(self.outputs, self.targets)
        self.loss_backward()
        self.optimizer_step()

    def on_end_training_batch(self):
        self.epoch_loss += self.loss.item()

    def optimizer_zero_grad(self):
        self.optimizer.zero_grad()

    def loss_backward(self):
        self.loss.backward()

    def optimizer_step(self):
        self.optimizer.step()

    def on_evaluate_epoch_start(self):
        self.model.eval()
        self.valid_loss = 0.0
        self.valid_epoch_iter = self.valid_loader

    def on_evaluate_batch_start(self, args):
        self.vinputs, self.vtargets = args

    def evaluate_batch(self, args):
        self.valid_loss += self.criterion(self.model(self.vinputs), self.vtargets).item()

    def on_evaluate_epoch_end(self):
        self.history.append((self._epoch, self.epoch_loss, self.valid_loss))
        if self.valid_loss < self.best_loss:
            self.best_loss, self.bad_epochs = self.valid_loss, 0
            self.save_model()
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self._patience:
                self.stop_train()

    def save_model(self):
        torch.save(self.model.state_dict(), self._model_path)

    def load_model(self):
        self.model.load_state_dict(torch.load(self._model_path))

    def on_test_start(self):
        self.model.eval()
        self.correct = 0
        self.total = 0

    def test_step(self, args):
        inputs, targets = args
        with torch.no_grad():
            self.correct += (self.model(inputs).argmax(1) == targets).sum().item()
        self.total += len(targets)

    def on_test_end(self):
        self.accuracy = self.correct / self.total


def main(epochs=8, patience=2, folder=None):
    folder = folder or tempfile.mkdtemp()
    config = {"batch_size": 32, "epochs": epochs, "lr": 0.05, "patience": patience,
              "model_path": os.path.join(folder, "best.pt")}
    trainer = StripesTrainer(config)
    trainer.train()
    trainer.test()
    print(f"epochs run: {len(trainer.history)}, test accuracy: {trainer.accuracy:.3f}")
    return trainer


if __name__ == "__main__":
    main()
