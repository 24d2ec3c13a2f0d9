"""Data-position helpers that need torch: skipping consumed batches, sampler epochs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def skip_batches(source: Any, count: int) -> Iterator[Any] | None:
    """An iterator over ``source`` with its first ``count`` batches skipped unloaded.

    Works for a single-process ``torch.utils.data.DataLoader``: the iterator is created
    as usual (so it draws the same random numbers as the interrupted run did) and its
    sampler is advanced by index only. Returns ``None`` when that is not possible
    (worker processes already prefetch, or ``source`` is not a DataLoader); the caller
    then iterates and discards.
    """
    try:
        from torch.utils.data import DataLoader
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not isinstance(source, DataLoader) or source.num_workers > 0:
        return None
    iterator = iter(source)
    sampler_iter = getattr(iterator, "_sampler_iter", None)
    if sampler_iter is None or not hasattr(iterator, "_num_yielded"):
        return None
    for _ in range(count):
        if next(sampler_iter, None) is None:
            break
        iterator._num_yielded += 1
    return iterator


def set_sampler_epoch(loader: Any, epoch: int) -> bool:
    """Call ``set_epoch(epoch)`` on the loader's sampler when it has one (DistributedSampler)."""
    sampler = getattr(loader, "sampler", None)
    set_epoch = getattr(sampler, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
        return True
    return False
