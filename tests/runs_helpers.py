"""Helpers for tests that run the real ``statetrainer`` command on ``tests/runs_train.py:Tiny``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).parent
STATETRAINER = str(Path(sys.executable).parent / "statetrainer")
TINY = f"{HERE / 'runs_train.py'}:Tiny"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def statetrainer(*args: str, timeout: float = 240, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``statetrainer`` command; its output as text."""
    return subprocess.run([STATETRAINER, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def tiny(run_dir: Path, *args: str, config: tuple[str, ...] = (), timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``statetrainer run tests/runs_train.py:Tiny --run-dir RUN ARGS --config ...``."""
    configs = [part for item in config for part in ("--config", item)]
    return statetrainer("run", TINY, "--run-dir", str(run_dir), *args, *configs, timeout=timeout)


def tiny_popen(run_dir: Path, *args: str, config: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """The same, started in the background."""
    configs = [part for item in config for part in ("--config", item)]
    return subprocess.Popen([STATETRAINER, "run", TINY, "--run-dir", str(run_dir), *args, *configs],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def same_weights(a: Path, b: Path) -> bool:
    """Two saved state_dicts are bitwise equal."""
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def trace(run_dir: Path) -> list[dict[str, Any]]:
    """The entries of RUN_DIR/trace.jsonl."""
    from statetrainer import tracefile

    return tracefile.read(run_dir / "trace.jsonl")


def status(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR/status.json."""
    data: dict[str, Any] = json.loads((run_dir / "status.json").read_text())
    return data


def tree(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its content hash and mtime (to show nothing changed).

    ``.lock`` is left out: it is the directory's mutex, and every writer that takes it notes
    its pid there (a refused --resume takes it before it reads the checkpoint).
    """
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != ".lock":
            out[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """Assert the command failed with ``code`` and exactly one line on stderr, no traceback; return it."""
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    err = done.stderr
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("statetrainer: "), err
    return err.strip()
