"""``statetrainer explain``: the hook order as nested loops, generated from the machine.

The printed order is checked against real runs (the order in which a run first enters each
state, on the built-in, GAN and custom lifecycles) and against the independent oracle of
``recording.py`` (farabio's loops written by hand).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from recording import Config, Oracle, RecordingTrainer

from statetrainer import explain, lifecycles
from statetrainer.cli import main

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def _first_entries(trace: object) -> list[str]:
    return list(dict.fromkeys(e.state for e in trace))  # type: ignore[attr-defined]


@pytest.mark.parametrize("cfg", [
    Config(num_epochs=1, batches=1, valid_items=1),
    Config(num_epochs=3, batches=2, valid_items=2),
    Config(num_epochs=2, batches=3, valid_items=2, set_iterables=True),
])
def test_the_printed_order_is_the_order_a_run_enters_the_states(cfg: Config) -> None:
    """A real train run first enters the states in exactly the printed order; test() likewise
    (minus the branch of the choice not taken)."""
    trainer = RecordingTrainer(cfg)
    trainer.train()
    assert _first_entries(trainer.trace) == explain.hook_order(lifecycles.TRAIN)
    trainer.test()
    tested = _first_entries(e for e in trainer.trace if e.lifecycle == "test")
    assert tested == [s for s in explain.hook_order(lifecycles.TEST) if s != "load_parallel_model"]


def test_the_printed_hooks_are_the_oracles_calls_for_one_epoch_and_one_batch() -> None:
    """The hooks (compound states aside) in the printed order are farabio's calls for one of each item."""
    cfg = Config(num_epochs=1, batches=1, valid_items=1, test_items=1)
    hooks = [s for s in explain.hook_order(lifecycles.TRAIN) if not lifecycles.TRAIN.state(s).compound]
    assert hooks == [call[0] for call in Oracle(cfg).train()]
    test_hooks = [s for s in explain.hook_order(lifecycles.TEST)
                  if not lifecycles.TEST.state(s).compound and s != "load_parallel_model"]
    assert test_hooks == [call[0] for call in Oracle(cfg).test()]


def test_gan_and_custom_lifecycles_print_the_order_they_run() -> None:
    """GanTrainer's eight steps per batch and the accumulation example's micro-batch loop."""
    from farabio_gan_like import PointGanTrainer
    from grad_accumulation import ACCUMULATE, AccumulatingTrainer

    gan = PointGanTrainer({"num_epochs": 1})
    gan.train()
    assert _first_entries(gan.trace) == explain.hook_order(lifecycles.GAN_TRAIN)
    accumulating = AccumulatingTrainer({"epochs": 1, "accumulate": 2})
    accumulating.run()
    assert _first_entries(accumulating.trace) == explain.hook_order(ACCUMULATE)
    text = explain.explain(ACCUMULATE)
    assert "    for item in self.train_loader:" in text
    assert "        if not step_due and has_next_batch: continue" in text


def test_the_text_shows_loops_guards_roles_and_requests() -> None:
    """Loops over feeds and epochs, the eval_due branch, no_grad, _next_loop, roles, requests, overrides."""
    text = explain.explain(lifecycles.TRAIN)
    for line in (
        "        for self._epoch in range(self._start_epoch, self._num_epochs + 1):",
        "                    for item in self.train_epoch_iter or self.train_loader:",
        "                        on_start_training_batch(item)",
        "                if eval_due:",
        "                    with torch.no_grad():",
        "                                if self._next_loop: continue",
        "    on_train_end()",
    ):
        assert line + "\n" in text or line + " " in text, line
    assert '# loop "_num_epochs"' in text and "# epoch opens, opens train" in text and "# batch end" in text
    assert "#   stop()        -> on_train_end" in text
    assert "train_loop, train_epoch,\n#   train_batch, evaluate_epoch" in text
    test = explain.explain(lifecycles.TEST)
    assert "    if data_parallel:" in test and "    else:\n        load_model()" in test


def test_explain_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """explain LIFECYCLE prints the text; --trainer takes a GanTrainer or a file's class;
    diagram --format text is the same; a wrong name gets a did-you-mean."""
    assert main(["explain"]) == 0
    assert capsys.readouterr().out == explain.explain(lifecycles.TRAIN)
    assert main(["diagram", "test", "--format", "text"]) == 0
    assert capsys.readouterr().out == explain.explain(lifecycles.TEST)
    assert main(["explain", "train", "--trainer", "statetrainer:GanTrainer"]) == 0
    out = capsys.readouterr().out
    assert "(statetrainer:GanTrainer)" in out and "discriminator_zero_grad()" in out
    assert "for self.epoch in range" in out and "on_evaluate_batch_start()  " in out
    target = f"{ROOT}/examples/grad_accumulation.py:AccumulatingTrainer"
    assert main(["explain", "accumulate", "--trainer", target]) == 0
    assert "micro_batch(item)" in capsys.readouterr().out
    assert main(["explain", "tset"]) == 2
    assert "did you mean 'test'" in capsys.readouterr().err
    # a custom trainer: its own main lifecycle by default; the built-in ones are not its
    assert main(["explain", "--trainer", target]) == 0
    assert capsys.readouterr().out.startswith(f"# lifecycle 'accumulate' ({target})")
    assert main(["diagram", "train", "--format", "text", "--trainer", target]) == 2
    assert f"unknown lifecycle 'train' (the lifecycles of {target}: accumulate)" in capsys.readouterr().err
