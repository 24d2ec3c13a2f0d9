"""Data parallel control requests and failures (issue 12): real torchrun, two processes, gloo.

``stop_epoch()`` or ``skip_batch()`` called on one rank only must not tear the job apart
with a collective mismatch: the ranks agree on it after that state and take the same edge.
When one rank fails, the run directory records that rank's error, not rank 0's follow-on
"connection closed" error.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from test_parallel import SCRIPT, TORCHRUN

pytestmark = pytest.mark.slow


def _torchrun(out: Path, scenario: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(out), scenario],
                          capture_output=True, text=True, timeout=300)


def _ranks(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def _same_weights(out: Path) -> bool:
    w0, w1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    return all(torch.equal(w0[k], w1[k]) for k in w0)


def test_stop_epoch_on_one_rank_is_agreed_by_all(tmp_path: Path) -> None:
    """Rank 0 alone calls stop_epoch() at the start of epoch 2's second batch: both ranks skip
    that batch's step and the rest of the epoch (4 + 1 + 4 steps), the job finishes."""
    done = _torchrun(tmp_path, "stop_epoch")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = _ranks(tmp_path)
    assert ranks[0]["states"] == ranks[1]["states"] and ranks[0]["status"] == ranks[1]["status"] == "finished"
    assert ranks[0]["states"].count("training_step") == 9
    assert _same_weights(tmp_path)


def test_skip_batch_on_one_rank_is_agreed_by_all(tmp_path: Path) -> None:
    """Rank 1 alone calls skip_batch() in two batches: both ranks skip those steps (12 - 2)."""
    done = _torchrun(tmp_path, "skip")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = _ranks(tmp_path)
    assert ranks[0]["states"] == ranks[1]["states"] and ranks[0]["status"] == "finished"
    assert ranks[0]["states"].count("training_step") == 10
    assert _same_weights(tmp_path)


def test_the_run_directory_records_the_failing_ranks_error(tmp_path: Path) -> None:
    """Rank 1 raises; rank 0 then fails on the closed connection. status.json (written by
    rank 0) says failed with rank 1's error, and keeps rank 0's as the follow-on."""
    done = _torchrun(tmp_path, "fail_dir")
    assert done.returncode != 0
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed"
    error = status["error"]
    assert error["rank"] == 1 and "injected failure" in error["message"] and error["state"] == "training_step"
    assert error["follow_on"]["rank"] == 0 and "injected failure" not in error["follow_on"]["message"]
    shown = subprocess.run([str(Path(TORCHRUN).parent / "statetrainer"), "inspect", str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=120)
    assert "FAILED on rank 1 in state training_step" in shown.stdout
