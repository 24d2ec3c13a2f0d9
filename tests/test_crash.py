"""A training process killed at random moments resumes to bitwise the same model; signals stop gracefully."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from statetrainer import lifecycles
from statetrainer.checkpoint import latest_good

pytestmark = pytest.mark.slow

DEMO = [sys.executable, "-m", "statetrainer", "demo", "--quiet", "--seed", "5"]


def _start(run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*DEMO, "--run-dir", str(run_dir), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_checkpoint(proc: subprocess.Popen[bytes], run_dir: Path, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((run_dir / "checkpoints").glob("ckpt-*.pt")):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("no checkpoint appeared")


def _same_model(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sigkill_at_random_moments_then_resume_gives_identical_weights(tmp_path: Path) -> None:
    """Kill -9 after the first checkpoint (often mid-write: one every 2 batches), resume, compare."""
    reference = tmp_path / "reference"
    subprocess.run([*DEMO, "--epochs", "3", "--run-dir", str(reference)], check=True, capture_output=True)
    rng = random.Random(2026)
    killed = 0
    for attempt in range(3):
        run_dir = tmp_path / f"killed{attempt}"
        proc = _start(run_dir, "--epochs", "3", "--checkpoint-every", "2")
        if _wait_for_checkpoint(proc, run_dir):
            time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        killed += proc.returncode == -signal.SIGKILL
        for _ in range(5):  # a resume may itself be resumed; here each runs to the end
            done = subprocess.run([*DEMO, "--resume", "--run-dir", str(run_dir)], capture_output=True, text=True)
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stderr
        assert _same_model(run_dir / "model.pt", reference / "model.pt"), f"attempt {attempt} differs"
    assert killed >= 2, "the kills must land while training runs"
    assert not list(tmp_path.glob("killed*/checkpoints/.ckpt-*.tmp")), "stale temp files are cleaned on resume"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_gracefully_with_a_checkpoint_and_resumes(tmp_path: Path, sig: int, code: int) -> None:
    """SIGINT/SIGTERM after the first checkpoint (one every 3 batches of 4 epochs): a checkpoint at
    the batch end, status 'stopped', exit 130/143; --resume then finishes the run and tests it."""
    run_dir = tmp_path / "run"
    proc = _start(run_dir, "--epochs", "4", "--checkpoint-every", "3")
    assert _wait_for_checkpoint(proc, run_dir), "the run ended before its first checkpoint"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, f"the signal must land while the run trains: {err.decode()}"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "stopped" and status["lifecycle"] == "train"
    assert f"resume with: statetrainer demo --resume --run-dir {run_dir}".encode() in err
    _, newest = latest_good(run_dir / "checkpoints")
    assert lifecycles.TRAIN.state(newest["state"]).has("resumable"), newest["state"]
    done = subprocess.run([*DEMO, "--resume", "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("test accuracy:")
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
