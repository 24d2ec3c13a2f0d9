"""farabio's GanTrainer on the runtime: ports by its import line, follows farabio's loops, resumes.

The oracle is farabio's GanTrainer ``train()``/``evaluate_epoch()`` written as plain nested
loops, independently of the machine: the hook order of a lifecycle that is not the
seed's is property-checked against it, as the built-in train lifecycle is.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from farabio_gan_like import PointGanTrainer
from hypothesis import given
from hypothesis import strategies as st

from statetrainer import GanTrainer, TrainerRunError, lifecycles

STEPS = list(lifecycles.GAN_STEPS)
HERE = Path(__file__).parent


def test_a_farabio_gan_trainer_ports_by_changing_its_import() -> None:
    """The trainer's source imports GanTrainer from statetrainer and nothing else of it; it trains:
    per batch the discriminator's four steps then the generator's, evaluation every epoch with
    on_evaluate_batch_start() given no item, and test() loads the model."""
    source = (HERE / "farabio_gan_like.py").read_text()
    assert [line for line in source.splitlines() if "statetrainer" in line and "import" in line] == [
        "from statetrainer import GanTrainer  # farabio: from farabio.core.gantrainer import GanTrainer"]
    trainer = PointGanTrainer({"num_epochs": 2, "tqdm_iter": True})
    before = [p.clone() for p in trainer.netG.parameters()]
    trainer.train()
    states = [e.state for e in trainer.trace]
    first = states.index("on_start_training_batch")
    assert states[first : first + 10] == ["on_start_training_batch", *STEPS, "on_end_training_batch"]
    assert states.count("generator_optim_step") == 2 * 6 and states.count("on_evaluate_epoch_end") == 2
    assert trainer.epoch == 2 and trainer.last_epoch_seen == 2 and trainer.valing["batches"] == 2
    assert len(trainer.results["g_loss"]) == 2
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.netG.parameters()))
    trainer.test_loader = trainer.valid_loader
    trainer.test()
    assert trainer.loaded and [e.state for e in trainer.trace][-1] == "on_test_end"


def test_a_gan_trainer_must_define_its_losses() -> None:
    """farabio's GanTrainer declares the two losses abstract: running without them says which."""

    class NoLoss(PointGanTrainer):
        discriminator_loss = GanTrainer.discriminator_loss

    with pytest.raises(TrainerRunError, match=r"NoLoss.discriminator_loss\(\): a GanTrainer must define"):
        NoLoss({"num_epochs": 1}).train()


# -- the hook order against farabio's loops --------------------------------------------

TRAIN_HOOKS = ["on_train_start", "start_logger", "on_train_epoch_start", "on_start_training_batch", *STEPS,
               "on_end_training_batch", "on_train_epoch_end", "on_evaluate_epoch_start",
               "on_evaluate_batch_start", "evaluate_batch", "on_evaluate_batch_end", "on_evaluate_epoch_end",
               "on_epoch_end", "on_train_end"]


@dataclass(frozen=True)
class GanConfig:
    num_epochs: int = 2
    start_epoch: int = 1
    batches: int = 2
    valid_items: int = 1
    has_eval: bool = True
    stop_at: tuple[str, int, int] | None = None  # (hook, epoch, batch or -1)


class _Stop(Exception):
    pass


@dataclass
class GanOracle:
    """farabio's GanTrainer.train() as plain loops; a stop means: next is on_train_end."""

    cfg: GanConfig
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    epoch: int = -1

    def emit(self, hook: str, *args: Any, batch: int = -1) -> None:
        self.calls.append((hook, *args))
        if self.cfg.stop_at == (hook, self.epoch, batch):
            raise _Stop

    def train(self) -> list[tuple[Any, ...]]:
        c = self.cfg
        try:
            self.emit("on_train_start")
            self.emit("start_logger")
            for self.epoch in range(c.start_epoch, c.num_epochs + 1):
                self.emit("on_train_epoch_start")
                for i in range(c.batches):
                    self.emit("on_start_training_batch", ("train", self.epoch, i), batch=i)
                    for step in STEPS:
                        self.emit(step, batch=i)
                    self.emit("on_end_training_batch", batch=i)
                self.emit("on_train_epoch_end")
                if c.has_eval:
                    self.emit("on_evaluate_epoch_start")
                    for i in range(c.valid_items):
                        self.emit("on_evaluate_batch_start", batch=i)
                        self.emit("evaluate_batch", ("valid", self.epoch, i), batch=i)
                        self.emit("on_evaluate_batch_end", batch=i)
                    self.emit("on_evaluate_epoch_end")
                self.emit("on_epoch_end")
            self.emit("on_train_end")
        except _Stop:
            if self.calls[-1] != ("on_train_end",):
                self.calls.append(("on_train_end",))
        return self.calls


class _Items:
    def __init__(self, owner: Any, kind: str, count: int) -> None:
        self.owner, self.kind, self.count = owner, kind, count

    def __iter__(self) -> Any:
        return iter([(self.kind, self.owner.epoch, i) for i in range(self.count)])


def _recorder(hook: str) -> Any:
    def record(self: Any, *args: Any) -> None:
        self.calls.append((hook, *args))
        batch = self._batch if hook in self.IN_BATCH else -1
        if self.cfg.stop_at == (hook, getattr(self, "epoch", -1), batch):
            self.stopped = True
            self.stop_train()
    return record


class RecordingGan(GanTrainer):
    """Records every hook call; the batch index comes from the item, as the oracle's does."""

    IN_BATCH = {"on_start_training_batch", *STEPS, "on_end_training_batch",
                "on_evaluate_batch_start", "evaluate_batch", "on_evaluate_batch_end"}

    def __init__(self, cfg: GanConfig) -> None:
        self.cfg, self.calls, self._batch, self.stopped = cfg, [], -1, False
        super().__init__({})

    def define_train_attr(self) -> None:
        self._num_epochs, self._start_epoch, self._has_eval = (
            self.cfg.num_epochs, self.cfg.start_epoch, self.cfg.has_eval)

    def get_trainloader(self) -> None:
        self.train_loader = _Items(self, "train", self.cfg.batches)
        self.valid_loader = _Items(self, "valid", self.cfg.valid_items)
        self._valid_seen = 0

    def on_start_training_batch(self, args: Any) -> None:
        self._batch = args[2]
        _recorder("on_start_training_batch")(self, args)

    def on_evaluate_epoch_start(self) -> None:
        self._valid_seen = 0
        _recorder("on_evaluate_epoch_start")(self)

    def on_evaluate_batch_start(self) -> None:
        self._batch, self._valid_seen = self._valid_seen, self._valid_seen + 1
        _recorder("on_evaluate_batch_start")(self)

    def on_train_epoch_start(self) -> None:
        self._batch = -1
        _recorder("on_train_epoch_start")(self)

    def on_train_epoch_end(self) -> None:
        self._batch = -1
        _recorder("on_train_epoch_end")(self)


for _hook in TRAIN_HOOKS:
    if _hook not in vars(RecordingGan):
        setattr(RecordingGan, _hook, _recorder(_hook))


STOPPABLE = ["on_train_start", "on_train_epoch_start", "on_start_training_batch", "discriminator_backward",
             "generator_optim_step", "on_end_training_batch", "on_evaluate_batch_start", "evaluate_batch",
             "on_epoch_end"]


@given(
    st.integers(0, 3), st.integers(1, 2), st.integers(0, 3), st.integers(0, 2), st.booleans(),
    st.one_of(st.none(), st.tuples(st.sampled_from(STOPPABLE), st.integers(1, 3), st.integers(-1, 2))),
)
def test_gan_hook_order_matches_farabios_loops(
    epochs: int, start: int, batches: int, valid: int, has_eval: bool, stop: tuple[str, int, int] | None
) -> None:
    """For random epochs, start epoch, batches, validation items, evaluation on/off and stops
    from any hook: the hooks called are exactly the oracle's, and the trace is a path."""
    from statetrainer.testing import check_trace

    cfg = GanConfig(epochs, start, batches, valid, has_eval, stop)
    trainer = RecordingGan(cfg)
    trainer.train()
    assert trainer.calls == GanOracle(cfg).train()
    assert check_trace(trainer.trace, GanTrainer.lifecycles()) is None
    assert trainer.status == ("stopped" if trainer.stopped else "finished")


# -- resume ---------------------------------------------------------------------------


class Crash(Exception):
    pass


def test_an_interrupted_and_resumed_gan_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """Crashed mid-epoch 2 after a periodic checkpoint, resumed in a fresh trainer: the same loss
    history (attributes), the same states, bitwise weights of both networks (shuffling, dropout)."""
    reference = PointGanTrainer({"num_epochs": 3})
    reference.train()
    first = PointGanTrainer({"num_epochs": 3}, run_dir=tmp_path, checkpoint_every=4)

    def crash(source: str, target: str) -> None:
        if first.global_step == 10 and target == "discriminator_loss":
            raise Crash

    first.observe(crash)
    with pytest.raises(TrainerRunError):
        first.train()
    torch.manual_seed(4321)
    second = PointGanTrainer({"num_epochs": 3})
    second.train(resume_from=tmp_path)
    assert second.results == reference.results and second.epoch == 3
    resume = second.trace.entries()[0]
    assert resume.note == "resume" and (resume.state, resume.epoch) == ("on_end_training_batch", 2)
    assert [e.state for e in first.trace][: resume.seq] + [e.state for e in second.trace][1:] == [
        e.state for e in reference.trace]
    for net in ("netG", "netD"):
        for a, b in zip(getattr(second, net).state_dict().values(), getattr(reference, net).state_dict().values()):
            assert torch.equal(a, b)


@pytest.mark.slow
def test_a_gan_killed_with_sigkill_resumes_to_the_same_generator(tmp_path: Path) -> None:
    """kill -9 a real GanTrainer process after its first checkpoint; --resume in a new process ends
    with the generator weights of an uninterrupted process."""
    script = [sys.executable, str(HERE / "farabio_gan_like.py")]
    reference = tmp_path / "reference"
    subprocess.run([*script, str(reference)], check=True, capture_output=True, timeout=300)
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([*script, str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((run_dir / "checkpoints").glob("ckpt-*.pt")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reap it and read its pipes to their end (no unclosed pipe)
    assert proc.returncode == -signal.SIGKILL, "the kill must land while training runs"
    done = subprocess.run([*script, str(run_dir), "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a = torch.load(run_dir / "netG.pt", weights_only=True)
    b = torch.load(reference / "netG.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
