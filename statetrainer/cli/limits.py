"""``--limit-batches N``: at most N items per pass over each data feed of a trainer's lifecycles.

Generic over the lifecycles' declared :class:`~statetrainer.spec.Feed`\\ s (train, valid and
test for ``ConvnetTrainer``; the feeds of a custom lifecycle alike). Each feed's loader
attribute is wrapped in a :class:`Limited` when the trainer is built, and again — with the
iterable attribute a hook may set — after the calls of the state that opens a feed and of
each state after it until the loop first asks for an item (``evaluate_epoch`` opens the
valid feed; a hook in ``on_evaluate_epoch_start`` may still set a new ``valid_loader``). The
feed reads its source at that first question, so every pass sees at most N items.

A hook that sets ``self.train_epoch_iter = enumerate(self.train_loader)`` is limited
through the loader it enumerates (and the enumerate stays resumable mid-pass); any other
iterable a hook sets is wrapped itself. An ``enumerate`` over something other than the
feed's loader is not limited.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any


class Limited:
    """The first ``limit`` items of ``source`` at each pass; ``len()`` and other attributes are the source's.

    Attribute access falls through to the source, so a ``DataLoader``'s ``sampler``,
    ``generator`` and ``dataset`` are still found (the runtime reads them for RNG states
    and sampler epochs).
    """

    def __init__(self, source: Any, limit: int) -> None:
        self.source = source
        self.limit = limit

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.source), self.limit)

    def __len__(self) -> int:
        return min(len(self.source), self.limit)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("source", "limit"):  # unpickling, copying: not the source's
            raise AttributeError(name)
        return getattr(self.source, name)

    def __repr__(self) -> str:
        return f"Limited({self.source!r}, {self.limit})"


def limit_batches(trainer: Any, limit: int) -> None:
    """Give every pass over each feed of ``trainer``'s lifecycles at most ``limit`` items."""
    feeds = _feeds(type(trainer))
    _wrap(trainer, [attr for loader, _ in feeds.values() for attr in loader], limit)
    for state, (loaders, iterables) in feeds.items():
        if state is not None:
            trainer.on(state, _rewrapper(loaders, iterables, limit))


def _feeds(cls: Any) -> dict[str | None, tuple[list[str], list[str]]]:
    """``state -> (loader attributes, iterable attributes)`` of the feeds whose source a hook
    of that state may still set before the pass reads it; feeds no state opens are under ``None``."""
    out: dict[str | None, tuple[list[str], list[str]]] = {}
    for spec in cls.lifecycles().values():
        for feed in spec.feeds:
            opener = next((s.name for s in spec.states if s.opens == feed.name), None)
            for state in _before_first_item(spec, opener, feed) if opener else [None]:
                loaders, iterables = out.setdefault(state, ([], []))
                if feed.loader and feed.loader not in loaders:
                    loaders.append(feed.loader)
                if feed.iterable and feed.iterable not in iterables:
                    iterables.append(feed.iterable)
    return out


def _before_first_item(spec: Any, opener: str, feed: Any) -> list[str]:
    """The opening state and the states after it up to the one whose next transition first
    asks the feed for an item (an edge guarded by the feed's guard): the pass's source is
    read there, after those states' calls."""
    from statetrainer import _structure

    leaving: dict[str, list[Any]] = {}
    for edge in _structure.flow_edges(spec):
        leaving.setdefault(edge.source, []).append(edge)
    takes = {s.name for s in spec.states if s.takes == feed.name}
    found: list[str] = []
    todo = [opener]
    while todo:
        state = todo.pop()
        if state in found or state in takes:
            continue
        found.append(state)
        edges = leaving.get(state, [])
        if not any(feed.guard in edge.guard for edge in edges):
            todo.extend(edge.target for edge in edges)
    return found


def _rewrapper(loaders: list[str], iterables: list[str], limit: int) -> Callable[[Any], None]:
    """The callback of a state at the start of a pass (see :func:`_feeds`): after its hook,
    wrap the loaders a hook replaced and the iterables a hook set."""

    def limit_batches(trainer: Any) -> None:
        _wrap(trainer, loaders, limit)
        _wrap(trainer, [n for n in iterables if not isinstance(getattr(trainer, n, None), enumerate)], limit)

    return limit_batches


def _wrap(trainer: Any, names: list[str], limit: int) -> None:
    for name in names:
        value = getattr(trainer, name, None)
        if value is not None and not isinstance(value, Limited):
            setattr(trainer, name, Limited(value, limit))
