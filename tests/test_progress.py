"""ProgressBar: a bar per feed (train, valid, test), a live postfix, and prints that keep the bars whole."""

from __future__ import annotations

import io
import sys
import threading
import time
from pathlib import Path
from typing import Any

from farabio_like import TinyTrainer

from statetrainer import ProgressBar
from statetrainer._progress import PrintAboveBars, feed_bindings

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal (so the bars redraw live)."""

    def isatty(self) -> bool:
        return True


def _frames(text: str) -> list[str]:
    return [f for f in text.replace("\n", "\r").split("\r") if f.strip()]


def test_bars_for_training_validation_and_test() -> None:
    """One bar per pass over each feed, labelled, as long as the data, closed at the loop's end."""
    out = io.StringIO()
    trainer = TinyTrainer(epochs=2)
    trainer.add_callback(ProgressBar(file=out, leave=True, refresh_every=2))
    trainer.train()
    trainer.test_loader = trainer.valid_loader
    trainer.test()
    finished = [f for f in _frames(out.getvalue()) if "100%" in f]
    labels = [f.split(":")[0] for f in finished]
    assert labels == ["epoch 1/2", "valid (epoch 1)", "epoch 2/2", "valid (epoch 2)", "test"]
    assert "4/4" in finished[0] and "2/2" in finished[1] and "2/2" in finished[-1]
    assert "loss=" in finished[0] and "loss=" not in finished[1]


def test_the_postfix_shows_the_live_state_and_item() -> None:
    """On a terminal the bar redraws while a slow step runs: the postfix names that state and item."""
    out = Terminal()

    class Slow(TinyTrainer):
        def training_step(self) -> None:
            time.sleep(0.25)
            super().training_step()

    trainer = Slow(epochs=1)
    trainer.add_callback(ProgressBar(file=out, live_interval=0.05))
    trainer.train()
    frames = _frames(out.getvalue())
    assert any("state=training_step, item=2" in f for f in frames), frames
    assert not [t for t in threading.enumerate() if t.name == "statetrainer-progress"]


def test_printing_from_a_callback_clears_and_redraws_the_bars(capsys: Any) -> None:
    """print() from a hook while bars are open goes out whole, on its own line; stdout is restored after."""
    bars = Terminal()
    trainer = TinyTrainer(epochs=1)
    trainer.add_callback(ProgressBar(file=bars))
    trainer.on("on_end_training_batch", lambda t: print("loss is", t.loss.item()), once=2)
    stdout = sys.stdout
    trainer.train()
    assert sys.stdout is stdout
    printed = capsys.readouterr().out
    assert printed.startswith("loss is ") and printed.count("\n") == 1
    assert "\r" in bars.getvalue()  # the bar was cleared and redrawn around the print


def test_print_above_bars_writes_whole_lines_only() -> None:
    """A partial line waits for its newline; what is left is written when the bars go."""
    target = io.StringIO()
    printer = PrintAboveBars(target, {})
    printer.write("a")
    assert target.getvalue() == ""
    printer.write("b\nc")
    assert target.getvalue() == "ab\n"
    printer.uninstall()
    assert target.getvalue() == "ab\nc"


def test_bars_follow_the_feeds_of_any_lifecycle() -> None:
    """The accumulation example: its micro feed opens, is taken from and closes where the spec says."""
    from grad_accumulation import ACCUMULATE

    bindings = feed_bindings([ACCUMULATE])
    assert bindings["on_train_epoch_start"] == [("open", "micro")]
    assert bindings["micro_batch"] == [("take", "micro")]
    assert bindings["on_train_epoch_end"] == [("close", "micro")]
    assert feed_bindings([ACCUMULATE], only={"other"}) == {}
