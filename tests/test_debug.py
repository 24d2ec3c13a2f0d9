"""break_on: pdb stops where the trainer and the item are in scope, then inside the user's hook."""

from __future__ import annotations

import io
import pdb
from typing import Any

from farabio_like import TinyTrainer


class Hooked(TinyTrainer):
    def training_step(self) -> None:
        marker = "inside the user's training_step"  # noqa: F841 - read by the debugger
        super().training_step()


def _scripted(commands: str) -> tuple[pdb.Pdb, io.StringIO]:
    out = io.StringIO()
    debugger = pdb.Pdb(stdin=io.StringIO(commands), stdout=out)
    debugger.use_rawinput = False
    return debugger, out


def test_break_on_stops_with_trainer_and_item_in_scope_then_in_the_users_hook() -> None:
    """The first stop has trainer (as self), item, epoch and batch; 'c' stops again in the user's hook."""
    debugger, out = _scripted(
        "p type(self).__name__, self is trainer\np item[0].shape\np state, epoch, batch\nc\n"
        "n\np marker\np type(self).__name__\nc\n"
    )
    trainer = Hooked(epochs=1)
    trainer.break_on("training_step", when=lambda t: t.global_step == 2, debugger=debugger)
    trainer.train()
    text = out.getvalue()
    assert "break_on: before training_step (epoch 1, batch 1)" in text
    assert "('Hooked', True)" in text and "torch.Size([8, 3])" in text and "('training_step', 1, 1)" in text
    assert "'c' stops again in your Hooked.training_step" in text
    assert "\"inside the user's training_step\"" in text
    assert trainer.status == "finished"


def test_break_on_with_a_function_calls_it_instead_of_pdb() -> None:
    """debugger=fn is called as fn(trainer) on each entry the filter lets through."""
    seen: list[Any] = []
    trainer = TinyTrainer(epochs=2)
    trainer.break_on("on_epoch_end", debugger=lambda t: seen.append(t._epoch))
    trainer.train()
    assert seen == [1, 2]
