"""The demo states and sets its torch threads (its result and speed depend on them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from statetrainer import demo
from statetrainer._errors import ConfigurationError
from statetrainer.cli import main


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_demo_prints_its_thread_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """statetrainer demo runs on DEFAULT_THREADS threads unless told, and says so first."""
    assert main(["demo", "--epochs", "0", "--run-dir", str(tmp_path / "run")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"torch threads: {demo.DEFAULT_THREADS} (the demo's default; --threads N to change it)"
    assert torch.get_num_threads() == demo.DEFAULT_THREADS


def test_a_thread_count_from_the_config_is_used_and_checked() -> None:
    """config['threads'] sets torch's threads; a bad value is a clear error."""
    assert demo.set_threads(2) == 2 and demo.threads_line(2) == "torch threads: 2 (set by --threads)"
    with pytest.raises(ConfigurationError, match=r"threads must be an int >= 1, got 0"):
        demo.set_threads(0)
