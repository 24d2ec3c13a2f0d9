"""The benchmark scripts run in smoke mode (tiny counts, no assertions on time) so they never rot.

Each script runs as a real subprocess, all of them at once (they are mostly imports), and
must exit 0 and print its tables; the report generator then renders their ``--json`` output.
The callgrind part needs valgrind and is skipped, with the reason, without it. Ignite and
Lightning are optional: without them the scripts must say so and still succeed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VALGRIND = shutil.which("valgrind") is not None and shutil.which("vgdb") is not None

#: name -> the script and its smoke arguments; "frameworks-instructions" is the callgrind part.
RUNS = {
    "frameworks": ["frameworks.py", "--smoke", "--only", "cpu"],
    "frameworks-instructions": ["frameworks.py", "--smoke", "--only", "instructions"],
    "run_dir": ["run_dir.py", "--smoke"],
    "callbacks": ["callbacks.py", "--smoke"],
    "overhead": ["overhead.py", "--smoke"],
    "compound": ["compound.py", "--smoke"],
}


class Run:
    """One finished smoke run: exit status, output, and the ``--json`` record."""

    def __init__(self, returncode: int, stdout: str, stderr: str, record: Path) -> None:
        self.returncode, self.stdout, self.stderr, self.record = returncode, stdout, stderr, record

    def check(self) -> str:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        # an exception in a thread (the status writer) does not change the exit status
        assert "Traceback" not in self.stderr, self.stderr[-3000:]
        return self.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Start every smoke run at once, then wait for all of them."""
    folder = tmp_path_factory.mktemp("benchmarks")
    started = {}
    for name, (script, *args) in RUNS.items():
        if name == "frameworks-instructions" and not VALGRIND:
            continue
        out, err = (folder / f"{name}.out").open("w"), (folder / f"{name}.err").open("w")
        command = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(folder / f"{name}.json")]
        started[name] = (subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err), out, err)
    finished = {}
    for name, (proc, out, err) in started.items():
        try:
            proc.wait(timeout=300)
        finally:
            out.close()
            err.close()
        finished[name] = Run(proc.returncode, (folder / f"{name}.out").read_text(),
                             (folder / f"{name}.err").read_text(), folder / f"{name}.json")
    return finished


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_frameworks_prints_its_tables(runs: dict[str, Run]) -> None:
    out = runs["frameworks"].check()
    for title in ("### Per batch over the raw loop", "### noop: CPU µs per batch", "### linear: CPU µs per batch"):
        assert title in out
    assert "| statetrainer ConvnetTrainer |" in out
    for module, label in (("ignite", "Ignite Engine"), ("lightning", "Lightning Trainer")):
        if _installed(module):
            assert f"| {label} |" in out
        else:  # the optional frameworks degrade to a note
            assert f"{label} left out: `{module}` is not installed" in out


@pytest.mark.skipif(not VALGRIND, reason="valgrind (with vgdb) is not installed: no instruction counts")
def test_callgrind_counts_only_the_timed_call(runs: dict[str, Run]) -> None:
    out = runs["frameworks-instructions"].check()
    assert "### Check: only the timed call is counted" in out
    row = re.search(r"^\| noop/raw \| ([\d,]+) \| ([\d,]+) \|", out, re.M)
    assert row, out
    at_n, at_2n = (int(v.replace(",", "")) for v in row.groups())
    assert 0 < at_n < at_2n  # counted, and more batches count more
    assert re.search(r"inside the counted region: 0$", out, re.M), out  # no set-up function was counted


def test_run_dir_prints_its_table(runs: dict[str, Run]) -> None:
    out = runs["run_dir"].check()
    assert "### Run directory: CPU µs" in out
    assert "| run directory, status every 0.5 s (default) |" in out


def test_callbacks_prints_its_table(runs: dict[str, Run]) -> None:
    out = runs["callbacks"].check()
    assert "### Callbacks: cost per state entry and callback" in out
    assert "| statetrainer: `on(state, fn, every=10**9)` |" in out


def test_overhead_prints_its_table(runs: dict[str, Run]) -> None:
    out = runs["overhead"].check()
    assert "### Wall clock against DESIGN §5" in out
    assert "| driver, µs per transition (no-op hooks, trace on) | ≤ 0.5 |" in out


def test_compound_prints_its_table(runs: dict[str, Run]) -> None:
    out = runs["compound"].check()
    assert "### super().train_batch(args): per batch" in out
    assert "| train_batch override calling super().train_batch(args) |" in out


def test_report_renders_every_table_with_its_command(runs: dict[str, Run], tmp_path: Path) -> None:
    folder = tmp_path / "json"
    folder.mkdir()
    for name in ("frameworks", "run_dir", "callbacks", "compound", "overhead"):
        runs[name].check()
        shutil.copy(runs[name].record, folder / f"{name}.json")
    output = tmp_path / "BENCHMARKS.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--from-json", str(folder),
                    "-o", str(output)], check=True, cwd=ROOT, capture_output=True)
    text = output.read_text()
    for name in ("frameworks", "run_dir", "callbacks", "compound", "overhead"):
        command = json.loads((folder / f"{name}.json").read_text())["command"]
        assert f"Reproduce: `{command}`" in text
        assert command.startswith(f".venv/bin/python benchmarks/{name}.py")
    assert "-core CPU VM" in text and "## What is noisy" in text
