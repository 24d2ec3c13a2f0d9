"""Rewrite BENCHMARKS.md from measured numbers: runs every benchmark script, then writes the report.

    python benchmarks/report.py                      # measure everything (~30 min), write BENCHMARKS.md
    python benchmarks/report.py --smoke -o out.md    # a few seconds per script, numbers meaningless
    python benchmarks/report.py --from-json DIR      # re-render from the scripts' --json files in DIR
    python benchmarks/report.py --keep-json DIR --scripts callbacks   # re-measure one, keep the rest

Each table is printed with the exact command that reproduces it, its date, and the machine.
Nothing here is a number of its own: every figure comes from a script's ``--json`` output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

#: The scripts, in report order: (name, full-run arguments, section heading, what the section says).
SCRIPTS: list[tuple[str, list[str], str, str]] = [
    ("frameworks", ["--rounds", "11", "--batches", "1000", "--cg-batches", "200"],
     "statetrainer against a raw loop, Ignite and Lightning",
     "Two workloads: `noop` (plain ints, a step that does nothing: the framework alone) and `linear` "
     "(`Linear(32,1)`, batch 32, pre-batched tensors, one thread). statetrainer is ConvnetTrainer with "
     "the trace and live state on and no run directory. Lightning is a bare `Trainer` (`barebones=True`, "
     "one CPU device, no logger, checkpointing, progress bar or model summary); its no-op module uses "
     "manual optimization and no optimizer, its linear module returns the loss to Lightning's automatic "
     "optimization. Ignite's process function is the raw loop's step. *Over the raw loop* is per batch; "
     "*fixed per run* is what one `train()`/`run()`/`fit()` costs besides its batches."),
    ("run_dir", ["--rounds", "9"],
     "What a run directory costs",
     "No-op ConvnetTrainer with `run_dir=` against without, at 100 and 1,000 batches per epoch, measured "
     "between E and 2E epochs with E long enough for the trace to be full (steady state). *Per epoch* is the "
     "run directory's cost per batch times the batches per epoch; the notes split it into a part that grows "
     "with the batches and a part per epoch. *Once per run* is what is left of the shorter run: start-up, "
     "less whatever grows with the run's length. It goes negative when `trace.jsonl`'s rotation (a rewrite "
     "of the whole trace whenever the file passes five times the trace's size) falls only in the longer run: "
     "the per-epoch figures carry those rewrites, amortized."),
    ("callbacks", ["--rounds", "11", "--batches", "2000", "--cg-batches", "200"],
     "What a callback costs",
     "Per entry of a state and per callback: a no-op callback, and filtered ones that never fire. A filter "
     "pays when it costs less than the call it skips."),
    ("compound", ["--rounds", "11", "--batches", "1000", "--cg-batches", "200"],
     "What super().train_batch(args) costs",
     "farabio's override idiom: a `train_batch(args)` override that calls `super().train_batch(args)`, so "
     "each batch is a nested pass through the compound's body, against the plain trainer on the `linear` "
     "workload (issue 11's budget: within 1.10x per batch)."),
    ("overhead", ["--rounds", "15", "--batches", "2000", "--import-rounds", "7"],
     "Wall clock against DESIGN §5's budgets",
     "The older wall-clock benchmark (`time.perf_counter`, paired and interleaved, medians)."),
]

NOISE = """\
## What is noisy

- **Instruction counts are deterministic** for a given machine, binary and input: two workers
  counting the same case, side by side on the loaded machine, agreed to within 31
  instructions in 22 million. What a worker process ran before the counted call (heap layout,
  the garbage collector's counters) moves per-batch counts by up to about 0.2% (±100 on
  `noop`, ±1,000 on `linear`): differences below that are noise. Counts are not time: a cache
  miss or a system call costs one instruction here and far more on the clock; they are user
  space only (the kernel's side of file writes is not in them); and valgrind presents an older
  CPU to the program (no AVX-512), so torch runs its AVX2 kernels. Counting is switched on and
  off around the timed call only; the switch's own cost (an empty timed call, in the check
  table) is subtracted, and per-batch figures are slopes between two batch counts, so what a
  run costs once cancels.
- **CPU and wall time are noisy on this machine**: a 2-core VM shared with other work (the
  test suite, other sessions). CPU time (`time.process_time`) leaves out waiting for the core
  but not cache and frequency effects of the neighbours. Each CPU table gives the median over
  rounds and the interquartile range of the per-round figures; differences to the raw loop are
  paired within a round. Differences of a fraction of a microsecond per batch (statetrainer's
  or Ignite's overhead on the `linear` workload, where a batch costs ~150–300 µs) are below
  what these rounds resolve: read them from the instruction counts.
- **Per-batch CPU figures are slopes** between a run of N and one of 2N batches, so each is the
  difference of two noisy runs; for Lightning this removes `fit()`'s set-up (several ms) from
  the per-batch figure.
- The wall-clock table (DESIGN §5's budgets) is the noisiest: its ratios have straddled the 3%
  budget from run to run on this machine.
"""


def run_scripts(folder: Path, smoke: bool, only: set[str] | None = None) -> None:
    """Run the scripts (all, or those in ``only``) with ``--json`` into ``folder``."""
    for name, args, _, _ in SCRIPTS:
        if only is not None and name not in only:
            continue
        command = [sys.executable, str(HERE / f"{name}.py"), *(["--smoke"] if smoke else args),
                   "--json", str(folder / f"{name}.json")]
        print(f"running {' '.join(command[1:])}", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _table(table: dict[str, Any]) -> str:
    lines = [f"| {' | '.join(table['columns'])} |", f"|{'---|' * len(table['columns'])}"]
    lines += [f"| {' | '.join(row)} |" for row in table["rows"]]
    lines += [f"- {note}" for note in table["notes"]]
    return "\n".join(lines)


def machine(env: dict[str, str]) -> str:
    """One line naming the machine and the versions."""
    return (f"{env['cpus']}-core CPU VM ({env['cpu']}), Python {env['python']}, torch {env['torch']}, "
            f"Ignite {env['pytorch-ignite']}, Lightning {env['lightning']}, {env['valgrind']}; "
            f"statetrainer {env['statetrainer']}")


def render(folder: Path) -> str:
    """BENCHMARKS.md from the JSON files in ``folder``."""
    records = {name: json.loads((folder / f"{name}.json").read_text()) for name, *_ in SCRIPTS
               if (folder / f"{name}.json").exists()}
    if not records:
        raise SystemExit(f"no benchmark results in {folder}")
    first = next(iter(records.values()))
    parts = [
        "# Benchmarks",
        "",
        "Generated by `.venv/bin/python benchmarks/report.py` from the numbers the scripts below "
        f"measured; do not edit by hand. Machine: {machine(first['environment'])}.",
        "",
        "Optional frameworks: `PIP_CONSTRAINT=.ci/constraints.txt .venv/bin/pip install -r "
        "benchmarks/requirements.txt` (Ignite, Lightning; never a dependency of statetrainer). "
        "Instruction counts need valgrind. Every script has `--smoke` (what CI runs: "
        "`tests/test_benchmarks_smoke.py`), `--only cpu|instructions` and `--json`.",
        "",
        "How it counts: each case is set up first (data, model, trainer object), then only the *timed "
        "call* (`train()`, `run()`, `fit()`, the loop) is measured. Instructions: valgrind's callgrind "
        "with instrumentation off until the timed call starts and off again when it ends (switched from "
        "inside the process through `vgdb`, as `callgrind_control -i on|off` does), so imports, set-up and "
        "data generation are not counted. Every per-batch figure is the slope between two batch counts.",
    ]
    for name, _, heading, about in SCRIPTS:
        record = records.get(name)
        if record is None:
            continue
        parts += ["", f"## {heading}", "", about, "",
                  f"Reproduce: `{record['command']}` ({record['date']}"
                  + (f"; load average {record['load']} when it finished" if "load" in record else "")
                  + ("" if record["environment"] == first["environment"]
                     else f"; {machine(record['environment'])}") + ")."]
        for table in record["tables"]:
            parts += ["", f"### {table['title']}", "", _table(table)]
    parts += ["", NOISE.rstrip()]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="run the scripts in smoke mode")
    parser.add_argument("--from-json", help="render from this folder's JSON files; run nothing")
    parser.add_argument("--keep-json", help="keep the scripts' JSON files in this folder")
    parser.add_argument("--scripts", help="comma-separated: run only these (with --keep-json: the others' "
                                          "results already there are kept)")
    parser.add_argument("-o", "--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    names = {name for name, *_ in SCRIPTS}
    only = set(args.scripts.split(",")) if args.scripts else None
    if only and not only <= names:
        parser.error(f"--scripts: unknown {sorted(only - names)}; known: {sorted(names)}")
    if args.from_json:
        text = render(Path(args.from_json))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(args.keep_json or tmp)
            folder.mkdir(parents=True, exist_ok=True)
            run_scripts(folder, args.smoke, only)
            text = render(folder)
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
