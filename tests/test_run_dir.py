"""Run directories are identities (issue 12): a run id everywhere, one writer, no accidental
reuse of another run's or another program's folder, paths relative to the folder, file
modes that respect the umask. CLI cases run the real ``statetrainer`` command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from pathlib import Path

import pytest
import torch
from runs_helpers import one_line_error, same_weights, status, tiny, tiny_popen, trace, tree

from statetrainer import checkpoint as ck
from statetrainer import rundir
from statetrainer.rundir import RunDirError

pytestmark = pytest.mark.slow


def test_every_file_of_a_run_names_its_run_id(tmp_path: Path) -> None:
    """run.json, status.json, every trace line, every checkpoint's name and payload: one id."""
    run = tmp_path / "run"
    assert tiny(run, "--checkpoint-every", "2", config=("epochs=2",)).returncode == 0
    run_id = json.loads((run / "run.json").read_text())["run_id"]
    assert len(run_id) == 32 and status(run)["run_id"] == run_id
    assert {row["run_id"] for row in trace(run)} == {run_id}
    files = ck.checkpoint_files(run / "checkpoints")
    assert files and all(p.name.startswith(f"ckpt-{run_id}-") for p in files)
    assert all(ck.read_checkpoint(p)["run_id"] == run_id for p in files)
    assert "run_dir" not in json.loads((run / "run.json").read_text()), "no path to the folder inside it"


def test_a_fresh_run_in_another_runs_folder_is_refused_and_overwrite_replaces_it(tmp_path: Path) -> None:
    """The issue's case: a longer earlier run's folder. Without --resume or --overwrite: one line
    naming the run, nothing written. With --overwrite: the new run's checkpoints are its own,
    never pruned for the old run's, and a stopped + resumed new run ends with its own weights."""
    old, reference = tmp_path / "x", tmp_path / "reference"
    assert tiny(old, "--checkpoint-every", "2", config=("epochs=3",)).returncode == 0
    assert tiny(reference, "--checkpoint-every", "2", config=("epochs=1",)).returncode == 0
    old_id = status(old)["run_id"]
    before = tree(old)
    err = one_line_error(tiny(old, "--checkpoint-every", "2", config=("epochs=1",)))
    assert f"{old} holds run {old_id[:8]}… (Tiny, epoch 3 of 3, finished): pass --resume to continue it or " \
           f"--overwrite to replace it" in err
    assert tree(old) == before, "nothing written or deleted"
    stale = tmp_path / "stale.pt"
    shutil.copy(ck.checkpoint_files(old / "checkpoints")[-1], stale)  # a longer run's checkpoint

    stopped = tiny(old, "--checkpoint-every", "2", "--overwrite", config=("epochs=1", "signal_at=training_step:3:SIGINT"))
    assert stopped.returncode == 130, stopped.stderr
    new_id = status(old)["run_id"]
    assert new_id != old_id
    foreign = old / "checkpoints" / f"ckpt-{old_id}-000000999-000000009999.pt"
    shutil.copy(stale, foreign)  # another run's newest file: neither chosen nor pruned
    done = tiny(old, "--resume")
    assert done.returncode == 0, done.stderr
    assert same_weights(old / "model.pt", reference / "model.pt"), "resumed the new run, not the old one"
    assert foreign.exists() and all(p.name.startswith(f"ckpt-{new_id}") for p in
                                    ck.checkpoint_files(old / "checkpoints", new_id))


def test_python_api_refuses_another_runs_folder_unless_overwrite(tmp_path: Path) -> None:
    """ConvnetTrainer(run_dir=...) the same: refused when the run starts, before anything is
    written; overwrite=True replaces the old run; test() after training joins the run's record."""
    from runs_train import Tiny

    first = Tiny({"epochs": 1}, run_dir=tmp_path)
    first.train()
    first_id = status(tmp_path)["run_id"]
    before = tree(tmp_path)
    with pytest.raises(RunDirError, match=r"holds run .*\(Tiny, epoch 1 of 1, finished\): pass --resume .*"
                                          r"train\(resume_from=.*\), or overwrite=True to the trainer's constructor"):
        Tiny({"epochs": 1}, run_dir=tmp_path).train()
    assert tree(tmp_path) == before
    tester = Tiny({"epochs": 1}, run_dir=tmp_path)
    tester.test()  # a test of the trained model, in its run directory: the same run
    assert status(tmp_path)["run_id"] == first_id and status(tmp_path)["lifecycle"] == "test"
    second = Tiny({"epochs": 1}, run_dir=tmp_path, overwrite=True)
    second.train()
    assert status(tmp_path)["run_id"] not in (None, first_id)
    assert {row["run_id"] for row in trace(tmp_path)} == {status(tmp_path)["run_id"]}, "the old trace is gone"


def test_a_non_empty_folder_of_another_program_is_refused(tmp_path: Path) -> None:
    """A folder with someone else's files (their model.pt among them): refused with one line,
    nothing overwritten; --overwrite writes into it and keeps their other files."""
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"their model")
    (folder / "notes.txt").write_text("keep me")
    before = tree(folder)
    err = one_line_error(tiny(folder, config=("epochs=1",)))
    assert f"{folder} is not empty (model.pt, notes.txt) and holds no statetrainer run" in err and "--overwrite" in err
    assert tree(folder) == before and not (folder / ".lock").exists()
    from runs_train import Tiny

    with pytest.raises(RunDirError, match="is not empty .* overwrite=True"):
        Tiny({"epochs": 1}, run_dir=folder).train()
    assert tree(folder) == before
    assert tiny(folder, "--overwrite", config=("epochs=1",)).returncode == 0
    assert (folder / "notes.txt").read_text() == "keep me" and (folder / "model.pt").read_bytes() != b"their model"


def test_a_second_writer_is_refused_naming_the_first_and_readers_never_lock(tmp_path: Path) -> None:
    """While a run writes its folder, a second --resume gets one line naming the writer's pid;
    inspect reads meanwhile; the first run finishes untouched."""
    run, go_on = tmp_path / "run", tmp_path / "go-on"
    first = tiny_popen(run, "--checkpoint-every", "1", config=(f"wait_for={go_on}", "epochs=2"))
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob("ckpt-*.pt")):  # the first run now waits in its third step
        assert first.poll() is None and time.monotonic() < deadline, "the first run never checkpointed"
        time.sleep(0.01)
    second = tiny(run, "--resume")
    err = one_line_error(second)
    assert f"{run} is being written by process {first.pid} (it holds .lock)" in err
    from runs_helpers import statetrainer

    assert statetrainer("inspect", str(run)).returncode == 0
    go_on.touch()
    out, errs = first.communicate(timeout=180)
    assert first.returncode == 0, errs[-3000:]
    assert status(run)["status"] == "finished" and not list((run / "checkpoints").glob(".*.tmp"))


def test_the_lock_is_released_when_the_writer_dies(tmp_path: Path) -> None:
    """SIGKILL the writer: the operating system drops its lock, and --resume continues the run."""
    run = tmp_path / "run"
    go_on = tmp_path / "go-on"
    proc = tiny_popen(run, "--checkpoint-every", "1", config=(f"wait_for={go_on}", "epochs=2"))
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob("ckpt-*.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # reaps it and closes its pipes
    go_on.touch()  # the resumed run must not wait in its third step
    done = tiny(run, "--resume")
    assert done.returncode == 0, done.stderr


def test_a_copied_folder_resumes_into_itself_and_a_moved_one_resumes(tmp_path: Path) -> None:
    """Stop a run, copy its folder: the copy's resume writes only into the copy (the original is
    unchanged) and ends with the uninterrupted weights; a moved folder resumes the same."""
    original, reference = tmp_path / "original", tmp_path / "reference"
    assert tiny(reference, "--checkpoint-every", "2", config=("epochs=2",)).returncode == 0
    stopped = tiny(original, "--checkpoint-every", "2", config=("epochs=2", "signal_at=on_end_training_batch:5:SIGTERM"))
    assert stopped.returncode == 143, stopped.stderr
    copy, moved = tmp_path / "copy", tmp_path / "elsewhere" / "moved"
    shutil.copytree(original, copy)
    before = tree(original)
    done = tiny(copy, "--resume")
    assert done.returncode == 0, done.stderr
    assert tree(original) == before, "the original is untouched"
    assert same_weights(copy / "model.pt", reference / "model.pt")
    moved.parent.mkdir()
    shutil.move(str(original), moved)
    done = tiny(moved, "--resume")
    assert done.returncode == 0, done.stderr
    assert same_weights(moved / "model.pt", reference / "model.pt")


def test_model_and_checkpoint_files_respect_the_umask(tmp_path: Path) -> None:
    """0o666 less the umask (0644 by default, 0664 for a group-shared umask), not mkstemp's 0600."""
    from runs_train import Tiny

    previous = os.umask(0o002)
    try:
        trainer = Tiny({"epochs": 1}, run_dir=tmp_path / "shared", checkpoint_every=3)
        trainer.train()
        os.umask(0o022)
        written = ck.atomic_write(tmp_path / "plain.pt", lambda f: torch.save({}, f))
    finally:
        os.umask(previous)
    files = [tmp_path / "shared" / "model.pt", *ck.checkpoint_files(tmp_path / "shared" / "checkpoints")]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o664 for p in files), [oct(p.stat().st_mode) for p in files]
    assert stat.S_IMODE(written.stat().st_mode) == 0o644


def test_held_run_describes_what_the_folder_says(tmp_path: Path) -> None:
    """The refusal's description comes from status.json, then run.json, then checkpoint names."""
    assert rundir.held_run(tmp_path) is None
    run_id = rundir.new_run_id()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / rundir.checkpoint_name(run_id, 12, 40)).write_bytes(b"")
    held = rundir.held_run(tmp_path)
    assert held is not None and held.run_id == run_id and held.describe() == f"run {run_id[:8]}… (unknown trainer)"
    (tmp_path / "status.json").write_text(json.dumps({"trainer": "m:MyTrainer", "epoch": 7, "num_epochs": 20,
                                                      "status": "stopped", "run_id": run_id}))
    held = rundir.held_run(tmp_path)
    assert held is not None and held.describe() == f"run {run_id[:8]}… (MyTrainer, epoch 7 of 20, stopped)"
