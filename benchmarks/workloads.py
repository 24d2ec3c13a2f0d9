"""The torch-free pieces of the workloads, and lazy access to the rest.

Importing this module imports no torch, so a callgrind smoke run of the raw no-op loop starts
in about a second under valgrind (importing torch there takes about 25 s). The torch
workloads live in ``trainers.py`` (and Lightning's in ``lightning_cases.py``); :func:`lazy`
names one of them without importing it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

Timed = Callable[[], object]
Prepare = Callable[[int], Timed]


def noop_items(n: int) -> list[int]:
    """The no-op workload's items: plain ints (no tensors, nothing to move to a device)."""
    return list(range(n))


def noop_step(item: int) -> None:
    """The user's step in the no-op workload (the hand-written loop calls it per item)."""


def noop_process(engine: Any, item: int) -> None:
    """The same step as Ignite's process function."""


def raw_noop(n: int) -> Timed:
    """A hand-written loop calling the no-op step per item."""
    items = noop_items(n)

    def run() -> None:
        for item in items:
            noop_step(item)

    return run


def lazy(module: str, name: str, **options: Any) -> Prepare:
    """``module.name(n, **options)`` as a Prepare, importing ``module`` only when it is called."""

    def prepare(n: int) -> Timed:
        return getattr(importlib.import_module(module), name)(n, **options)  # type: ignore[no-any-return]

    prepare.__qualname__ = f"{module}.{name}"
    return prepare
