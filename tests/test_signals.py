"""Signals end to end, through the real ``statetrainer`` command (issue 12).

With periodic (every 2 batches) and epoch checkpoints on, a SIGINT or SIGTERM at any moment
of a run — a checkpoint due at that very state, an epoch end, inside evaluation — stops the
run within one batch, writes a checkpoint there, leaves status ``stopped``, exits 130/143,
and ``--resume`` ends with bitwise the weights of an uninterrupted run. A signal during
``test()`` stops the test and says so: status ``stopped``, exit 130, no result printed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from runs_helpers import ENV, STATETRAINER, TINY, same_weights, status, tiny, tiny_popen, trace

pytestmark = pytest.mark.slow

TRAIN = ("--mode", "train", "--checkpoint-every", "2")
#: Training batch starts and evaluation item starts: a stop "within one batch" sees at most one after the signal.
BATCH_STARTS = ("on_start_training_batch", "on_evaluate_batch_start")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run: its run directory."""
    run = tmp_path_factory.mktemp("signals") / "reference"
    done = tiny(run, *TRAIN)
    assert done.returncode == 0, done.stderr
    return run


def _moments(reference: Path) -> list[tuple[str, int, signal.Signals]]:
    """Where the signals land: random entries of the reference trace (seeded), plus the
    moments the issue names — a periodic checkpoint due at that batch end, an epoch end
    (epoch checkpoint due), an evaluation item."""
    rows = [r for r in trace(reference) if r["depth"] == 0][:-1]  # not on_train_end: the run ends there anyway
    nth: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for row in rows:
        seen[row["state"]] = seen.get(row["state"], 0) + 1
        nth.append((row["state"], seen[row["state"]]))
    rng = random.Random(12)
    chosen = [("on_end_training_batch", 4), ("on_epoch_end", 1), ("evaluate_batch", 6)] + rng.sample(nth, 2)
    sigs = [signal.SIGINT, signal.SIGTERM]
    return [(state, n, sigs[i % 2]) for i, (state, n) in enumerate(chosen)]


def _check_stopped(run: Path, done: Any, sig: signal.Signals) -> dict[str, Any]:
    assert done.returncode == 128 + sig, (done.returncode, done.stderr[-3000:])
    assert f"stopped by signal {sig.name}" in done.stderr
    # the printed command resumes it as it is (the CLI needs the trainer's TARGET again)
    assert f"resume with: statetrainer run {TINY} --resume --run-dir {run}" in done.stderr
    st = status(run)
    assert st["status"] == "stopped" and st["stop_reason"] == f"signal {sig.name}"
    from statetrainer import checkpoint as ck

    path, data = ck.latest_good(run / "checkpoints", st["run_id"])
    rows = trace(run)
    assert rows[-1]["state"] == "on_train_end", "the stop edge leads to on_train_end"
    assert data["state"] == rows[-2]["state"], "the checkpoint is written where the run stopped"
    return {"rows": rows, "checkpoint": data, "run_id": st["run_id"]}


def _resume_and_compare(run: Path, reference: Path, run_id: str) -> None:
    done = tiny(run, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert status(run)["status"] == "finished" and status(run)["run_id"] == run_id, "the run keeps its id"
    assert same_weights(run / "model.pt", reference / "model.pt"), "resume is exact"
    rows = trace(run)
    assert {r["run_id"] for r in rows} == {run_id}, "every trace line names the run"
    assert sum(r["note"] == "resume" for r in rows) == 1
    verified = subprocess.run([STATETRAINER, "verify-trace", str(run / "trace.jsonl")], capture_output=True,
                              text=True, env=ENV, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_signal_at_any_moment_stops_within_one_batch_with_a_checkpoint_and_resumes_exactly(
    tmp_path: Path, reference: Path
) -> None:
    """Five moments (a due periodic checkpoint, an epoch end, evaluation, two random ones),
    SIGINT and SIGTERM: exit 130/143, status stopped, a checkpoint where it stopped, at most
    one batch begun after the signal, and --resume gives the uninterrupted weights."""
    for trial, (state, nth, sig) in enumerate(_moments(reference)):
        run = tmp_path / f"trial{trial}"
        done = tiny(run, *TRAIN, config=(f"signal_at={state}:{nth}:{sig.name}",))
        found = _check_stopped(run, done, sig)
        rows = found["rows"]
        at = [i for i, r in enumerate(rows) if r["state"] == state and r["depth"] == 0][nth - 1]
        after = [r["state"] for r in rows[at + 1:-1]]
        assert sum(s in BATCH_STARTS for s in after) <= 1, f"{state}#{nth}: ran on past one batch: {after}"
        _resume_and_compare(run, reference, found["run_id"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sent_from_outside_at_a_random_moment_stops_and_resumes_exactly(
    tmp_path: Path, reference: Path, sig: signal.Signals
) -> None:
    """kill -INT / -TERM from another process at a random moment after the first checkpoint:
    the same outcome (the steps sleep so that the signal lands while the run is busy)."""
    rng = random.Random(int(sig))
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        proc = tiny_popen(run, *TRAIN, config=("sleep=0.03", "epochs=3"))
        deadline = time.monotonic() + 120
        while not list((run / "checkpoints").glob("ckpt-*.pt")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            continue  # the run had finished before the signal landed: try another moment
        found = _check_stopped(run, subprocess.CompletedProcess(proc.args, proc.returncode, out, err), sig)
        _resume_and_compare(run, reference, found["run_id"])
        return
    pytest.fail("three runs finished before the signal landed")


def test_a_signal_during_test_stops_it_and_says_so(tmp_path: Path) -> None:
    """SIGINT in test(): status stopped (lifecycle test), exit 130, one line saying so, and no
    'status: finished' line as if the test had completed."""
    run = tmp_path / "run"
    done = tiny(run, "--mode", "both", config=("epochs=1", "signal_at=test_step:2:SIGINT"))
    assert done.returncode == 130, done.stderr[-3000:]
    assert "test stopped by signal SIGINT before its end: no test result" in done.stderr
    assert "status: finished" not in done.stdout and "run directory" not in done.stdout
    st = status(run)
    assert st["status"] == "stopped" and st["lifecycle"] == "test"


DEMO_SCRIPT = """
import os, signal, sys
from statetrainer import demo
from statetrainer.cli import main

def test_step(self, args, _original=demo.DigitsTrainer.test_step):
    os.kill(os.getpid(), signal.SIGINT)  # the first test batch: a real SIGINT to this process
    _original(self, args)

demo.DigitsTrainer.test_step = test_step
sys.exit(main(["demo", "--epochs", "0", "--quiet", "--run-dir", sys.argv[1]]))
"""


def test_a_signal_during_the_demos_test_prints_no_accuracy(tmp_path: Path) -> None:
    """statetrainer demo: a SIGINT while testing exits 130 and prints no test accuracy."""
    done = subprocess.run([sys.executable, "-c", DEMO_SCRIPT, str(tmp_path / "run")], capture_output=True,
                          text=True, env=ENV, timeout=240)
    assert done.returncode == 130, done.stderr[-3000:]
    assert "test accuracy" not in done.stdout and "test stopped by signal SIGINT" in done.stderr
    assert status(tmp_path / "run")["status"] == "stopped"


def test_status_json_stays_live_during_test(tmp_path: Path) -> None:
    """While test() runs, the sampler thread keeps status.json current: a test step sees it
    name the test lifecycle and its own state."""
    from runs_train import Tiny

    seen: list[tuple[Any, Any]] = []

    class Watching(Tiny):
        def test_step(self, args: Any) -> None:
            for _ in range(400):  # bounded wait for the sampler (about every 0.05 s)
                st = status(tmp_path / "run")
                if st["lifecycle"] == "test" and st["state"] == "test_step":
                    seen.append((st["lifecycle"], st["batch"]))
                    return
                time.sleep(0.025)

    trainer = Watching({"epochs": 1}, run_dir=tmp_path / "run")
    trainer.train()
    trainer.test()
    assert seen and all(lc == "test" for lc, _ in seen), seen
    assert status(tmp_path / "run")["status"] == "finished"
    assert torch.is_grad_enabled()
