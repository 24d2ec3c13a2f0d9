"""Control requests are data; compound hooks honour their pass; the user's namespace is theirs.

Each test here reproduces a defect of 0.1 (issue 11) and fails on it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from statetrainer import (
    ConfigurationError,
    ConvnetTrainer,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ProgressBar,
    TrainerRunError,
)
from statetrainer import checkpoint as ck


class Small(ConvnetTrainer):
    """A tiny regression trainer: 4 batches per epoch, 2 validation batches."""

    def __init__(self, epochs: int = 3, **kw: Any) -> None:
        self.epochs = epochs
        self.steps: list[int] = []
        super().__init__({}, **kw)

    def define_train_attr(self) -> None:
        self._num_epochs = self.epochs

    def get_trainloader(self) -> None:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, 3, generator=g), torch.randn(32, 1, generator=g)
        self.train_loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
        self.valid_loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 16, 8)]
        self.test_loader = self.valid_loader

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    def on_start_training_batch(self, args: Any) -> None:
        self.x, self.y = args

    def training_step(self) -> None:
        self.optimizer_zero_grad()
        self.loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        self.loss_backward()
        self.optimizer_step()
        self.steps.append(self.global_step)
        self.log("train_loss", self.loss)

    def evaluate_batch(self, args: Any) -> None:
        self.log("valid_loss", torch.nn.functional.mse_loss(self.model(args[0]), args[1]))


def _kill_self(sig: int) -> Any:
    return lambda t: os.kill(os.getpid(), sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_not_lost_when_a_checkpoint_is_due_at_the_same_boundary(tmp_path: Path, sig: int) -> None:
    """checkpoint_every=1 and epoch checkpoints on: a signal in training_step still stops the run at
    that batch's end, with one checkpoint there (0.1 trained to the end, then said 'stopped')."""
    t = Small(epochs=5, run_dir=tmp_path, checkpoint_every=1, checkpoint_epochs=True)
    t.on("training_step", _kill_self(sig), once=6)
    t.train()
    assert t.status == "stopped" and t.stopped_by_signal == sig and t.global_step == 6
    _, data = ck.latest_good(tmp_path / "checkpoints")
    assert (data["state"], data["position"]["global_step"]) == ("on_end_training_batch", 6)
    assert [e.state for e in t.trace][-2:] == ["on_end_training_batch", "on_train_end"]


def test_two_requests_at_one_boundary_both_happen(tmp_path: Path) -> None:
    """An explicit save_checkpoint(path) and the epoch checkpoint at the same epoch end: both files."""
    t = Small(epochs=2, run_dir=tmp_path, checkpoint_epochs=True)
    t.on("on_epoch_end", lambda tr: tr.save_checkpoint(tmp_path / "mine.pt"), once=1)
    t.train()
    assert ck.read_checkpoint(tmp_path / "mine.pt")["state"] == "on_epoch_end"
    epochs = [ck.read_checkpoint(p)["position"]["epoch"] for p in ck.checkpoint_files(tmp_path / "checkpoints")]
    assert epochs == [1, 2]


def test_save_checkpoint_from_a_state_with_an_item_in_flight_waits_for_the_batch_end(tmp_path: Path) -> None:
    """training_step is not resumable: the checkpoint is written after on_end_training_batch."""
    t = Small(epochs=1)
    t.on("training_step", lambda tr: tr.save_checkpoint(tmp_path / "ck.pt"), once=2)
    t.train()
    data = ck.read_checkpoint(tmp_path / "ck.pt")
    assert (data["state"], data["position"]["batch"]) == ("on_end_training_batch", 1)


def test_save_checkpoint_in_a_lifecycle_without_resumable_states_is_refused(tmp_path: Path) -> None:
    """test() declares no resumable state: save_checkpoint() there says so instead of never writing."""
    t = Small(epochs=0)
    t.on("test_step", lambda tr: tr.save_checkpoint(tmp_path / "x.pt"))
    with pytest.raises(TrainerRunError, match=r"lifecycle 'test' declares no resumable state"):
        t.test()
    assert not (tmp_path / "x.pt").exists()


def test_super_train_batch_reuses_its_program() -> None:
    """super().train_batch(args) builds its pass once, not once per batch (0.1 rebuilt and
    re-fingerprinted the spec on every call: 53x the plain trainer)."""
    from statetrainer import _program

    built: list[str | None] = []
    original = _program.Builder.build

    def counting(self: Any) -> Any:
        built.append(self.scope)
        return original(self)

    class Wrapped(Small):
        def train_batch(self, args: Any) -> None:
            super().train_batch(args)

    _program.Builder.build = counting  # type: ignore[method-assign]
    try:
        trainer = Wrapped(epochs=3)
        trainer.train()
    finally:
        _program.Builder.build = original  # type: ignore[method-assign]
    assert trainer.global_step == 12 and trainer.steps == list(range(1, 13))
    assert built.count("train_batch") == 1 and len(built) == 2


def test_compound_hooks_called_outside_a_run_honour_their_return_point() -> None:
    """train_epoch() runs one epoch (0.1 never terminated); train_batch(x) runs one batch
    (0.1 ran the rest of training)."""
    t = Small(epochs=5)
    t._epoch = 2
    t.train_epoch()
    assert t.steps == [1, 2, 3, 4] and t._epoch == 2 and t.status == "finished"
    assert [e.state for e in t.trace if e.state == "on_epoch_end"] == ["on_epoch_end"]
    t.train_batch(t.train_loader[0])
    assert t.steps == [1, 2, 3, 4, 5] and t.status == "finished"
    assert [e.state for e in t.trace][-4:] == ["train_batch", "on_start_training_batch", "training_step",
                                               "on_end_training_batch"]


def test_after_a_failure_in_a_nested_run_the_state_is_the_failing_one() -> None:
    """A failure inside self.evaluate_epoch() called from a hook: trainer.state == error.state."""

    class Nested(Small):
        def on_epoch_end(self) -> None:
            self.evaluate_epoch()

        def evaluate_batch(self, args: Any) -> None:
            raise ValueError("bad batch")

    t = Nested(epochs=1)
    t._has_eval = False
    with pytest.raises(TrainerRunError) as info:
        t.train()
    assert info.value.state == "evaluate_batch" and t.state == "evaluate_batch" and t.status == "failed"


def test_a_bundle_registers_all_or_nothing() -> None:
    """A bundle whose second method is rejected leaves nothing registered (0.1 kept half)."""

    class Half:
        def on_train_start(self, trainer: Any) -> None:
            pass

        def on_train_end(self) -> None:  # cannot take the trainer
            pass

    t = Small()
    with pytest.raises(TypeError, match=r"Half.on_train_end for 'on_train_end' cannot be called as fn\(trainer\)"):
        t.add_callback(Half())
    assert t._statetrainer.registry.all() == [] and t._statetrainer.bundles == []
    with pytest.raises(TypeError, match=r"add_callback\(\) takes a callback bundle"):
        t.add_callback(lambda tr: None)
    with pytest.raises(TypeError, match=r"object has no method named after a state"):
        t.add_callback(object())


def test_on_exception_callbacks_honour_their_filters() -> None:
    """on_exception with once=2 fires on the trainer's second failure only (0.1 ignored every/once/when)."""
    seen: list[str] = []

    class Failing(Small):
        def on_train_start(self) -> None:
            raise RuntimeError("boom")

    t = Failing()
    t.on("on_exception", lambda tr, err: seen.append(type(err.__cause__).__name__), once=2)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(TrainerRunError, match="boom"):
            t.train()
    assert seen == ["RuntimeError"]


def test_a_non_callable_item_hook_is_a_clear_error() -> None:
    """A hook that is not a method is named (0.1 raised UnboundLocalError from its own code)."""

    class Broken(Small):
        evaluate_batch = 3  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=r"state 'evaluate_batch' of lifecycle 'train': Broken.evaluate_batch is int, not a method"):
        Broken().train()


def test_an_observer_error_names_the_observer() -> None:
    """0.1 blamed observer errors on 'guard of the next transition'."""

    def watcher(source: str, target: str) -> None:
        if target == "training_step":
            raise KeyError("watcher broke")

    t = Small()
    t.observe(watcher)
    with pytest.raises(TrainerRunError) as info:
        t.train()
    assert "observer" in info.value.callback and "watcher" in info.value.callback


def test_a_trainer_attribute_named_like_a_statetrainer_method_keeps_working(tmp_path: Path) -> None:
    """farabio's YOLOv3 sets self.metrics = [...] in define_log_attr: the built-in callbacks read the
    runtime, not trainer.metrics(), so they keep working (0.1: 'list' object is not callable)."""

    class Yolo(Small):
        def define_log_attr(self) -> None:
            self.metrics = ["precision", "recall", "mAP"]

    t = Yolo(epochs=2, run_dir=tmp_path)
    t.add_callback(EarlyStopping("valid_loss", patience=5))
    t.add_callback(ModelCheckpoint(monitor="valid_loss"))
    t.add_callback(CSVLogger())
    t.add_callback(ProgressBar(file=open(os.devnull, "w")))  # noqa: SIM115 - closed with the process
    t.train()
    assert t.metrics == ["precision", "recall", "mAP"]
    assert (tmp_path / "checkpoints" / "best.pt").exists() and (tmp_path / "metrics.csv").exists()
    assert len(t.metrics_history) == 2


def test_setting_a_read_only_statetrainer_attribute_fails_at_construction_naming_it() -> None:
    """self.state is the live state: a subclass assigning it is told so when it is built."""

    class Shadow(Small):
        def define_misc_attr(self) -> None:
            self.state = "mine"

    with pytest.raises(ConfigurationError, match=r"Shadow sets self.state, but state is statetrainer's"):
        Shadow()
