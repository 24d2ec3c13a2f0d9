"""Measurement machinery shared by the benchmark scripts: CPU time, callgrind counts, tables.

A benchmark *case* is a ``Prepare`` function: ``prepare(n)`` does all the set-up for a run of
``n`` units (batches, or epochs) and returns the *timed call*, a zero-argument function that
runs exactly the part being measured. Set-up, imports and data generation stay outside.

Every figure is a *slope*: each case runs at two sizes ``n1 < n2`` and the cost per unit is
``(cost(n2) - cost(n1)) / (n2 - n1)``; what a run costs once (a trainer's start-up, Lightning's
``fit`` set-up) cancels, and is reported separately as the *fixed* cost per run.

* CPU time: :func:`cpu_samples` runs the cases in one process, paired and interleaved (the
  case order and the size order alternate each round), timing the timed call only with
  ``time.process_time_ns``. Per-round slopes are kept so that differences against a baseline
  can be taken within a round (paired) and the spread reported.
* Instructions: :func:`count_instructions` starts each group of cases in its own process
  under ``valgrind --tool=callgrind --instr-atstart=no`` (nothing is simulated during imports
  and set-up). That process, this module run as ``--callgrind-worker``, switches
  instrumentation on just before the timed call and off just after it with valgrind's
  ``vgdb`` (what ``callgrind_control -i on|off`` runs; see :class:`_Switch`), then dumps the
  counters under a label. The switch's own cost (about 12,000 instructions: the end of one
  ``vgdb`` child's wait and the start of the next one's spawn) is measured as an empty timed
  call and subtracted. Counts are deterministic for a given machine, binary and input.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

Timed = Callable[[], object]
Prepare = Callable[[int], Timed]
Sizes = tuple[int, int]

#: Labels of the empty timed calls that measure what switching the counter costs.
EMPTY = "empty"
#: Labels of the first switches, whose one-off costs are left out.
WARM = "warm"


# ---------------------------------------------------------------------------- tables


@dataclass
class Table:
    """One result table: what the report prints and what ``--json`` stores."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The table as GitHub markdown, notes as a list below it."""
        lines = [f"| {' | '.join(self.columns)} |", f"|{'---|' * len(self.columns)}"]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)


def emit(tables: Sequence[Table], json_path: str | None, extra: Mapping[str, object] | None = None) -> None:
    """Print the tables; with ``json_path``, also store them with the command that made them."""
    for table in tables:
        print(f"\n### {table.title}\n\n{table.markdown()}", flush=True)
    if json_path:
        record = {"command": command_line(), "date": time.strftime("%Y-%m-%d"), "environment": environment(),
                  "load": f"{os.getloadavg()[0]:.1f}", "tables": [asdict(t) for t in tables], **(extra or {})}
        Path(json_path).write_text(json.dumps(record, indent=1))


def command_line() -> str:
    """This script's command line as a user types it from the repository root (``--json`` left out)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif not arg.startswith("--json="):
            args.append(arg)
    script = os.path.relpath(sys.argv[0], Path(__file__).resolve().parent.parent)
    return " ".join([".venv/bin/python", script, *args])


def environment() -> dict[str, str]:
    """What the numbers were measured on: machine, versions, and which statetrainer."""
    info = {"cpus": str(os.cpu_count()), "cpu": _cpu_model(), "python": platform.python_version()}
    for dist in ("torch", "pytorch-ignite", "lightning"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = "not installed"
    valgrind = shutil.which("valgrind")
    info["valgrind"] = (subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()
                        if valgrind else "not installed")
    spec = importlib.util.find_spec("statetrainer")
    folder = Path(spec.origin).parent.parent if spec and spec.origin else None
    info["statetrainer"] = _git_state(folder) if folder else "not importable"
    return info


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else "unknown"


def _git_state(folder: Path) -> str:
    """``commit abc1234`` (``+ uncommitted changes`` when the package differs from it), or the folder."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return f"from {folder} (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "statetrainer")
    return f"commit {commit}" + (" + uncommitted changes to statetrainer/" if dirty else "")


def fmt(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or a dash for a missing one."""
    return "—" if value is None else f"{value:,.{digits}f}"


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts, a few seconds; checks the script runs, measures nothing useful")
    parser.add_argument("--only", choices=("cpu", "instructions"), help="run one kind of measurement")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="callgrind processes run at once (counts do not depend on load)")
    parser.add_argument("--json", help="also write the tables and the command to this file")
    return parser


def optional(module: str) -> bool:
    """Whether an optional package (ignite, lightning) is installed."""
    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------- CPU time


@dataclass
class Samples:
    """Per-round slopes (µs per unit) and fixed costs (µs per run) of one case."""

    per_unit: list[float]
    fixed: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.per_unit)

    def spread(self) -> str:
        """The interquartile range of the per-round slopes, as ``q1–q3``."""
        q1, _, q3 = quartiles(self.per_unit)
        return f"{q1:.2f}–{q3:.2f}"


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """First quartile, median, third quartile (the values themselves when fewer than 2)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _cpu_once(timed: Timed) -> float:
    """CPU seconds of one timed call; a collection first so garbage from set-up is not billed to it."""
    gc.collect()
    start = time.process_time_ns()
    timed()
    return (time.process_time_ns() - start) / 1e9


def cpu_samples(cases: Mapping[str, Prepare], sizes: Mapping[str, Sizes], rounds: int) -> dict[str, Samples]:
    """Paired, interleaved CPU-time slopes of ``cases`` (each run once first to warm up)."""
    names = list(cases)
    for name in names:
        cases[name](sizes[name][0])()
    out = {name: Samples([], []) for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            n1, n2 = sizes[name]
            order = (n1, n2) if r % 2 == 0 else (n2, n1)
            seconds = {n: _cpu_once(cases[name](n)) for n in order}
            slope = (seconds[n2] - seconds[n1]) / (n2 - n1)
            out[name].per_unit.append(slope * 1e6)
            out[name].fixed.append((seconds[n1] - n1 * slope) * 1e6)
    return out


def paired(samples: Mapping[str, Samples], name: str, base: str) -> float:
    """Median over rounds of ``name``'s slope minus ``base``'s in the same round."""
    return statistics.median(a - b for a, b in zip(samples[name].per_unit, samples[base].per_unit))


def paired_spread(samples: Mapping[str, Samples], name: str, base: str) -> str:
    """The interquartile range of the per-round differences :func:`paired` takes the median of."""
    q1, _, q3 = quartiles([a - b for a, b in zip(samples[name].per_unit, samples[base].per_unit)])
    return f"{q1:+.2f}…{q3:+.2f}"


# ---------------------------------------------------------------------------- callgrind, parent side


def no_instruction_counts(smoke: bool) -> str | None:
    """The note saying why a script leaves instruction counts out, or ``None`` when it counts them."""
    if smoke:
        return "smoke: instruction counts left out (importing torch under valgrind takes ~25 s)"
    missing = callgrind_missing()
    return f"instruction counts left out: {missing}" if missing else None


def callgrind_missing() -> str | None:
    """Why instruction counts cannot be taken here, or ``None`` when they can."""
    for tool in ("valgrind", "vgdb"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install valgrind)"
    return None


@dataclass
class Counts:
    """Net instruction counts by (case, size), with the switch cost already subtracted."""

    net: dict[tuple[str, int], int]
    sizes: dict[str, Sizes]
    switch: int
    switch_range: tuple[int, int]
    dumps: dict[str, Path]

    def per_unit(self, name: str) -> float:
        n1, n2 = self.sizes[name]
        return (self.net[name, n2] - self.net[name, n1]) / (n2 - n1)

    def fixed(self, name: str) -> float:
        n1, _ = self.sizes[name]
        return self.net[name, n1] - n1 * self.per_unit(name)

    def doubling(self, name: str) -> float:
        """count(n2) / count(n1): 2.0 for a case with no fixed cost when n2 = 2 n1."""
        n1, n2 = self.sizes[name]
        return self.net[name, n2] / self.net[name, n1]


def count_instructions(script: str, groups: Iterable[Sequence[str]], sizes: Mapping[str, Sizes],
                       jobs: int, keep: str | None = None) -> Counts:
    """Instruction counts of the timed calls of ``script``'s cases, one process per group."""
    folder = Path(keep or tempfile.mkdtemp(prefix="callgrind-"))
    folder.mkdir(parents=True, exist_ok=True)
    work = [(i, list(group)) for i, group in enumerate(groups)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda job: _run_worker(script, job[1], sizes, folder / f"g{job[0]}"), work))
    totals: dict[str, list[int]] = {}
    dumps: dict[str, Path] = {}
    for found in results:
        for label, (total, path) in found.items():
            if label.startswith(WARM):
                continue
            totals.setdefault(_base_label(label), []).append(total)
            dumps[label] = path
    empties = totals.pop(EMPTY)
    switch = int(statistics.median(empties))
    net = {}
    for label, values in totals.items():
        name, size = label.rsplit("@", 1)
        net[name, int(size)] = values[0] - switch
    if keep is None:
        dumps = {}
        shutil.rmtree(folder, ignore_errors=True)
    return Counts(net, {k: tuple(v) for k, v in sizes.items()}, switch,  # type: ignore[misc]
                  (min(empties), max(empties)), dumps)


def _base_label(label: str) -> str:
    """``empty#3`` -> ``empty``; case labels are unique and kept whole."""
    return label.split("#", 1)[0]


def _run_worker(script: str, names: list[str], sizes: Mapping[str, Sizes], out: Path) -> dict[str, tuple[int, Path]]:
    """Run one callgrind worker process; its dumps' totals by label."""
    out.mkdir(parents=True, exist_ok=True)
    plan = json.dumps({"script": str(Path(script).resolve()), "cases": {n: list(sizes[n]) for n in names}})
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
               f"--callgrind-out-file={out}/cg.out", sys.executable, str(Path(__file__).resolve()),
               "--callgrind-worker", plan]
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"callgrind worker for {names} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    found = {}
    for path in sorted(out.glob("cg.out.*")):
        text = path.read_text(errors="replace")
        label = re.search(r"^desc: Trigger: Client Request: (.*)$|^desc: Trigger: dump (.*)$", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if label and total:
            found[label.group(1) or label.group(2)] = (int(total.group(1)), path)
    missing = [f"{n}@{s}" for n in names for s in sizes[n] if f"{n}@{s}" not in found]
    if missing or not any(k.startswith(EMPTY) for k in found):
        raise RuntimeError(f"callgrind worker wrote no dump for {missing or 'the empty call'} "
                           f"(vgdb could not reach the process? it needs ptrace):\n"
                           f"{proc.stderr[-3000:]}")
    return found


def self_costs(dump: Path) -> dict[str, int]:
    """Self cost (instructions) by function name in one dump, from ``callgrind_annotate``."""
    proc = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", str(dump)],
                          capture_output=True, text=True, check=True)
    costs: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$", line)
        if match and "PROGRAM TOTALS" not in line:
            name = short_name(match.group(2))
            costs[name] = costs.get(name, 0) + int(match.group(1).replace(",", ""))
    return costs


def short_name(annotated: str) -> str:
    """``/path/file.c:func [lib.so]`` -> ``func``, C++ templates' arguments elided."""
    name = annotated.split(" [", 1)[0]
    name = name.split(":", 1)[1] if re.match(r"^[^:]*\.\w+:|^\?\?\?:", name) else name
    while re.search(r"<[^<>]*>", name):
        name = re.sub(r"<[^<>]*>", "", name)
    return name.strip()


def symbols_cost(dump: Path, pattern: str) -> tuple[int, list[str]]:
    """Instructions spent in functions whose name matches ``pattern`` in one dump (self cost)."""
    found = {name: cost for name, cost in self_costs(dump).items() if re.search(pattern, name)}
    return sum(found.values()), sorted(found, key=found.__getitem__, reverse=True)


def per_unit_profile(counts: Counts, name: str, limit: int = 15) -> list[tuple[str, float]]:
    """Where one unit's instructions go: each function's self cost, differenced between the two sizes."""
    n1, n2 = counts.sizes[name]
    low, high = self_costs(counts.dumps[f"{name}@{n1}"]), self_costs(counts.dumps[f"{name}@{n2}"])
    per = {fn: (high.get(fn, 0) - low.get(fn, 0)) / (n2 - n1) for fn in set(low) | set(high)}
    return sorted(per.items(), key=lambda kv: -kv[1])[:limit]


# ---------------------------------------------------------------------------- callgrind, worker side


class _Switch:
    """Turns callgrind's instrumentation on and off from inside the measured process.

    ``callgrind_control -i on PID`` is a Perl wrapper around valgrind's ``vgdb``; this calls
    ``vgdb`` directly (no Perl start-up per switch) with a command time-out, so that a process
    ``vgdb`` cannot reach (no ptrace) fails instead of hanging. ``vgdb`` waits its default
    100 ms before it interrupts the process, which by then is always blocked in ``waitpid``:
    the switch happens at the same instruction every time (a shorter wait, 1 ms, was seen to
    catch the process before it blocked, and the counts varied by thousands).
    """

    def __init__(self) -> None:
        self.tool = shutil.which("vgdb") or "vgdb"
        self.pid = str(os.getpid())
        devnull = os.open(os.devnull, os.O_WRONLY)  # kept open: vgdb's chatter goes nowhere
        self._quiet = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        # vgdb needs only TMPDIR (where valgrind's FIFOs are); a small environment is cheaper
        # to pass than the whole of os.environ, and that cost is inside the counted region.
        self._env = {k: v for k, v in os.environ.items() if k in ("TMPDIR", "PATH")}

    def _argv(self, *commands: str) -> list[str]:
        argv = [self.tool, f"--pid={self.pid}", "--cmd-time-out=120"]
        for i, command in enumerate(commands):
            argv += ([] if i == 0 else ["-c"]) + command.split()
        return argv

    def _run(self, argv: list[str]) -> None:
        # posix_spawn + waitpid: the least Python on either side of the switch, and the same
        # every time (no pipes to drain, whose reads would depend on timing).
        child = os.posix_spawn(self.tool, argv, self._env, file_actions=self._quiet)
        _, status = os.waitpid(child, 0)
        if status != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: status {status}")

    def count(self, label: str, timed: Timed) -> None:
        """Count the instructions of ``timed()`` only, and dump them under ``label``."""
        on, off = self._argv("instrumentation on"), self._argv("instrumentation off", f"dump {label}")
        gc.collect()
        self._run(on)
        timed()
        self._run(off)


def _load(script: str) -> ModuleType:
    """Import a benchmark script by path (its folder first on ``sys.path``, as when run)."""
    sys.path.insert(0, str(Path(script).parent))
    spec = importlib.util.spec_from_file_location(Path(script).stem, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _worker(plan_json: str) -> None:
    """Count each case of the plan at its two sizes, after warm-up runs that are not counted."""
    plan = json.loads(plan_json)
    cases: Mapping[str, Prepare] = _load(plan["script"]).cases()
    switch = _Switch()
    for i in range(2):
        switch.count(f"{WARM}#{i}", lambda: None)  # the switch's own first-call costs, not kept
    for name, sizes in plan["cases"].items():
        prepare = cases[name]
        prepare(sizes[0])()  # warm-up, not counted: lazy imports, first-call set-up, the interpreter's specialising
        for n in sizes:
            switch.count(f"{name}@{n}", prepare(n))
    for i in range(3):
        switch.count(f"{EMPTY}#{i}", lambda: None)


def under_callgrind() -> bool:
    """Whether this process is a callgrind worker (cases that depend on the clock adapt)."""
    return "--callgrind-worker" in sys.argv


if __name__ == "__main__":
    if sys.argv[1:2] == ["--callgrind-worker"]:
        _worker(sys.argv[2])
    else:
        sys.exit("harness.py is a library; run a benchmark script (see BENCHMARKS.md)")
