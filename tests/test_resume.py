"""Exact resume: interrupted + resumed == uninterrupted (hook calls, trace, bitwise weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from statetrainer import CheckpointError, ConvnetTrainer, TrainerRunError


class Crash(Exception):
    pass


class Dropouty(ConvnetTrainer):
    """Shuffling DataLoader, dropout, momentum: every source of nondeterminism resume must restore."""

    def __init__(self, generator: bool, enumerate_iter: bool, **kw: Any) -> None:
        self.use_generator, self.enumerate_iter = generator, enumerate_iter
        self.calls: list[str] = []
        self.seen = 0
        super().__init__({}, **kw)

    def define_train_attr(self) -> None:
        self._num_epochs = 3

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(48, 4, generator=g), torch.randn(48, 1, generator=g)
        gen = torch.Generator().manual_seed(7) if self.use_generator else None
        self.train_loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=gen)
        self.valid_loader = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.9)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.calls.append("on_train_epoch_start")
        if self.enumerate_iter:
            self.train_epoch_iter = enumerate(self.train_loader)

    def on_start_training_batch(self, args: Any) -> None:
        # with a hook-made enumerate(loader), farabio's batch index is part of what resume restores
        self.calls.append(f"on_start_training_batch:{args[0]}" if self.enumerate_iter else "on_start_training_batch")
        self.x, self.y = args[1] if self.enumerate_iter else args

    def training_step(self) -> None:
        self.calls.append("training_step")
        self.optimizer_zero_grad()
        self.loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()
        self.seen += len(self.x)
        self.log("loss", self.loss)

    def evaluate_batch(self, args: Any) -> None:
        self.calls.append("evaluate_batch")
        self.log("val", torch.nn.functional.mse_loss(self.model(args[0]), args[1]))

    def on_epoch_end(self) -> None:
        self.calls.append(f"on_epoch_end:{self.metrics()['loss']:.6f}")
        self.scheduler.step()

    def on_train_end(self) -> None:
        self.calls.append("on_train_end")


BOUNDARIES = st.one_of(
    st.tuples(st.just("on_end_training_batch"), st.integers(1, 17)),
    st.tuples(st.just("on_epoch_end"), st.integers(1, 2)),
    st.tuples(st.just("on_evaluate_batch_end"), st.integers(1, 5)),
    st.tuples(st.just("on_train_epoch_start"), st.integers(1, 3)),
)


def _interrupt(trainer: Dropouty, state: str, nth: int, path: Path) -> None:
    """Checkpoint at the end of the nth entry of ``state``, then crash before the next state."""
    trainer.on(state, lambda t: t.save_checkpoint(path), once=nth, order=10**6)

    def crash(source: str, target: str) -> None:
        if path.exists():
            raise Crash

    trainer.observe(crash)


# Resumed after epoch 1's last optimizer step (from an evaluation state), the new process steps the
# restored scheduler at on_epoch_end before its own optimizer has stepped: torch warns about an order
# that is right across the two processes (the checkpoint restored both; the weights are compared below).
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`:UserWarning")
@settings(max_examples=25, deadline=None)
@given(BOUNDARIES, st.booleans(), st.booleans())
def test_interrupted_plus_resumed_equals_uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, boundary: tuple[str, int], generator: bool, enum: bool
) -> None:
    """For random interruption points: same hook calls, same trace (one resume entry), same weights."""
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    reference = Dropouty(generator, enum)
    reference.train()

    first = Dropouty(generator, enum)
    _interrupt(first, *boundary, path)
    with pytest.raises(TrainerRunError) as info:
        first.train()
    assert isinstance(info.value.__cause__, Crash)

    torch.manual_seed(12345)  # a fresh process would have other RNG states: resume must restore them
    second = Dropouty(generator, enum)
    second.train(resume_from=path)

    # the trainer's own attributes (its list of calls, `seen`) are in the checkpoint: the
    # resumed trainer continues the interrupted one's list
    assert second.calls == reference.calls
    states = [e.state for e in first.trace] + [e.state for e in second.trace if e.note != "resume"]
    assert states == [e.state for e in reference.trace]
    resumes = [e for e in second.trace if e.note == "resume"]
    assert len(resumes) == 1 and resumes[0].state == boundary[0] and second.trace.entries()[0].note == "resume"
    assert [e.seq for e in second.trace][0] == len(list(first.trace)), "the resume entry continues the numbering"
    for a, b in zip(second.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)
    assert second.seen == reference.seen and second.status == "finished"


def test_checkpoint_of_another_trainer_lists_what_differs(tmp_path: Path) -> None:
    """Resuming another trainer's checkpoint names the differences."""
    path = tmp_path / "ck.pt"
    t = Dropouty(False, False)
    t.on("on_epoch_end", lambda tr: tr.save_checkpoint(path), once=1)
    t.train()

    class Other(Dropouty):
        def build_model(self) -> None:
            super().build_model()
            del self.scheduler

    with pytest.raises(CheckpointError, match=r"trainer: checkpoint 'Dropouty', this one .*Other.*\n.*stateful attributes: missing here \['scheduler'\]"):
        Other(False, False).train(resume_from=path)


def test_corrupt_checkpoint_is_named_and_run_dir_falls_back(tmp_path: Path) -> None:
    """A truncated file: clear error naming it; resuming a run dir falls back to the previous good one."""
    t = Dropouty(False, False, run_dir=tmp_path, checkpoint_every=4, keep_checkpoints=3)
    t.train()
    files = sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))
    assert len(files) == 3
    files[-1].write_bytes(files[-1].read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"checkpoint '{files[-1]}' is truncated or corrupt"):
        Dropouty(False, False).train(resume_from=files[-1])
    with pytest.warns(RuntimeWarning, match="falling back to the previous checkpoint"):
        Dropouty(False, False).train(resume_from=tmp_path)


def test_newer_format_and_not_a_checkpoint(tmp_path: Path) -> None:
    """A newer format version and a foreign file are refused clearly."""
    from statetrainer import checkpoint as ck

    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        ck.read_checkpoint(tmp_path / "x.pt")
    torch.save({"format": ck.FORMAT, "version": ck.VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer than this statetrainer reads"):
        ck.read_checkpoint(tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        ck.latest_good(tmp_path)


def test_atomic_write_never_replaces_a_good_file_on_failure(tmp_path: Path) -> None:
    """A writer that fails midway leaves the previous file intact and no temp file behind."""
    from statetrainer.checkpoint import atomic_write

    target = tmp_path / "model.pt"
    target.write_bytes(b"good")

    def half(f: Any) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_sigint_stops_at_the_batch_end_with_a_checkpoint_and_a_second_aborts(tmp_path: Path) -> None:
    """First SIGINT mid-batch: the batch finishes, a checkpoint is written there, the run stops
    gracefully; a second SIGINT during the stop aborts at once."""
    import os
    import signal

    import structlog

    from statetrainer import checkpoint as ck

    t = Dropouty(False, False, run_dir=tmp_path)
    t.on("training_step", lambda tr: os.kill(os.getpid(), signal.SIGINT), once=3)
    with structlog.testing.capture_logs() as logs:
        t.train()
    assert t.status == "stopped" and t.stopped_by_signal == signal.SIGINT
    # train() returns: a warning says the run was stopped, not finished, and how to resume it
    said = [e for e in logs if e["event"] == "run_stopped"]
    assert len(said) == 1 and said[0]["log_level"] == "warning" and said[0]["signal"] == "SIGINT"
    assert said[0]["resume"] == "train(resume_from=RUN_DIR)" and said[0]["global_step"] == 3
    assert [e.state for e in t.trace][-2:] == ["on_end_training_batch", "on_train_end"]
    _, data = ck.latest_good(tmp_path / "checkpoints")
    assert data["state"] == "on_end_training_batch" and data["position"]["global_step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the previous handler is restored"

    again = Dropouty(False, False)
    again.on("training_step", lambda tr: os.kill(os.getpid(), signal.SIGINT), once=2)
    again.on("on_train_end", lambda tr: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        again.train()
    assert again.status == "failed"


def test_a_checkpoint_of_an_edited_lifecycle_is_refused(tmp_path: Path) -> None:
    """Same trainer class and state names, but the lifecycle's edges changed since the checkpoint
    (two control edges swapped: another priority): resuming it is refused, naming the lifecycle."""
    from statetrainer import lifecycles
    from statetrainer.spec import Lifecycle

    path = tmp_path / "ck.pt"
    t = Dropouty(False, False)
    t.on("on_epoch_end", lambda tr: tr.save_checkpoint(path), once=1)
    t.train()
    data = lifecycles.TRAIN.to_dict()
    edges = data["edges"]
    first, second = next((i, j) for i, a in enumerate(edges) for j, b in enumerate(edges)
                         if i < j and a["kind"] == b["kind"] == "control" and a["source"] == b["source"])
    edges[first], edges[second] = edges[second], edges[first]
    edited = Lifecycle.from_dict(data)
    assert edited.state_names == lifecycles.TRAIN.state_names
    assert edited.fingerprint() != lifecycles.TRAIN.fingerprint()

    class Edited(Dropouty):
        @classmethod
        def lifecycles(cls) -> dict[str, Lifecycle]:
            return {**Dropouty.lifecycles(), "train": edited}

    with pytest.raises(CheckpointError, match=r"lifecycle 'train' differs \(states, roles or edges changed\)"):
        Edited(False, False).train(resume_from=path)


def test_a_state_timer_may_be_added_or_left_out_on_resume(tmp_path: Path) -> None:
    """StateTimer (what --profile adds) is checkpointed but optional: a resume with or without
    it is accepted; any other checkpointed callback must match."""
    from statetrainer import EarlyStopping, StateTimer

    path = tmp_path / "ck.pt"
    t = Dropouty(False, False)
    t.add_callback(StateTimer())
    t.on("on_epoch_end", lambda tr: tr.save_checkpoint(path), once=1)
    t.train()
    plain = Dropouty(False, False)
    plain.train(resume_from=path)
    assert plain.status == "finished"
    timed = Dropouty(False, False)
    timer = StateTimer()
    timed.add_callback(timer)
    timed.train(resume_from=path)
    assert timer.visits["training_step"] == 18  # the checkpointed table went on: 3 epochs of 6
    other = Dropouty(False, False)
    other.add_callback(EarlyStopping("loss"))
    with pytest.raises(CheckpointError, match=r"callbacks differ: checkpoint \['StateTimer'\]"):
        other.train(resume_from=path)
