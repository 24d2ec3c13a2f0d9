"""Compound hooks keep working when overridden or called directly, and show in the trace."""

from __future__ import annotations

from typing import Any

from recording import Config, Oracle, RecordingTrainer

from statetrainer import lifecycles


def test_evaluate_epoch_called_from_a_hook_runs_nested() -> None:
    """self.evaluate_epoch() from on_train_end runs a whole evaluation at depth 1."""

    class EvalAtEnd(RecordingTrainer):
        def on_train_end(self) -> None:
            super().on_train_end()
            self.evaluate_epoch()

    cfg = Config(num_epochs=1, batches=1, valid_items=2, has_eval=False)
    trainer = EvalAtEnd(cfg)
    trainer.train()
    names = [c[0] for c in trainer.calls]
    assert names[names.index("on_train_end"):] == [
        "on_train_end", "on_evaluate_epoch_start", "on_evaluate_batch_start", "evaluate_batch",
        "on_evaluate_batch_end", "on_evaluate_batch_start", "evaluate_batch", "on_evaluate_batch_end",
        "on_evaluate_epoch_end",
    ]
    nested = [e for e in trainer.trace if e.depth == 1]
    assert nested[0].state == "evaluate_epoch" and nested[-1].state == "on_evaluate_epoch_end"
    assert {e.lifecycle for e in nested} == {"evaluate"}
    assert trainer.status == "finished"


def test_train_batch_override_gan_style() -> None:
    """An overridden train_batch(args) is called once per item with the item, farabio style."""

    class Gan(RecordingTrainer):
        def train_batch(self, args: Any) -> None:
            self.on_start_training_batch(args)
            self.calls.append(("discriminator_step",))
            self.calls.append(("generator_step",))
            self.on_end_training_batch()

    cfg = Config(num_epochs=2, batches=3, has_eval=False)
    trainer = Gan(cfg)
    trainer.train()
    names = [c[0] for c in trainer.calls]
    assert names.count("discriminator_step") == 6 and "training_step" not in names
    starts = [c[1] for c in trainer.calls if c[0] == "on_start_training_batch"]
    assert starts == [("train", e, i) for e in (1, 2) for i in range(3)]
    states = [e.state for e in trainer.trace]
    assert "on_start_training_batch" not in states and states.count("train_batch") == 2
    assert trainer.global_step == 6


def test_train_batch_override_calling_super_traces_the_body() -> None:
    """super().train_batch(args) runs one pass through the compound as a nested run (depth 1),
    entering the compound state first, as every direct compound call does."""

    class Wrapped(RecordingTrainer):
        def train_batch(self, args: Any) -> None:
            self.calls.append(("before",))
            super().train_batch(args)

    cfg = Config(num_epochs=1, batches=2, has_eval=False)
    trainer = Wrapped(cfg)
    trainer.train()
    expected = Oracle(cfg).train()
    got = [c for c in trainer.calls if c != ("before",)]
    assert got == expected
    nested = [e.state for e in trainer.trace if e.depth == 1]
    assert nested == ["train_batch", "on_start_training_batch", "training_step", "on_end_training_batch"] * 2
    assert [e.batch for e in trainer.trace if e.depth == 1] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_train_epoch_override_per_epoch_like_farabio() -> None:
    """An overridden train_epoch is called once per epoch with _epoch set."""

    class MyEpoch(RecordingTrainer):
        def train_epoch(self) -> None:
            self.calls.append(("my_epoch", self._epoch))

    trainer = MyEpoch(Config(num_epochs=3, start_epoch=2))
    trainer.train()
    assert trainer.calls == [("on_train_start",), ("start_logger",), ("my_epoch", 2), ("my_epoch", 3), ("on_train_end",)]


def test_train_loop_override_calling_train_epoch_directly() -> None:
    """farabio's own train_loop shape: for self._epoch in range(...): self.train_epoch()."""

    class MyLoop(RecordingTrainer):
        def train_loop(self) -> None:
            for self._epoch in range(self._start_epoch, self._num_epochs + 1):  # noqa: B020 - farabio's idiom
                self.train_epoch()

    cfg = Config(num_epochs=2, batches=2, valid_items=1)
    trainer = MyLoop(cfg)
    trainer.train()
    assert trainer.calls == Oracle(cfg).train()
    assert {e.depth for e in trainer.trace if e.state == "on_train_epoch_start"} == {1}


def test_evaluate_epoch_override_replaces_evaluation() -> None:
    """An overridden evaluate_epoch runs where evaluation is due; no evaluation states."""

    class MyEval(RecordingTrainer):
        def evaluate_epoch(self) -> None:
            self.calls.append(("my_eval", self._epoch))

    trainer = MyEval(Config(num_epochs=4, eval_interval=2, batches=0))
    trainer.train()
    assert [c for c in trainer.calls if c[0] == "my_eval"] == [("my_eval", 2), ("my_eval", 4)]
    assert not set(lifecycles.TRAIN.region_states("evaluate")) & {e.state for e in trainer.trace}


def test_test_loop_override_and_nested_test_from_a_hook() -> None:
    """test_loop can be overridden; test() from on_train_end runs the test lifecycle nested."""

    class Both(RecordingTrainer):
        def test_loop(self) -> None:
            self.calls.append(("my_test_loop",))

        def on_train_end(self) -> None:
            super().on_train_end()
            self.test()

    trainer = Both(Config(num_epochs=1, batches=1, has_eval=False))
    trainer.train()
    assert [c[0] for c in trainer.calls][-5:] == ["on_train_end", "load_model", "on_test_start", "my_test_loop", "on_test_end"]
    assert trainer.status == "finished"


def test_an_override_without_super_still_gets_periodic_checkpoints(tmp_path: Any) -> None:
    """train_batch overridden farabio-style (no super(): no batch_end state runs):
    checkpoint_every is still honoured, at the next resumable state (the epoch's end), and a
    resume from it ends with the uninterrupted run's weights."""
    import torch
    from farabio_like import TinyTrainer

    from statetrainer import checkpoint as ck

    class Own(TinyTrainer):
        def train_batch(self, args: Any) -> None:
            self.on_start_training_batch(args)
            self.training_step()

    trainer = Own(epochs=2, run_dir=tmp_path / "run", checkpoint_every=3)
    trainer.train()
    found = [ck.read_checkpoint(p) for p in ck.checkpoint_files(tmp_path / "run" / "checkpoints")]
    steps = sorted(int(d["position"]["global_step"]) for d in found)
    assert steps and steps[0] == 4 and all(d["state"] == "on_train_epoch_end" for d in found if
                                           d["position"]["global_step"] < 8), steps
    first = next(p for p in ck.checkpoint_files(tmp_path / "run" / "checkpoints")
                 if ck.read_checkpoint(p)["position"]["global_step"] == 4)
    resumed = Own(epochs=2)
    resumed.train(resume_from=first)
    for a, b in zip(resumed.model.state_dict().values(), trainer.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
