"""statetrainer against a raw loop, PyTorch Ignite and Lightning: instructions and CPU time per batch.

    python benchmarks/frameworks.py [--rounds 11] [--batches 1000] [--cg-batches 200] [--smoke]

Two workloads (``trainers.py``): ``noop`` (plain ints, a step that does nothing: the
framework alone) and ``linear`` (``Linear(32, 1)``, batch 32, pre-batched, one thread). Each
runs as a hand-written loop (``raw``), the same hooks called from a plain loop (``method``,
farabio's style without statetrainer), ConvnetTrainer (trace and live state on, no run
directory), Ignite's ``Engine`` and Lightning's ``Trainer`` (each left out, with a note, when
not installed: ``pip install -r benchmarks/requirements.txt``).

Instructions: callgrind, counted inside the timed call only, at N and 2N batches
(``--cg-batches``). CPU time: in this process, all frameworks paired and interleaved, at N
and 2N batches (``--batches``), ``--rounds`` times. Per batch = the slope between the sizes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

import harness
from harness import Counts, Samples, Table, fmt
from workloads import Prepare, lazy, raw_noop

WORKLOADS = ("noop", "linear")
FRAMEWORKS = ("raw", "method", "statetrainer", "ignite", "lightning")
LABELS = {
    "raw": "raw loop (hand-written)",
    "method": "hook methods from a plain loop",
    "statetrainer": "statetrainer ConvnetTrainer",
    "ignite": "Ignite Engine",
    "lightning": "Lightning Trainer",
}
#: The optional frameworks and the package each needs.
OPTIONAL = {"ignite": "ignite", "lightning": "lightning"}
#: Functions that only set-up, imports or data generation run: none may cost anything when counted.
#: (torch's random fills, weight init, a module being loaded: reading its code, mapping a library; an
#: ``import`` statement of a module already loaded is not set-up and does run in timed calls).
SETUP_SYMBOLS = r"\brandn|\bnormal_|\buniform_|kaiming|PyMarshal_Read|_dl_map_object|\bdlopen"


def cases() -> dict[str, Prepare]:
    """Every (workload, framework) case, by ``workload/framework`` name."""
    return {
        "noop/raw": raw_noop,
        "noop/method": lazy("trainers", "method_noop"),
        "noop/statetrainer": lazy("trainers", "statetrainer_noop"),
        "noop/ignite": lazy("trainers", "ignite_noop"),
        "noop/lightning": lazy("lightning_cases", "lightning_noop"),
        "linear/raw": lazy("trainers", "raw_linear"),
        "linear/method": lazy("trainers", "method_linear"),
        "linear/statetrainer": lazy("trainers", "statetrainer_linear"),
        "linear/ignite": lazy("trainers", "ignite_linear"),
        "linear/lightning": lazy("lightning_cases", "lightning_linear"),
    }


def installed() -> tuple[list[str], list[str]]:
    """The frameworks that can run here, and a note for each left out."""
    frameworks, notes = [], []
    for name in FRAMEWORKS:
        package = OPTIONAL.get(name)
        if package is None or harness.optional(package):
            frameworks.append(name)
        else:
            notes.append(f"{LABELS[name]} left out: `{package}` is not installed "
                         f"(`pip install -r benchmarks/requirements.txt`)")
    return frameworks, notes


# ---------------------------------------------------------------------------- instructions


def measure_instructions(names: Sequence[str], n: int, jobs: int, keep: str) -> Counts:
    """Callgrind counts of ``names`` at n and 2n batches, one process per framework; dumps kept in ``keep``."""
    by_framework: dict[str, list[str]] = {}
    for name in names:
        by_framework.setdefault(name.split("/")[1], []).append(name)
    return harness.count_instructions(__file__, by_framework.values(), {name: (n, 2 * n) for name in names},
                                      jobs, keep=keep)


def instruction_table(workload: str, counts: Counts, frameworks: Sequence[str]) -> Table:
    """Instructions per batch of one workload, and over the raw loop."""
    raw = counts.per_unit(f"{workload}/raw")
    rows = []
    for fw in frameworks:
        name = f"{workload}/{fw}"
        if (name, counts.sizes.get(name, (0, 0))[0]) not in counts.net:
            continue
        per = counts.per_unit(name)
        rows.append([LABELS[fw], fmt(per), fmt(per - raw), fmt(counts.fixed(name))])
    return Table(f"{workload}: instructions per batch (callgrind)",
                 ["loop", "instructions per batch", "over the raw loop", "fixed per run"], rows)


def profile_table(counts: Counts, name: str) -> Table:
    """The functions a batch of ``name`` spends its instructions in (C level: the interpreter, torch)."""
    rows = [[f"`{fn[:90]}`", fmt(cost)] for fn, cost in harness.per_unit_profile(counts, name)]
    return Table(f"Where a batch's instructions go: {name}", ["function (self cost)", "instructions per batch"],
                 rows, [f"Each function's self cost at 2N batches minus at N, over N. Python code shows as the "
                        f"interpreter's functions (`PyObject_Vectorcall'2` is its evaluation loop, inlined there: "
                        f"the Python code itself); total per batch {counts.per_unit(name):,.0f}. For the Python "
                        f"side, profile the same run with cProfile."])


def check_table(counts: Counts) -> Table:
    """The evidence that only the timed call is counted: linear in the batch count, no set-up."""
    rows = []
    for name in sorted({name for name, _ in counts.net}):
        n1, n2 = counts.sizes[name]
        rows.append([name, fmt(counts.net[name, n1]), fmt(counts.net[name, n2]),
                     f"{counts.doubling(name):.4f}", fmt(counts.fixed(name))])
    notes = [f"Switching the counter on and off (an empty timed call) costs {counts.switch:,} instructions "
             f"(range {counts.switch_range[0]:,}–{counts.switch_range[1]:,} over the workers); "
             f"it is subtracted from every count.",
             "2N / N is 2 less the fixed part: a run's start-up is inside the timed call too "
             "(statetrainer's `train()` set-up is the large one).",
             "Repeatability: the same command gives the same counts to within tens of instructions per run; "
             "a change to what else a worker process runs first (heap layout, the collector's counters) moves "
             "per-batch counts by up to about 0.2% (±100 on `noop`, ±1,000 on `linear`, where a batch is "
             "~535,000): read `linear`'s fixed-per-run column, and differences under ~2,000 there, as noise."]
    for label in ("linear/raw", "linear/statetrainer", "noop/raw"):
        dump = counts.dumps.get(f"{label}@{counts.sizes.get(label, (0,))[0]}")
        if dump is not None:
            cost, found = harness.symbols_cost(dump, SETUP_SYMBOLS)
            notes.append(f"`{label}`: instructions in set-up functions (`{SETUP_SYMBOLS}`) inside the counted "
                         f"region: {cost:,}" + (f" ({', '.join(n[:60] for n in found[:3])})" if found else ""))
    return Table("Check: only the timed call is counted",
                 ["case", "count at N", "count at 2N", "2N / N", "fixed per run"], rows, notes)


# ---------------------------------------------------------------------------- CPU time


def cpu_table(workload: str, samples: Mapping[str, Samples], frameworks: Sequence[str]) -> Table:
    """CPU µs per batch of one workload: median, spread, and the paired difference to the raw loop."""
    rows = []
    for fw in frameworks:
        name = f"{workload}/{fw}"
        s = samples[name]
        rows.append([LABELS[fw], f"{s.median:.2f}", s.spread(),
                     f"{harness.paired(samples, name, f'{workload}/raw'):+.2f}",
                     harness.paired_spread(samples, name, f"{workload}/raw"),
                     f"{sorted(s.fixed)[len(s.fixed) // 2] / 1000:.2f}"])
    return Table(f"{workload}: CPU µs per batch", ["loop", "µs per batch (median)", "interquartile range",
                                                   "over the raw loop (paired median)", "its interquartile range",
                                                   "fixed per run, ms"], rows,
                 ["A difference whose interquartile range spans zero, or is wider than the difference, is not "
                  "resolved by these rounds: read the instruction counts instead."])


# ---------------------------------------------------------------------------- summary


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def summary_table(counts: Counts | None, samples: Mapping[str, Samples] | None) -> Table:
    """Per batch over the raw loop: statetrainer, Ignite, Lightning, and statetrainer's ratios to each."""
    rows = []
    for workload in WORKLOADS:
        over_i: dict[str, float | None] = {}
        over_c: dict[str, float | None] = {}
        for fw in ("statetrainer", "ignite", "lightning"):
            name = f"{workload}/{fw}"
            over_i[fw] = (counts.per_unit(name) - counts.per_unit(f"{workload}/raw")
                          if counts and (name, counts.sizes.get(name, (0,))[0]) in counts.net else None)
            over_c[fw] = harness.paired(samples, name, f"{workload}/raw") if samples and name in samples else None
        for what, over, digits in (("instructions", over_i, 0), ("CPU µs", over_c, 2)):
            if all(v is None for v in over.values()):
                continue
            rows.append([workload, f"{what} over the raw loop",
                         *(fmt(over[fw], digits) for fw in ("statetrainer", "ignite", "lightning")),
                         _ratio(over["statetrainer"], over["ignite"]),
                         _ratio(over["statetrainer"], over["lightning"])])
    return Table("Per batch over the raw loop",
                 ["workload", "measure", "statetrainer", "Ignite", "Lightning", "statetrainer / Ignite",
                  "statetrainer / Lightning"], rows)


def main() -> None:
    parser = harness.base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=11, help="CPU-time rounds")
    parser.add_argument("--batches", type=int, default=1000, help="CPU time: N (runs at N and 2N batches)")
    parser.add_argument("--cg-batches", type=int, default=200, help="callgrind: N (counts at N and 2N batches)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.batches, args.cg_batches = 1, 20, 20
    workloads = [w for w in args.workloads.split(",") if w]
    frameworks, notes = installed()
    names = [f"{w}/{fw}" for w in workloads for fw in frameworks]
    tables: list[Table] = []
    counts = samples = None
    if args.only != "cpu":
        missing = harness.callgrind_missing()
        if missing:
            notes.append(f"instruction counts left out: {missing}")
        else:
            with tempfile.TemporaryDirectory(prefix="frameworks-callgrind-") as keep:
                # Smoke: only the torch-free case, as importing torch under valgrind takes ~25 s.
                counts = measure_instructions(["noop/raw"] if args.smoke else names, args.cg_batches, args.jobs,
                                              keep)
                tables += [instruction_table(w, counts, frameworks) for w in workloads if not args.smoke]
                tables.append(check_table(counts))
                profiled = "noop/raw" if args.smoke else "noop/statetrainer"
                if (profiled, args.cg_batches) in counts.net:
                    tables.append(profile_table(counts, profiled))
    if args.only != "instructions":
        all_cases = cases()
        samples = harness.cpu_samples({n: all_cases[n] for n in names},
                                      {n: (args.batches, 2 * args.batches) for n in names}, args.rounds)
        tables += [cpu_table(w, samples, frameworks) for w in workloads]
    summary = summary_table(counts, samples)
    summary.notes = notes + ["CPU rows are paired medians over the rounds, on a shared VM; their spread is in the "
                             "CPU tables below. A few µs on `linear` (a batch is hundreds of µs of torch work) are "
                             "below what they resolve: the instruction rows are the measure there."]
    harness.emit([summary, *tables], args.json)


if __name__ == "__main__":
    main()
