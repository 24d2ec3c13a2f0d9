"""What :class:`~statetrainer.ProgressBar` needs: where the feeds' loops are, live bars, printing.

* :func:`feed_bindings`: the states where each feed's bar opens (``opens=``), advances
  (``takes=``) and closes (``closes=``, or where the feed's loop exits), read from the specs.
* :func:`live_bar`: a tqdm bar whose postfix is computed when it is drawn — the live state
  and item — and :class:`Refresher`, which redraws the bars every so often on a terminal.
* :class:`PrintAboveBars`: standard output routed through tqdm while bars are open, so a
  ``print()`` in a hook clears the bars, prints, and redraws them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from statetrainer import _structure
from statetrainer.spec import Feed, Lifecycle

_ORDER = {"close": 0, "open": 1, "take": 2}


def feed_bindings(specs: Iterable[Lifecycle], only: set[str] | None = None) -> dict[str, list[tuple[str, str]]]:
    """``state -> [(action, feed)]`` with action ``open``, ``take`` or ``close``, closes first."""
    out: dict[str, set[tuple[str, str]]] = {}
    for spec in specs:
        for s in spec.states:
            for action, feed in (("open", s.opens), ("take", s.takes), ("close", s.closes)):
                if feed is not None and (only is None or feed in only):
                    out.setdefault(s.name, set()).add((action, feed))
        for loop in _structure.loops(spec):
            if loop.feed is None or (only is not None and loop.feed.name not in only):
                continue
            for e in _structure.flow_edges(spec):
                if e.source in loop.body and e.target not in loop.body:
                    out.setdefault(e.target, set()).add(("close", loop.feed.name))
    return {state: sorted(actions, key=lambda a: (_ORDER[a[0]], a[1])) for state, actions in out.items()}


def feed_length(trainer: Any, feed: Feed | None) -> int | None:
    """How many items the pass will have: ``len`` of the iterable a hook set, else of the loader."""
    if feed is None:
        return None
    for attr in (feed.iterable, feed.loader):
        source = getattr(trainer, attr, None) if attr else None
        if source is None:
            continue
        try:
            return len(source)
        except TypeError:
            continue
    return None


def describe(trainer: Any, feed: str, spec: Feed | None) -> str:
    """The bar's label: ``epoch 3/12`` for the training feed, ``valid (epoch 3)``, ``test``."""
    rt = trainer._statetrainer
    epoch = rt.driver.position.epoch
    running = rt.spec
    if spec is not None and spec.counts_steps and running is not None and running.with_role("epoch_start"):
        return f"epoch {epoch}/{getattr(trainer, running.epochs.total, '?')}"
    return f"{feed} (epoch {epoch})" if epoch is not None and running is not None and running.with_role(
        "epoch_start") else feed


def postfix(trainer: Any, bar: Any, loss: str) -> str:
    """``state=training_step, item=12, loss=0.4321``: read when the bar is drawn."""
    state = trainer._statetrainer.driver.position.state_name
    text = f"state={state}, item={getattr(bar, 'n', 0)}"
    return text + (f", loss={loss}" if loss else "")


def live_bar(*, live: Callable[[Any], str], **kwargs: Any) -> Any:
    """A tqdm bar (``tqdm.auto``) whose postfix is ``live(bar)`` at each redraw."""
    return _bar_class()(dynamic_ncols=True, live=live, **kwargs)


_BAR: Any = None


def _bar_class() -> Any:
    global _BAR
    if _BAR is None:
        from tqdm.auto import tqdm

        class LiveBar(tqdm):  # type: ignore[misc, valid-type]
            """tqdm with a postfix computed at display time."""

            def __init__(self, *args: Any, live: Callable[[Any], str], **kwargs: Any) -> None:
                self._live = live
                super().__init__(*args, **kwargs)

            @property
            def format_dict(self) -> Any:
                data = super().format_dict
                try:
                    data["postfix"] = self._live(self)
                except Exception:  # noqa: BLE001 (a bar must never break a run)
                    pass
                return data

        _BAR = LiveBar
    return _BAR


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):
        return False


class Refresher:
    """Redraws the open bars every ``interval`` seconds, from a daemon thread, until stopped."""

    def __init__(self, bars: dict[str, Any], interval: float) -> None:
        self.bars, self.interval = bars, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statetrainer-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            for bar in list(self.bars.values()):
                try:
                    bar.refresh()
                except Exception:  # noqa: BLE001 (a bar closed meanwhile)
                    pass

    def stop(self) -> None:
        """Stop redrawing (waits for the thread)."""
        self._stopped.set()
        self._thread.join(timeout=5)


class PrintAboveBars:
    """Standard output while bars are open: whole lines are written with the bars cleared, then redrawn."""

    def __init__(self, wrapped: Any, bars: dict[str, Any]) -> None:
        self._wrapped, self._bars = wrapped, bars
        self._buffer = ""

    @classmethod
    def install(cls, bars: dict[str, Any]) -> PrintAboveBars:
        """Replace ``sys.stdout`` with a printer above ``bars``."""
        printer = cls(sys.stdout, bars)
        sys.stdout = printer
        return printer

    def uninstall(self) -> None:
        """Flush what is left and put the original ``sys.stdout`` back (unless someone replaced ours)."""
        if self._buffer:
            self._wrapped.write(self._buffer)
            self._buffer = ""
        if sys.stdout is self:
            sys.stdout = self._wrapped

    def write(self, text: str) -> int:
        self._buffer += text
        if "\n" in self._buffer:
            lines, _, self._buffer = self._buffer.rpartition("\n")
            self._write_clear(lines + "\n")
        return len(text)

    def _write_clear(self, text: str) -> None:
        from tqdm.auto import tqdm

        bars = list(self._bars.values())
        with tqdm.get_lock():
            for bar in bars:
                bar.clear(nolock=True)
            self._wrapped.write(text)
            self._wrapped.flush()
            for bar in bars:
                bar.refresh(nolock=True)

    def flush(self) -> None:
        self._wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)
