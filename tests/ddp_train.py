"""Launched by torchrun from tests/test_parallel.py: a tiny regression trained with DDP (gloo).

usage: torchrun --standalone --nproc_per_node 2 tests/ddp_train.py OUT_DIR
       {ok,fail,fail_dir,stop,stop_epoch,skip,single}

``stop_epoch`` and ``skip``: one rank alone calls ``stop_epoch()`` / ``skip_batch()``; ``fail_dir``:
rank 1 fails in a run with a run directory (``OUT_DIR/run``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from statetrainer import ConvnetTrainer, parallel


class Regression(ConvnetTrainer):
    def __init__(self, scenario: str, batch_size: int, run_dir: Path | None = None) -> None:
        self.scenario, self.batch_size = scenario, batch_size
        super().__init__({}, run_dir=run_dir)

    def define_train_attr(self) -> None:
        self._num_epochs = 3
        self._has_eval = False

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.train_loader = DataLoader(TensorDataset(x, y), batch_size=self.batch_size, shuffle=False)

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)

    def build_parallel_model(self) -> None:
        super().build_parallel_model()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)

    def on_train_start(self) -> None:
        if not hasattr(self, "optimizer"):
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)

    def on_start_training_batch(self, args) -> None:
        self.x, self.y = args
        if self.scenario == "stop_epoch" and parallel.rank() == 0 and self._epoch == 2 and self.global_step == 6:
            self.stop_epoch()  # only rank 0 asks: the ranks agree after this state
        if self.scenario == "skip" and parallel.rank() == 1 and self.global_step in (2, 7):
            self.skip_batch()  # only rank 1 asks

    def training_step(self) -> None:
        if self.scenario in ("fail", "fail_dir") and parallel.rank() == 1 and self._epoch == 2:
            raise RuntimeError("injected failure")
        self.optimizer_zero_grad()
        self.loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()

    def on_end_training_batch(self) -> None:
        if self.scenario == "stop" and parallel.rank() == 0 and self._epoch == 2:
            self.stop()  # only rank 0 asks; the ranks agree at the epoch end


def main() -> None:
    out, scenario = Path(sys.argv[1]), sys.argv[2]
    single = scenario == "single"
    trainer = Regression(scenario, batch_size=16 if single else 8, run_dir=out / "run" if scenario == "fail_dir" else None)
    try:
        trainer.train()
    finally:
        rank = parallel.rank()
        info = {
            "rank": rank, "world": parallel.world_size(), "data_parallel": bool(trainer._data_parallel),
            "wrapped": type(trainer.model).__name__, "states": [e.state for e in trainer.trace],
            "status": trainer.status, "sampler": type(trainer.train_loader.sampler).__name__,
        }
        (out / f"rank{rank}{'-single' if single else ''}.json").write_text(json.dumps(info))
        from statetrainer.checkpoint import unwrap

        torch.save(unwrap(trainer.model).state_dict(), out / f"rank{rank}{'-single' if single else ''}.pt")
        parallel.destroy()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
