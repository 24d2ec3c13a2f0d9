"""Every runtime feature works on a custom lifecycle that declares the roles (issue 11).

The GAN and gradient-accumulation examples declare their epochs, feeds, batch ends and
resumable states; early stopping, per-epoch metrics, CSV rows, periodic and epoch
checkpoints, exact resume, signals, inspect and filters all follow from that.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from statetrainer import CSVLogger, EarlyStopping, TrainerRunError
from statetrainer.checkpoint import checkpoint_files
from statetrainer.roles import BATCH_END

EXAMPLES = Path(__file__).parent.parent / "examples"


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gan = _example("gan_lifecycle")
acc = _example("grad_accumulation")


class Crash(Exception):
    pass


def _weights(trainer: Any, *names: str) -> list[torch.Tensor]:
    return [p.detach().clone() for n in names for p in getattr(trainer, n).state_dict().values()]


def test_early_stopping_metrics_csv_and_checkpoints_fire_on_a_custom_lifecycle(tmp_path: Path) -> None:
    """EarlyStopping(patience=1, min_delta=1e9) stops the GAN after its second epoch; metrics close
    per epoch; CSVLogger writes a row per epoch; periodic and epoch checkpoints are written."""
    trainer = gan.GanLoop({"epochs": 6}, run_dir=tmp_path, checkpoint_every=5, checkpoint_epochs=True)
    stopper = EarlyStopping("g_loss", patience=1, min_delta=1e9)
    trainer.add_callback(stopper)
    trainer.add_callback(CSVLogger())
    seen: list[Any] = []
    trainer.on(BATCH_END, lambda t: seen.append(t.snapshot()), once=3)
    trainer.run()
    assert trainer.status == "stopped" and stopper.stopped_epoch == 2
    assert [h["epoch"] for h in trainer.metrics_history] == [1.0, 2.0]
    assert set(trainer.metrics_history[0]) == {"epoch", "d_loss", "g_loss"}
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,seconds,") and len(rows) == 3
    assert len(checkpoint_files(tmp_path / "checkpoints")) == 3  # keep_checkpoints
    snap = seen[0]
    assert (snap.lifecycle, snap.state, snap.epoch, snap.batch, snap.num_epochs) == ("gan", "on_end_training_batch", 1, 2, 6)
    assert snap.enclosing == () and snap.visits["on_start_training_batch"] == 3


def test_the_run_directory_records_the_custom_lifecycle(tmp_path: Path) -> None:
    """lifecycles.json holds the GAN spec; inspect draws the run's own lifecycle, not the built-in one;
    verify-trace checks the trace against it without --trainer."""
    from statetrainer.cli import main

    trainer = gan.GanLoop({"epochs": 1}, run_dir=tmp_path)
    trainer.run()
    data = json.loads((tmp_path / "lifecycles.json").read_text())
    assert list(data["lifecycles"])[0] == "gan" and "discriminator_loss" in {
        s["name"] for s in data["lifecycles"]["gan"]["states"]}
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["lifecycle"], status["status"], status["epoch"]) == ("gan", "finished", 1)
    out = tmp_path / "now.dot"
    assert main(["inspect", str(tmp_path), "--diagram", str(out)]) == 0
    assert "digraph Ganloop" in out.read_text() and "generator_optim_step" in out.read_text()
    assert main(["verify-trace", str(tmp_path / "trace.jsonl")]) == 0


def test_inspect_draws_a_failed_runs_state_filled_red(tmp_path: Path) -> None:
    """inspect --diagram of a failed custom run: the failing state filled red, as diagram --failed draws it."""
    from statetrainer import diagrams
    from statetrainer.cli import main

    trainer = gan.GanLoop({"epochs": 1}, run_dir=tmp_path)
    trainer.on("generator_loss", lambda t: 1 / 0)
    with pytest.raises(TrainerRunError, match="generator_loss"):
        trainer.run()
    out = tmp_path / "failed.dot"
    assert main(["inspect", str(tmp_path), "--diagram", str(out)]) == 0
    expected = diagrams.to_format(gan.GAN, "dot", failed="generator_loss", last=tuple(
        json.loads((tmp_path / "status.json").read_text())["recent"][-2:])).decode()
    assert out.read_text() == expected and "failed here" in expected


def _gan_run(run_dir: Path | None = None, crash_after: int | None = None) -> Any:
    trainer = gan.GanLoop({"epochs": 3}, run_dir=run_dir, checkpoint_every=3 if run_dir else None)
    trainer.add_callback(EarlyStopping("g_loss", patience=5))
    trainer.add_callback(CSVLogger())
    trainer.on(BATCH_END, lambda t: None, every=4)
    if crash_after is not None:
        def crash(source: str, target: str) -> None:
            if trainer.global_step > crash_after:
                raise Crash

        trainer.observe(crash)
    return trainer


def _rows(trainer: Any) -> list[dict[str, Any]]:
    csv = next(b for b in trainer._statetrainer.bundles if isinstance(b, CSVLogger))
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.rows]


def test_a_custom_lifecycle_resumes_exactly(tmp_path: Path) -> None:
    """Crashed at step 14 (mid-epoch 2; the newest periodic checkpoint is at step 12) and resumed
    from the run directory: the same states, metrics history, CSV rows and bitwise weights."""
    reference = _gan_run()
    reference.run()
    first = _gan_run(tmp_path, crash_after=13)
    with pytest.raises(TrainerRunError):
        first.run()
    torch.manual_seed(999)
    second = _gan_run(tmp_path)
    second.run(resume_from=tmp_path)
    assert [e.note for e in second.trace][0] == "resume"
    interrupted = [e.state for e in first.trace][: second.trace.entries()[0].seq]  # through the checkpointed state
    resumed = [e.state for e in second.trace][1:]
    assert interrupted + resumed == [e.state for e in reference.trace]
    assert second.metrics_history == reference.metrics_history and len(reference.metrics_history) == 3
    assert _rows(second) == _rows(reference)
    for a, b in zip(_weights(second, "netG", "netD"), _weights(reference, "netG", "netD")):
        assert torch.equal(a, b)


def test_filter_counters_resume_at_the_same_steps(tmp_path: Path) -> None:
    """every=3 fires at steps 3, 6, 9, 12 uninterrupted; interrupted after step 5 and resumed, the
    same steps (the counters are in the checkpoint)."""

    def build(run_dir: Path | None) -> tuple[Any, list[int]]:
        trainer = acc.AccumulatingTrainer({"epochs": 2, "accumulate": 1}, run_dir=run_dir,
                                          checkpoint_every=5 if run_dir else None)
        fired: list[int] = []
        trainer.on(BATCH_END, lambda t: fired.append(t.global_step), every=3)
        return trainer, fired

    reference, expected = build(None)
    reference.run()
    assert expected == [3, 6, 9, 12, 15]
    first, before = build(tmp_path)
    first.on(BATCH_END, lambda t: t.stop(), once=7)  # stop after the checkpoint at step 5, before step 6's
    first.run()
    assert before == [3, 6] and first.global_step == 7
    second, after = build(tmp_path)
    second.run(resume_from=tmp_path)  # the newest checkpoint: step 5
    assert before[:1] + after == expected


def test_a_signal_in_the_middle_of_an_accumulation_waits_for_the_optimizer_step(tmp_path: Path) -> None:
    """micro_batch is not declared resumable: SIGINT during a micro-batch stops at the next
    optimizer_step, whose checkpoint resumes to the uninterrupted weights."""
    reference = acc.build(None, epochs=2, accumulate=4)
    reference.run()
    first = acc.build(tmp_path, epochs=2, accumulate=4)
    first.on("micro_batch", lambda t: os.kill(os.getpid(), signal.SIGINT), once=6)
    first.run()
    assert first.status == "stopped" and first.stopped_by_signal == signal.SIGINT
    assert [e.state for e in first.trace][-2:] == ["optimizer_step", "on_train_end"]
    second = acc.build(tmp_path, epochs=2, accumulate=4)
    second.run(resume_from=tmp_path)
    assert torch.equal(second.model.weight, reference.model.weight) and second.steps == reference.steps


@pytest.mark.slow
def test_a_custom_lifecycle_killed_with_sigkill_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """kill -9 the GAN example's process after its first checkpoint; `--resume` in a new process ends
    with the generator an uninterrupted process ends with."""
    import subprocess
    import time

    save = ("import sys, torch; sys.argv[1:] = {args!r}; "
            "exec(compile(open({path!r}).read(), 'gan_lifecycle.py', 'exec'))")

    def run(run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
        code = save.format(args=[str(run_dir), *extra], path=str(EXAMPLES / "gan_lifecycle.py"))
        code += f"; torch.save(trainer.netG.state_dict(), {str(run_dir / 'netG.pt')!r})"
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    reference = run(tmp_path / "reference")
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err.decode()
    killed = run(tmp_path / "killed")
    deadline = time.monotonic() + 120
    while not list((tmp_path / "killed" / "checkpoints").glob("ckpt-*.pt")) and killed.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    killed.kill()
    killed.communicate()  # reap it and read its pipes to their end (no unclosed pipe)
    assert killed.returncode == -signal.SIGKILL, "the kill must land while training runs"
    resumed = run(tmp_path / "killed", "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    a = torch.load(tmp_path / "killed" / "netG.pt", weights_only=True)
    b = torch.load(tmp_path / "reference" / "netG.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_lifecycle_trainer_trains_its_own_lifecycle_and_no_built_in_one() -> None:
    """train() runs the class's lifecycle (as run() does), never farabio's built-in train
    lifecycle; states of lifecycles the class does not run are unknown to on(); test() without
    a test lifecycle says how to add one."""
    from statetrainer import UnknownStateError, lifecycles
    from statetrainer._errors import ConfigurationError

    trainer = gan.GanLoop({"epochs": 1})
    trainer.train()
    assert trainer.status == "finished" and {e.lifecycle for e in trainer.trace} == {"gan"}
    assert list(type(trainer).lifecycles()) == ["gan"]
    with pytest.raises(UnknownStateError, match="training_step"):
        trainer.on("training_step", lambda t: None)
    with pytest.raises(ConfigurationError, match=r"GanLoop has no 'test' lifecycle .*extra_lifecycles"):
        trainer.test()
    tested = type("Tested", (gan.GanLoop,), {"extra_lifecycles": {"test": lifecycles.TEST}})
    assert list(tested.lifecycles()) == ["gan", "test"]


def test_a_state_named_like_the_model_is_a_clear_error_before_the_run() -> None:
    """A custom state named like a module attribute (`model`): refused when the run starts,
    naming the collision, instead of torch's TypeError from calling the module as a hook."""
    from statetrainer import Edge, Lifecycle, LifecycleTrainer, State
    from statetrainer._errors import ConfigurationError

    spec = Lifecycle(name="m", states=(State("start"), State("model"), State("done")),
                     edges=(Edge("start", "model"), Edge("model", "done")), initial="start", finals=("done",))

    class Named(LifecycleTrainer):
        lifecycle = spec

        def build_model(self) -> None:
            self.model = torch.nn.Linear(2, 1)

    trainer = Named()
    with pytest.raises(ConfigurationError, match=r"state 'model' of lifecycle 'm': Named\.model is Linear, not a "
                                                 r"method; rename the attribute or the state"):
        trainer.run()
    assert trainer.trace.total == 0
