"""What farabio's ``super().train_batch(args)`` idiom costs against the plain trainer, per batch.

    python benchmarks/compound.py [--rounds 11] [--batches 1000] [--cg-batches 200] [--smoke]

The Linear(32, 1) workload (``trainers.Linear``: batch 32, pre-batched, one thread) run as the
plain ConvnetTrainer and as a subclass whose ``train_batch(args)`` override calls
``super().train_batch(args)`` — farabio's SRGAN-style override that still wants the batch's
states run by the machine: each batch is then a nested pass through ``train_batch``'s body
(its built program is cached, so nothing is rebuilt per batch). Issue 11's budget: within
10% of the plain trainer per batch. Instructions (callgrind, inside the timed call only) and
CPU time (paired, interleaved), per batch as the slope between N and 2N batches.
"""

from __future__ import annotations

from typing import Any

import harness
from harness import Counts, Samples, Table, fmt
from workloads import Prepare, Timed

CASES = {
    "plain": "ConvnetTrainer (the machine runs train_batch's body)",
    "super": "train_batch override calling super().train_batch(args)",
    "raw": "raw loop (hand-written)",
}


def plain(n: int) -> Timed:
    """The Linear workload through the plain ConvnetTrainer."""
    import trainers

    return trainers.statetrainer_linear(n)


def wrapped(n: int) -> Timed:
    """The same trainer with a ``train_batch`` override that calls ``super().train_batch(args)``."""
    import trainers

    class Wrapped(trainers.Linear):
        def train_batch(self, args: Any) -> None:
            super().train_batch(args)

    return Wrapped(trainers.linear_data(n)).train


def raw(n: int) -> Timed:
    """The hand-written loop (for scale)."""
    import trainers

    return trainers.raw_linear(n)


def cases() -> dict[str, Prepare]:
    """Every case by name."""
    return {"plain": plain, "super": wrapped, "raw": raw}


def table(counts: Counts | None, cpu: dict[str, Samples] | None) -> Table:
    """Per batch: instructions and CPU µs of each case, and the override against the plain trainer."""
    rows = []
    for name, label in CASES.items():
        instr = counts.per_unit(name) if counts else None
        us = cpu[name].median if cpu else None
        rows.append([label, fmt(instr), fmt(us, 2)])
    notes = []
    if counts:
        extra = counts.per_unit("super") - counts.per_unit("plain")
        notes.append(f"super().train_batch(args) over the plain trainer: {extra:+,.0f} instructions per batch, "
                     f"{counts.per_unit('super') / counts.per_unit('plain'):.4f}x (budget: within 1.10x)")
    if cpu:
        notes.append(f"by CPU time, paired: {harness.paired(cpu, 'super', 'plain'):+.2f} µs per batch "
                     f"(spread {harness.paired_spread(cpu, 'super', 'plain')})")
    return Table("super().train_batch(args): per batch", ["loop", "instructions", "CPU µs"], rows, notes)


def main() -> None:
    parser = harness.base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=11, help="CPU-time rounds")
    parser.add_argument("--batches", type=int, default=1000, help="CPU time: N (runs at N and 2N batches)")
    parser.add_argument("--cg-batches", type=int, default=200, help="callgrind: N (counts at N and 2N batches)")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.batches = 1, 20
    all_cases = cases()
    notes: list[str] = []
    counts = cpu = None
    if args.only != "cpu":
        skipped = harness.no_instruction_counts(args.smoke)
        if skipped:
            notes.append(skipped)
        else:
            counts = harness.count_instructions(__file__, [list(all_cases)],
                                                {n: (args.cg_batches, 2 * args.cg_batches) for n in all_cases},
                                                args.jobs)
    if args.only != "instructions":
        cpu = harness.cpu_samples(all_cases, {n: (args.batches, 2 * args.batches) for n in all_cases}, args.rounds)
    result = table(counts, cpu)
    result.notes = notes + result.notes
    harness.emit([result], args.json)


if __name__ == "__main__":
    main()
