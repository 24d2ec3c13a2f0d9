"""What a run directory costs: ConvnetTrainer with ``run_dir=`` against without, per batch and per epoch.

    python benchmarks/run_dir.py [--rounds 9] [--smoke]

No-op hooks (``trainers.NoOp``: the trainer alone), 100 and 1,000 batches per epoch, each
trainer run for E1 and 2 E1 epochs; the cost per epoch is the slope between the two, so what
a run costs once (the first and last status and trace writes) is reported apart. E1 is long
enough for the bounded trace to fill (see ``EPOCHS``): costs that grow with the trace until it
is full land in the *once per run* column, which is therefore not only start-up. The run
directory's cost per batch at B batches per epoch is ``(with - without) / B``; from the two
values of B it splits into a part per batch and a part per epoch.

Instructions (callgrind) are counted with ``status_interval=1e6`` (s): the periodic ``status.json``
writes (about two a second by default) depend on the clock, so their number under valgrind's
slowdown means nothing. CPU time is measured both ways. Instructions are user space only:
the kernel's side of the file writes (``write``, ``rename``, ``fsync``) shows in CPU time
(``process_time`` includes system time), not in the counts.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import harness
from harness import Counts, Samples, Table, fmt
from workloads import Prepare, Timed

#: Batches per epoch, and the epochs of the shorter run at each (CPU, callgrind, smoke). The trace
#: (10,000 entries, about 3 per batch) is full after those epochs, so per-epoch costs that grow with
#: the trace's length (a status snapshot walks it) are measured at their steady state.
EPOCHS = {100: (40, 40, 1), 1000: (4, 4, 1)}
SMOKE_BATCHES = {100: 10, 1000: 20}

#: A status interval no benchmark run reaches: no clock-driven status writes. (Not ``math.inf``:
#: a status thread that waits on it fails with ``OverflowError`` in ``Event.wait``.)
NEVER = 1e6

_FOLDERS = tempfile.mkdtemp(prefix="statetrainer-bench-rundir-")
atexit.register(shutil.rmtree, _FOLDERS, ignore_errors=True)


def run(batches: int, epochs: int, run_dir: bool = False, periodic: bool = True) -> Timed:
    """A no-op trainer for ``epochs`` epochs of ``batches``, with a fresh run directory or none."""
    import trainers

    options: dict[str, Any] = {}
    if run_dir:
        options["run_dir"] = tempfile.mkdtemp(dir=_FOLDERS)
        if not periodic:
            options["status_interval"] = NEVER
    return trainers.statetrainer_noop(batches, epochs, **options)


VARIANTS = {
    "none": {},
    "dir": {"run_dir": True, "periodic": False},
    "dir-periodic": {"run_dir": True, "periodic": True},
}
LABELS = {
    "none": "no run directory",
    "dir": "run directory, no periodic status writes",
    "dir-periodic": "run directory, status every 0.5 s (default)",
}


def cases(batches: Mapping[int, int] | None = None) -> dict[str, Prepare]:
    """``B/variant`` -> a Prepare taking the number of epochs (B = 100 or 1000 batches per epoch)."""
    sizes = batches or {b: b for b in EPOCHS}
    out: dict[str, Prepare] = {}
    for b, actual in sizes.items():
        for variant, options in VARIANTS.items():
            out[f"{b}/{variant}"] = _prepare(actual, options)
    return out


def _prepare(batches: int, options: Mapping[str, bool]) -> Prepare:
    def prepare(epochs: int) -> Timed:
        return run(batches, epochs, **options)

    return prepare


def _split(cost: Mapping[int, float]) -> tuple[float, float]:
    """From a cost per batch at two epoch lengths (batches -> cost): its (per batch, per epoch) parts."""
    (b1, a1), (b2, a2) = sorted(cost.items())
    per_epoch = (a1 - a2) / (1 / b1 - 1 / b2)
    return a2 - per_epoch / b2, per_epoch


def cost_table(title: str, unit: str, digits: int, per_epoch: Mapping[str, float],
               fixed: Mapping[str, float], batches: Mapping[int, int], variants: list[str]) -> Table:
    """One measure's table: per batch without and with a run directory, the difference, the split."""
    rows, notes = [], []
    if len(batches) == 2:
        part_batch, part_epoch = _split({actual: per_epoch[f"{b}/none"] / actual for b, actual in batches.items()})
        notes.append(f"without a run directory, the no-op trainer itself: {fmt(part_batch, digits)} {unit} per batch "
                     f"plus {fmt(part_epoch, digits)} {unit} per epoch")
    for variant in variants:
        cost = {}
        for b, actual in batches.items():
            none, with_dir = per_epoch[f"{b}/none"] / actual, per_epoch[f"{b}/{variant}"] / actual
            cost[actual] = with_dir - none
            once = fixed[f"{b}/{variant}"] - fixed[f"{b}/none"]
            rows.append([LABELS[variant], f"{actual:,}", fmt(none, digits), fmt(with_dir, digits),
                         fmt(cost[actual], digits), fmt(cost[actual] * actual, digits), fmt(once, digits)])
        if len(cost) == 2:
            part_batch, part_epoch = _split(cost)
            notes.append(f"{LABELS[variant]}: {fmt(part_batch, digits)} {unit} per batch plus "
                         f"{fmt(part_epoch, digits)} {unit} per epoch")
    return Table(title, ["", "batches per epoch", f"{unit} per batch, without", "with", "run directory, per batch",
                         "run directory, per epoch", "run directory, once per run"], rows, notes)


def main() -> None:
    parser = harness.base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=9, help="CPU-time rounds")
    args = parser.parse_args()
    batches = SMOKE_BATCHES if args.smoke else {b: b for b in EPOCHS}
    tables, notes = [], []
    if args.only != "cpu":
        skipped = harness.no_instruction_counts(args.smoke)
        if skipped:
            notes.append(skipped)
        else:
            names = [f"{b}/{v}" for b in batches for v in ("none", "dir")]
            sizes = {f"{b}/{v}": (EPOCHS[b][1], 2 * EPOCHS[b][1]) for b in batches for v in ("none", "dir")}
            counts: Counts = harness.count_instructions(__file__, [[n] for n in names], sizes, args.jobs)
            table = cost_table("Run directory: instructions", "instructions", 0,
                               {n: counts.per_unit(n) for n in names}, {n: counts.fixed(n) for n in names},
                               batches, ["dir"])
            table.notes.append("User-space instructions only: the kernel's side of the file writes is in the CPU "
                               "table, not here. Counted with `status_interval=1e6` (no clock-driven writes).")
            tables.append(table)
    if args.only != "instructions":
        rounds = 1 if args.smoke else args.rounds
        index = 2 if args.smoke else 0
        all_cases = cases(batches)
        sizes = {n: (EPOCHS[int(n.split("/")[0])][index], 2 * EPOCHS[int(n.split("/")[0])][index])
                 for n in all_cases}
        samples: dict[str, Samples] = harness.cpu_samples(all_cases, sizes, rounds)
        per_epoch = {n: s.median for n, s in samples.items()}
        # the difference to "none" is taken within each round (paired), then the median
        for n in samples:
            b = n.split("/")[0]
            per_epoch[n] = per_epoch[f"{b}/none"] + harness.paired(samples, n, f"{b}/none")
        fixed = {n: sorted(s.fixed)[len(s.fixed) // 2] for n, s in samples.items()}
        table = cost_table("Run directory: CPU µs", "µs", 2, per_epoch, fixed, batches, ["dir", "dir-periodic"])
        table.notes.append("Differences are paired per round (median of the per-round differences); interquartile "
                           "ranges of the per-epoch slopes: " + ", ".join(
                               f"{n} {s.spread()} µs" for n, s in samples.items()))
        tables.append(table)
    if tables:
        tables[0].notes = notes + tables[0].notes
    harness.emit(tables, args.json)


if __name__ == "__main__":
    main()
