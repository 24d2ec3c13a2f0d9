"""Driver overhead, per-batch cost against a hand-written loop, and import time.

    python benchmarks/overhead.py [--rounds 15] [--batches 2000]

Not a test: it prints numbers for BENCHMARKS.md. Every comparison is paired and
interleaved (A then B, then B then A, ...) and reported as the median ratio or difference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from statetrainer import ConvnetTrainer


class NoOp(ConvnetTrainer):
    """Every hook is the base class's no-op; the loader yields plain ints."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        super().__init__({})

    def define_train_attr(self) -> None:
        self._num_epochs, self._has_eval = 1, False

    def get_trainloader(self) -> None:
        self.train_loader = range(self.batches)

    def on_train_epoch_start(self) -> None:
        pass


def transition_cost(batches: int, rounds: int) -> float:
    """Median µs per transition of a whole train run with no-op hooks."""
    samples = []
    for _ in range(rounds):
        t = NoOp(batches)
        start = time.perf_counter()
        t.train()
        elapsed = time.perf_counter() - start
        samples.append(elapsed / t.trace.total * 1e6)
    return statistics.median(samples)


DEVICE = torch.device("cpu")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _data(batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 32, generator=g).to(DEVICE), torch.randn(32, 1, generator=g).to(DEVICE))
            for _ in range(batches)]


class _Steps:
    """The model and the per-batch steps, written the farabio way (methods, ``self.`` attributes)."""

    model: torch.nn.Module

    def _build(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(32, 1).to(DEVICE)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.loss_fn = torch.nn.MSELoss()

    def on_start_training_batch(self, args: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.x, self.y = args

    def training_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss = self.loss_fn(self.model(self.x), self.y)
        self.loss.backward()
        self.optimizer.step()

    def on_end_training_batch(self) -> None:
        pass


class Linear(_Steps, ConvnetTrainer):
    """The steps through ConvnetTrainer's lifecycle (trace and live state on)."""

    def __init__(self, data: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.data = data
        super().__init__({})

    def define_train_attr(self) -> None:
        self._num_epochs, self._has_eval = 1, False

    def get_trainloader(self) -> None:
        self.train_loader = self.data

    def build_model(self) -> None:
        self._build()


def hand_loop(data: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 1).to(DEVICE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.MSELoss()
    model.train()
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()


class MethodStyle(_Steps):
    """The same steps and hooks called from a plain loop: no statetrainer."""

    def __init__(self) -> None:
        self._build()


def method_loop(data: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    trainer = MethodStyle()
    trainer.model.train()
    for item in data:
        trainer.on_start_training_batch(item)
        trainer.training_step()
        trainer.on_end_training_batch()


def style_ratio(batches: int, rounds: int) -> tuple[float, float]:
    """Median (ConvnetTrainer / method-style loop) and (method-style / hand loop) ratios."""
    data = _data(batches)
    ours, style = [], []
    for r in range(rounds):
        times = {}
        order = ("hand", "method", "trainer") if r % 2 == 0 else ("trainer", "method", "hand")
        for which in order:
            run = {"hand": lambda: hand_loop(data), "method": lambda: method_loop(data),
                   "trainer": lambda: Linear(data).train()}[which]
            _sync()
            start = time.perf_counter()
            run()
            _sync()
            times[which] = time.perf_counter() - start
        ours.append(times["trainer"] / times["method"])
        style.append(times["method"] / times["hand"])
    return statistics.median(ours), statistics.median(style)


def per_batch_ratio(batches: int, rounds: int, run_dir: str | None = None) -> tuple[float, float, float]:
    """Median (trainer / hand) time ratio, and the median µs per batch of each."""
    data = _data(batches)
    ratios, hand_us, ours_us = [], [], []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        times = [0.0, 0.0]
        for which in order:
            if which == 0:
                _sync()
                start = time.perf_counter()
                hand_loop(data)
                _sync()
                times[0] = time.perf_counter() - start
            else:
                trainer = Linear(data)
                if run_dir:
                    trainer.run_dir = run_dir
                _sync()
                start = time.perf_counter()
                trainer.train()
                _sync()
                times[1] = time.perf_counter() - start
        ratios.append(times[1] / times[0])
        hand_us.append(times[0] / batches * 1e6)
        ours_us.append(times[1] / batches * 1e6)
    return statistics.median(ratios), statistics.median(hand_us), statistics.median(ours_us)


def import_cost(rounds: int) -> float:
    """Median seconds ``import statetrainer`` (and ConvnetTrainer) adds to ``import torch``."""
    base = [sys.executable, "-c"]
    diffs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([*base, "import torch"], check=True)
        t1 = time.perf_counter()
        subprocess.run([*base, "import torch, statetrainer; statetrainer.ConvnetTrainer"], check=True)
        t2 = time.perf_counter()
        diffs.append((t2 - t1) - (t1 - t0))
    return statistics.median(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--import-rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the per-batch comparison runs")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} interleaved rounds of {args.batches} batches, "
          f"device {DEVICE}")
    print(f"driver: {transition_cost(args.batches * 10, args.rounds):.3f} us per transition (no-op hooks, trace on)")
    ratio, hand, ours = per_batch_ratio(args.batches, args.rounds)
    print(f"per batch, Linear(32,1), batch 32: hand loop {hand:.1f} us, ConvnetTrainer {ours:.1f} us, "
          f"median ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f}%)")
    ours, style = style_ratio(args.batches, args.rounds)
    print(f"  split: method-style loop / hand loop {style:.4f} ({(style - 1) * 100:+.2f}%, the hook style itself); "
          f"ConvnetTrainer / method-style loop {ours:.4f} ({(ours - 1) * 100:+.2f}%, statetrainer's own cost)")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        ratio_dir, _, ours_dir = per_batch_ratio(args.batches, args.rounds, run_dir=folder)
    print(f"  with a run directory (status.json, trace.jsonl): {ours_dir:.1f} us, ratio {ratio_dir:.4f} "
          f"({(ratio_dir - 1) * 100:+.2f}%)")
    print(f"import statetrainer over import torch: {import_cost(args.import_rounds) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
