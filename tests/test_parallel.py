"""Data parallel on PyTorch's own engine: real torchrun, two processes, gloo on CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "ddp_train.py"
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"


def _torchrun(out: Path, scenario: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(out), scenario],
        capture_output=True, text=True, timeout=timeout,
    )


def test_two_ranks_train_identically_and_match_one_process(tmp_path: Path) -> None:
    """Both ranks: same trace, DDP-wrapped, DistributedSampler; weights equal; = one process, global batch 16."""
    done = _torchrun(tmp_path, "ok")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["states"] == ranks[1]["states"] and ranks[0]["status"] == "finished"
    assert all(r["data_parallel"] and r["wrapped"] == "DistributedDataParallel" for r in ranks)
    assert all(r["sampler"] == "DistributedSampler" and r["world"] == 2 for r in ranks)
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    single = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "single"], capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    ws = torch.load(tmp_path / "rank0-single.pt", weights_only=True)
    for k in w0:  # DDP averages the two shards' gradients: the same step as batch 16, up to rounding
        torch.testing.assert_close(w0[k], ws[k], rtol=1e-5, atol=1e-6)


def test_a_failure_on_one_rank_fails_both_promptly(tmp_path: Path) -> None:
    """An exception on rank 1 ends the job with an error naming the rank, not a hang."""
    started = time.monotonic()
    done = _torchrun(tmp_path, "fail", timeout=180)
    assert done.returncode != 0
    assert time.monotonic() - started < 120
    assert "injected failure" in done.stderr and "rank 1" in done.stderr


def test_a_stop_on_one_rank_stops_all_at_the_epoch_end(tmp_path: Path) -> None:
    """stop() on rank 0 only: the ranks agree at the epoch end and stop together."""
    done = _torchrun(tmp_path, "stop")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["states"] == ranks[1]["states"]
    assert ranks[0]["status"] == ranks[1]["status"] == "stopped"
    assert ranks[0]["states"].count("on_train_epoch_start") == 2


def test_build_parallel_model_without_torchrun_falls_back_with_a_warning() -> None:
    """Outside torchrun the plain model is trained, with a RuntimeWarning saying why."""
    from statetrainer import ConvnetTrainer

    class Plain(ConvnetTrainer):
        def define_compute_attr(self) -> None:
            self._data_parallel = True

        def build_model(self) -> None:
            self.model = torch.nn.Linear(2, 1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Plain({})
    assert isinstance(trainer.model, torch.nn.Linear)
    assert any("not launched by torchrun" in str(w.message) for w in caught)


def test_nccl_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for NCCL on a machine without CUDA names the problem and the fix."""
    from statetrainer import ConfigurationError, parallel

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError, match="backend 'nccl' needs CUDA.*use backend='gloo'"):
        parallel.init_process_group("nccl")


def test_the_demo_runs_under_torchrun_and_inspect_shows_it_finished(tmp_path: Path) -> None:
    """torchrun --nproc_per_node 2 -m statetrainer demo finishes; rank 0 wrote the run directory."""
    run = tmp_path / "run"
    done = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "statetrainer", "demo", "--epochs", "2",
         "--quiet", "--run-dir", str(run)], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy:") == 1, "only rank 0 prints"
    status = subprocess.run([sys.executable, "-m", "statetrainer", "inspect", str(run), "--json"],
                            capture_output=True, text=True, check=True)
    data = json.loads(status.stdout)
    assert data["status"] == "finished" and (run / "model.pt").is_file()
    from statetrainer import tracefile

    trace = [e["state"] for e in tracefile.read(run / "trace.jsonl")]
    assert trace.count("on_train_epoch_start") == 2
