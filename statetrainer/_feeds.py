"""The data feeds a lifecycle loops over, with one item of lookahead.

A feed's loop guard (``has_next_batch``) asks the feed for another item; the state that
``takes`` from the feed takes it. The iterable is resolved lazily, on the first question
of each pass, so hooks can set it (``self.train_epoch_iter = enumerate(self.train_loader)``
in ``on_train_epoch_start``); otherwise the feed's loader is used. Torch-free: the
runtime hands in ``capture_rng`` when it wants the RNG state at the moment a loader's
iterator is created (a resume replays it to get the same data order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from statetrainer._errors import ConfigurationError
from statetrainer.spec import Feed

UNFETCHED: Any = object()
EXHAUSTED: Any = object()


class FeedState:
    """One feed's live data: the open iterator, the lookahead item, how many were taken.

    ``active`` is true from the state that opens the feed until the pass is closed; with
    ``exhausted`` false, a checkpoint taken meanwhile must re-open the data on resume.
    ``open_rng`` is the RNG state the pass's iterator was created with. ``blocked`` (a
    pass handed one item) keeps the feed from opening its iterable.
    """

    __slots__ = (
        "spec", "hint", "iterator", "peek", "item", "taken", "blocked", "skip_on_open", "opener",
        "active", "open_rng", "capture_rng", "from_hook",
    )

    def __init__(self, spec: Feed, opened_in: str | None = None, hint: str | None = None) -> None:
        self.spec = spec
        parts = [f"set self.{spec.loader}"] if spec.loader else []
        if spec.iterable:
            when = f" before the loop (the feed opens at {opened_in})" if opened_in else ""
            parts.append(f"self.{spec.iterable} in a hook{when}")
        self.hint = hint or (", or ".join(parts) if len(parts) == 2 else parts[0] if parts else "")
        self.item: Any = None
        self.blocked = False
        self.active = False
        self.open_rng: Any = None
        self.capture_rng: Callable[[Any], Any] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the iterator: the next question opens the iterable anew."""
        self.iterator: Iterator[Any] | None = None
        self.peek: Any = UNFETCHED
        self.taken = 0
        self.skip_on_open = 0
        self.opener: Callable[[], Iterator[Any]] | None = None
        self.from_hook = False

    def source(self, owner: Any) -> tuple[Any, bool]:
        """The iterable to walk and whether a hook set it (else it is the loader)."""
        spec = self.spec
        value = getattr(owner, spec.iterable, None) if spec.iterable else None
        if value is not None:
            return value, True
        return (getattr(owner, spec.loader, None) if spec.loader else None), False

    def open(self, owner: Any) -> Iterator[Any]:
        """Open the hook-set iterable, else the loader; complain with the fix if neither."""
        if self.opener is not None:
            opener, self.opener = self.opener, None
            taken = self.taken
            self.iterator = opener()
            self.taken = taken
            return self.iterator
        source, self.from_hook = self.source(owner)
        if source is None:
            unset = " and ".join(f"{a} is None" for a in (self.spec.iterable, self.spec.loader) if a)
            raise ConfigurationError(f"no data for feed {self.spec.name!r}: {unset}; {self.hint}")
        if not self.from_hook and self.capture_rng is not None:
            self.open_rng = self.capture_rng(source)
        iterator = _skip(source, self.skip_on_open) if self.skip_on_open else iter(source)
        self.taken = self.skip_on_open
        self.skip_on_open = 0
        self.iterator = iterator
        return iterator

    @property
    def exhausted(self) -> bool:
        """True when the lookahead found the end of the pass."""
        return self.peek is EXHAUSTED

    def take(self) -> Any:
        """Move the lookahead item into ``item`` and return it (the taking hooks inline this)."""
        item = self.peek
        self.peek = UNFETCHED
        self.item = item
        self.taken += 1
        return item

    def close(self) -> None:
        """Close an open generator-like iterator and forget it; the pass is over."""
        close = getattr(self.iterator, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing is best effort: the pass already ended
                pass
        self.active = False
        self.reset()


def lookahead(owner: Any, feed: FeedState) -> Callable[[], bool]:
    """The loop guard for ``feed``: fetch one item ahead (once) and say whether there was one."""

    def has_next() -> bool:
        p = feed.peek
        if p is UNFETCHED:
            it = feed.iterator
            if it is None:
                if feed.blocked:
                    return False
                it = feed.open(owner)
            p = feed.peek = next(it, EXHAUSTED)
        return p is not EXHAUSTED

    return has_next


def _skip(source: Any, count: int) -> Iterator[Any]:
    """Iterate ``source`` past its first ``count`` items, without loading them when possible.

    A torch ``DataLoader`` whose batch sampler can be iterated on its own skips index
    batches only (no data is loaded); anything else is iterated and discarded.
    """
    from statetrainer import steps_data

    fast = steps_data.skip_batches(source, count)
    if fast is not None:
        return fast
    iterator: Iterator[Any] = iter(source)
    for _ in range(count):
        next(iterator, None)
    return iterator
