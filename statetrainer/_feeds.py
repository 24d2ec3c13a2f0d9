"""The iterables a loop walks, with one item of lookahead.

A loop guard (``has_next_batch``) asks the feed for another item; the next batch state
takes it. The iterable is resolved lazily, on the first question of each epoch, so hooks
can set it (``self.train_epoch_iter = enumerate(self.train_loader)`` in
``on_train_epoch_start``); otherwise the matching loader is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from statetrainer._errors import ConfigurationError

UNFETCHED: Any = object()
EXHAUSTED: Any = object()


class Feed:
    """One loop's data: which attributes to read, the open iterator, the lookahead item."""

    __slots__ = (
        "iterable_attr", "loader_attr", "hint", "iterator", "peek", "item", "taken",
        "blocked", "skip_on_open", "opener",
    )

    def __init__(self, iterable_attr: str, loader_attr: str, hint: str) -> None:
        self.iterable_attr = iterable_attr
        self.loader_attr = loader_attr
        self.hint = hint
        self.item: Any = None
        self.blocked = False
        self.skip_on_open = 0
        self.opener: Any = None  # set by a resume: re-creates the iterator once
        self.reset()

    def reset(self) -> None:
        """Forget the iterator: the next question opens the iterable anew."""
        self.iterator: Iterator[Any] | None = None
        self.peek: Any = UNFETCHED
        self.taken = 0

    def open(self, owner: Any) -> Iterator[Any]:
        """Open the hook-set iterable, else the loader; complain with the fix if neither."""
        if self.opener is not None:
            opener, self.opener = self.opener, None
            taken = self.taken
            iterator: Iterator[Any] = opener()
            self.iterator = iterator
            self.taken = taken
            return iterator
        source = getattr(owner, self.iterable_attr, None)
        if source is None:
            source = getattr(owner, self.loader_attr, None)
        if source is None:
            unset = (f"{self.iterable_attr} and {self.loader_attr} are both None"
                     if self.iterable_attr != self.loader_attr else "nothing to iterate yet")
            raise ConfigurationError(f"no data for this loop: {unset}; {self.hint}")
        iterator = _skip(source, self.skip_on_open) if self.skip_on_open else iter(source)
        self.taken = self.skip_on_open
        self.skip_on_open = 0
        self.iterator = iterator
        return iterator

    def take(self) -> Any:
        """Move the lookahead item into ``item`` and return it."""
        item = self.peek
        self.peek = UNFETCHED
        self.item = item
        self.taken += 1
        return item

    def close(self) -> None:
        """Close an open generator-like iterator and forget it."""
        close = getattr(self.iterator, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing is best effort: the run already ended
                pass
        self.reset()


def lookahead(owner: Any, feed: Feed) -> Callable[[], bool]:
    """The loop guard for ``feed``: fetch one item ahead (once) and say whether there was one."""

    def has_next() -> bool:
        p = feed.peek
        if p is UNFETCHED:
            if feed.blocked:
                return False
            it = feed.iterator
            if it is None:
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
