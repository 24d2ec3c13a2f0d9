"""Inspecting runs: snapshots, observers, the run directory, debug aids, logging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from farabio_like import TinyTrainer
from recording import Config, RecordingTrainer

from statetrainer import TrainerRunError, UnknownStateError
from statetrainer.cli import main


def test_snapshot_is_frozen_and_says_where() -> None:
    """Inside evaluate_batch the snapshot names the enclosing compounds, epoch and batch."""
    t = TinyTrainer(epochs=2)
    seen: list[Any] = []
    t.on("evaluate_batch", lambda tr: seen.append(tr.snapshot()), once=3)
    assert t.snapshot().status == "idle"
    t.train()
    snap = seen[0]
    assert (snap.lifecycle, snap.state, snap.epoch, snap.batch, snap.status) == ("train", "evaluate_batch", 2, 0, "running")
    assert snap.enclosing == ("train", "train_loop", "train_epoch", "evaluate_epoch")
    assert snap.visits["training_step"] == 8 and snap.num_epochs == 2 and snap.batches == 4
    with pytest.raises(AttributeError, match="can't set attribute"):
        snap.state = "x"  # type: ignore[misc]
    assert t.snapshot().status == "finished" and t.snapshot().metrics.keys() == {"train_loss", "val_loss"}


def test_observers_see_every_transition_and_cannot_steer() -> None:
    """observe(fn) gets (source, target) for each transition; its return value is ignored."""
    t = RecordingTrainer(Config(num_epochs=1, batches=2))
    pairs: list[tuple[str, str]] = []
    t.observe(lambda a, b: pairs.append((a, b)) or "stop")
    t.train()
    states = [e.state for e in t.trace]
    assert pairs == list(zip(states, states[1:]))
    with pytest.raises(TypeError, match="cannot be called as fn"):
        t.observe(lambda a: None)


def test_observers_and_the_transition_log_see_the_transitions_after_a_stop() -> None:
    """After stop() in training_step, the observers still get the last transition (to on_train_end),
    and with log_transitions each transition of the run, that one too, is logged."""
    t = RecordingTrainer(Config(num_epochs=2, batches=3))
    t.on("training_step", lambda tr: tr.stop(), once=2)
    pairs: list[tuple[str, str]] = []
    t.observe(lambda a, b: pairs.append((a, b)))
    t.log_transitions = True
    with structlog.testing.capture_logs() as logs:
        t.train()
    states = [e.state for e in t.trace]
    assert states[-3:] == ["on_start_training_batch", "training_step", "on_train_end"] and t.status == "stopped"
    assert pairs == list(zip(states, states[1:]))
    assert [(e["source"], e["target"]) for e in logs if e["event"] == "transition_taken"] == pairs


def test_status_file_is_never_partial_while_a_run_writes_it(tmp_path: Path) -> None:
    """A reader hammering status.json during a run that rewrites it constantly always parses it."""
    t = TinyTrainer(epochs=100, run_dir=tmp_path, status_interval=0.0)
    worker = threading.Thread(target=t.train)
    worker.start()
    reads, steps = 0, set()
    while worker.is_alive() or reads < 50:
        try:
            text = (tmp_path / "status.json").read_text()
        except FileNotFoundError:
            continue
        data = json.loads(text)  # a partial file would fail to parse here
        reads += 1
        steps.add(data["global_step"])
    worker.join()
    assert t.status == "finished"
    assert reads >= 50 and len(steps) > 10, (reads, len(steps))


def test_post_mortem_shows_where_it_died(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """After a crash, inspect shows the failing state, callback, epoch, batch and traceback."""
    t = TinyTrainer(epochs=3, run_dir=tmp_path)
    t.on("training_step", lambda tr: 1 / 0, when=lambda tr: tr._epoch == 2 and tr.snapshot().batch == 2)
    with pytest.raises(TrainerRunError, match=r"ZeroDivisionError: division by zero\n  raised in lifecycle 'train', state 'training_step'"):
        t.train()
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "status     failed" in out
    assert "FAILED in state training_step (callback" in out and "epoch 2, batch 2" in out
    assert "ZeroDivisionError: division by zero" in out


def test_inspect_refuses_foreign_and_broken_status(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A status.json not written by statetrainer, or unreadable: one-line errors."""
    (tmp_path / "status.json").write_text('{"state": "x"}')
    assert main(["inspect", str(tmp_path)]) == 2
    assert "was not written by statetrainer" in capsys.readouterr().err
    (tmp_path / "status.json").write_text("{not json")
    assert main(["inspect", str(tmp_path)]) == 2
    assert "is unreadable" in capsys.readouterr().err


@pytest.mark.slow
def test_live_status_from_another_process(tmp_path: Path) -> None:
    """While the demo trains in a subprocess, `statetrainer inspect --json` reports it running."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "statetrainer", "demo", "--quiet", "--epochs", "500",
                             "--run-dir", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-m", "statetrainer", "inspect", str(run), "--json"],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                data = json.loads(out.stdout)
                if data["status"] == "running" and (data["epoch"] or 0) >= 2:
                    break
            time.sleep(0.2)
        assert data["status"] == "running" and data["lifecycle"] == "train" and data["epoch"] >= 2
        assert data["state"] and "batch" in data and data["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 143


def test_break_on_calls_the_debugger_before_the_hook() -> None:
    """break_on(state, when=...) enters the given debugger on entry, before the hook method."""
    t = RecordingTrainer(Config(num_epochs=2, batches=1))
    hits: list[tuple[int, int]] = []
    t.break_on("training_step", when=lambda tr: tr._epoch == 2, debugger=lambda tr: hits.append((tr._epoch, len(tr.calls))))
    t.train()
    assert len(hits) == 1
    epoch, calls_before = hits[0]
    assert epoch == 2 and t.calls[calls_before][0] == "training_step"
    with pytest.raises(UnknownStateError, match="did you mean 'training_step'"):
        t.break_on("trainig_step")


def test_sigusr1_dumps_snapshot_and_stacks_without_stopping(tmp_path: Path) -> None:
    """SIGUSR1 writes the snapshot and every thread's stack; the run goes on."""
    t = TinyTrainer(epochs=2, run_dir=tmp_path)
    t.on("training_step", lambda tr: os.kill(os.getpid(), signal.SIGUSR1), once=3)
    t.train()
    assert t.status == "finished"
    dump = (tmp_path / "dumps.txt").read_text()
    assert "state='training_step'" in dump and "--- Thread" in dump and "test_inspect.py" in dump


def test_logging_events_with_bound_context() -> None:
    """run_started / epoch_finished / run_finished are logged with the run's context."""
    t = TinyTrainer(epochs=2)
    with structlog.testing.capture_logs() as logs:
        t.train()
    events = [e["event"] for e in logs]
    assert events == ["run_started", "epoch_finished", "epoch_finished", "run_finished"]
    epoch = logs[1]
    assert epoch["log_level"] == "info" and epoch["trainer"] == "TinyTrainer" and "val_loss" in epoch
    t.log_transitions = True
    before = t.trace.total
    with structlog.testing.capture_logs() as logs:
        t.train()
    taken = [e for e in logs if e["event"] == "transition_taken"]
    assert len(taken) == t.trace.total - before - 1
    assert {e["log_level"] for e in taken} == {"debug"} and taken[0]["source"] == "train"


def test_cli_writes_events_jsonl_and_profile(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The CLI configures JSON lines in RUN_DIR/events.jsonl; --profile prints a state table."""
    assert main(["demo", "--epochs", "1", "--quiet", "--profile", "--run-dir", str(tmp_path / "r")]) == 0
    events = [json.loads(line)["event"] for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    assert events[0] == "run_started" and "epoch_finished" in events and events[-1] == "run_finished"
    out = capsys.readouterr().out
    assert "training_step" in out and "share" in out


def test_library_writes_events_jsonl_without_configuring_structlog(tmp_path: Path) -> None:
    """A trainer with a run_dir appends its events to RUN_DIR/events.jsonl; global config untouched."""
    before = structlog.get_config()
    TinyTrainer(epochs=2, run_dir=tmp_path).train()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["run_started", "epoch_finished", "epoch_finished", "run_finished"]
    assert events[1]["level"] == "info" and events[1]["trainer"] == "TinyTrainer" and "val_loss" in events[1]
    assert structlog.get_config() == before


def test_inspect_says_why_a_run_stopped_and_shows_no_empty_seconds(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """An early-stopped run: inspect names the reason (not just 'stopped', which reads like a
    Ctrl-C); without a StateTimer the state table has visits and no column of zero seconds."""
    from farabio_like import TinyTrainer

    from statetrainer import EarlyStopping
    from statetrainer.cli import main

    trainer = TinyTrainer(epochs=5, run_dir=tmp_path)
    trainer.add_callback(EarlyStopping("val_loss", patience=1, min_delta=1e9))
    trainer.train()
    assert trainer.status == "stopped"
    capsys.readouterr()
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stopped by EarlyStopping: val_loss did not improve for 1 epoch" in out, out
    assert "seconds" not in out and "training_step" in out


def test_the_batch_names_the_pass_it_counts() -> None:
    """During an evaluation the batch index is the validation pass's: the snapshot names that
    feed and its length (batches stays the training steps' count, for progress and ETA), and the
    text says 'of valid'; during training it is the training pass's."""
    from farabio_like import TinyTrainer

    from statetrainer.inspect import format_status

    trainer = TinyTrainer(epochs=1)
    seen: dict[str, Any] = {}
    trainer.on("on_end_training_batch", lambda t: seen.setdefault("train", t.snapshot()))
    trainer.on("evaluate_batch", lambda t: seen.__setitem__("valid", t.snapshot()))
    trainer.train()
    train, valid = seen["train"], seen["valid"]
    assert (train.feed, train.feed_items, train.batches, train.step_feed) == ("train", 4, 4, "train")
    assert (valid.feed, valid.batch, valid.feed_items, valid.batches, valid.step_feed) == ("valid", 1, 2, 4, "train")
    assert "batch 1/2 of valid" in format_status(valid.to_json())
    assert "batch 0/4" in format_status(train.to_json())
