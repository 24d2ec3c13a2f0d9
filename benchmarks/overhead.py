"""Wall clock against DESIGN §5's budgets: driver overhead, per-batch ratio to a hand loop, import time.

    python benchmarks/overhead.py [--rounds 15] [--batches 2000] [--device cpu|cuda] [--smoke]

Not a test: it prints numbers for BENCHMARKS.md. Every comparison is paired and
interleaved (A then B, then B then A, ...) and reported as the median ratio or difference.
Only the timed call is timed (``time.perf_counter``): set-up, data and model building are
outside it (``trainers.py``). For CPU time and instruction counts, see ``frameworks.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import harness
from harness import Table


def _wall(timed: Callable[[], object]) -> float:
    """Seconds of one timed call, the device synchronised before and after."""
    import trainers

    trainers.sync()
    start = time.perf_counter()
    timed()
    trainers.sync()
    return time.perf_counter() - start


def transitions_per_run(batches: int) -> int:
    """Transitions of one no-op run: its trace's length, in a run (not timed) whose trace keeps them all."""
    import trainers

    trainer = trainers.NoOp(list(range(batches)), trace_size=10 * batches + 100)
    trainer.train()
    return len(trainer.trace)


def transition_cost(batches: int, rounds: int) -> float:
    """Median µs per transition of a whole train run with no-op hooks."""
    import trainers

    transitions = transitions_per_run(batches)
    return statistics.median(_wall(trainers.statetrainer_noop(batches)) / transitions * 1e6 for _ in range(rounds))


def paired_ratio(a: Callable[[], Callable[[], object]], b: Callable[[], Callable[[], object]],
                 rounds: int) -> tuple[float, float, float]:
    """Median time(b) / time(a) over interleaved rounds, and the median seconds of each."""
    ratios, ta, tb = [], [], []
    for r in range(rounds):
        times = {}
        for which in ("a", "b") if r % 2 == 0 else ("b", "a"):
            times[which] = _wall((a if which == "a" else b)())
        ratios.append(times["b"] / times["a"])
        ta.append(times["a"])
        tb.append(times["b"])
    return statistics.median(ratios), statistics.median(ta), statistics.median(tb)


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


def _pct(ratio: float) -> str:
    return f"{ratio:.4f} ({(ratio - 1) * 100:+.2f}%)"


def main() -> None:
    parser = harness.base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--import-rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the per-batch comparison runs")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.batches, args.import_rounds = 1, 20, 0
    import torch
    import trainers

    trainers.DEVICE = torch.device(args.device)
    n, rounds = args.batches, args.rounds
    rows = [["driver, µs per transition (no-op hooks, trace on)", "≤ 0.5", f"{transition_cost(n * 10, rounds):.3f}"]]
    ratio, hand, ours = paired_ratio(lambda: trainers.raw_linear(n), lambda: trainers.statetrainer_linear(n), rounds)
    rows.append(["ConvnetTrainer / hand loop, per batch, `Linear(32,1)`, batch 32", "≤ 1.03", _pct(ratio)])
    style, _, _ = paired_ratio(lambda: trainers.raw_linear(n), lambda: trainers.method_linear(n), rounds)
    own, _, _ = paired_ratio(lambda: trainers.method_linear(n), lambda: trainers.statetrainer_linear(n), rounds)
    rows.append(["  split: hook methods from a plain loop / hand loop (the hook style)", "—", _pct(style)])
    rows.append(["  split: ConvnetTrainer / hook methods from a plain loop (statetrainer's own)", "—", _pct(own)])
    with tempfile.TemporaryDirectory() as folder:
        def with_dir() -> Callable[[], object]:
            return trainers.statetrainer_linear(n, run_dir=tempfile.mkdtemp(dir=folder))

        ratio_dir, _, ours_dir = paired_ratio(lambda: trainers.raw_linear(n), with_dir, rounds)
    rows.append(["same with a run directory (status, trace, events)", "—", _pct(ratio_dir)])
    if args.import_rounds:
        rows.append(["`import statetrainer` over `import torch`", "≤ 0.15 s",
                     f"{import_cost(args.import_rounds) * 1000:.0f} ms"])
    notes = [f"torch {torch.__version__}, 1 thread, device {trainers.DEVICE}, {rounds} interleaved rounds of "
             f"{n} batches; medians.",
             f"Per batch: hand loop {hand / n * 1e6:.1f} µs, ConvnetTrainer {ours / n * 1e6:.1f} µs, "
             f"with a run directory {ours_dir / n * 1e6:.1f} µs."]
    if not args.import_rounds:
        notes.append("import time left out (--import-rounds 0)")
    harness.emit([Table("Wall clock against DESIGN §5", ["measure", "budget", "median"], rows, notes)], args.json)


if __name__ == "__main__":
    main()
