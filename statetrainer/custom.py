"""Run your own lifecycle: declare a :class:`~statetrainer.Lifecycle`, subclass, write hooks.

A :class:`LifecycleTrainer` runs ``lifecycle`` with the same driver and runtime as the
built-ins: on entry to a state it calls the method of the same name (with the feed's
item when the state declares ``item=``), then the callbacks attached to that state or to
its roles; a guard is answered by its ``predicate``, else by the method of its name.
Declare the roles (:mod:`statetrainer.roles`) and every feature follows: epochs and
per-epoch metrics, built-in callbacks, periodic and epoch checkpoints, exact resume
(``run(resume_from=...)``), signals, ``inspect`` with its own diagram. It keeps farabio's
construction order (``init_attr``, loaders, ``build_model``).

Example::

    class Counter(LifecycleTrainer):
        lifecycle = Lifecycle(...)       # states "start", "step", "done"
        def define_train_attr(self):
            self.remaining = 3
        def more(self) -> bool:           # the guard of the loop edge
            return self.remaining > 0
        def step(self):
            self.remaining -= 1

    Counter().run()
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, ClassVar

from statetrainer import lifecycles as builtin
from statetrainer._errors import ConfigurationError, SpecError
from statetrainer._feeds import FeedState, lookahead
from statetrainer.spec import Feed, Lifecycle
from statetrainer.trainer import ConvnetTrainer


class ItemLoop:
    """The item loop of a custom lifecycle, with the same one-item lookahead the built-ins use.

    ``start(iterable)`` where the loop begins, ``has_next()`` as the loop edge's guard (it
    may be asked more than once; it fetches at most one item), ``take()`` in the state that
    handles the item. ``None`` items are items, not the end.

    Example::

        def on_train_epoch_start(self):
            self.batches.start(self.train_loader)
        def has_next_batch(self):            # the guard
            return self.batches.has_next()
        def micro_batch(self):
            x, y = self.batches.take()
    """

    def __init__(self) -> None:
        self.items: Any = None
        self._feed = FeedState(Feed("items", guard="has_next", iterable="items"),
                               hint="call start(iterable) in the state where the loop begins")
        self.has_next = lookahead(self, self._feed)

    def start(self, iterable: Iterable[Any]) -> None:
        """Begin a new pass over ``iterable``."""
        self.items = iterable
        self._feed.close()

    def take(self) -> Any:
        """The item ``has_next()`` fetched (call ``has_next()`` first)."""
        if not self.has_next():
            raise ConfigurationError("take() was called with no item left; guard the state with has_next()")
        return self._feed.take()

    @property
    def taken(self) -> int:
        """Items taken in this pass."""
        return self._feed.taken


class LifecycleTrainer(ConvnetTrainer):
    """A trainer whose main lifecycle is the class attribute ``lifecycle``."""

    lifecycle: ClassVar[Lifecycle]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("lifecycle")
        if spec is None:
            return
        if not isinstance(spec, Lifecycle):
            raise TypeError(f"{cls.__name__}.lifecycle must be a statetrainer.Lifecycle, got {spec!r}")
        from statetrainer._run import reserved_state_problems

        problems = reserved_state_problems(cls, spec)
        if problems:
            raise SpecError(spec.name, problems)

    #: Further lifecycles the class runs with :meth:`run` (by name), besides ``lifecycle``;
    #: e.g. ``{"test": lifecycles.TEST}`` to keep farabio's test lifecycle and ``test()``.
    extra_lifecycles: ClassVar[dict[str, Lifecycle]] = {}

    @classmethod
    def lifecycles(cls) -> dict[str, Lifecycle]:
        """``lifecycle`` under its own name (the main one), then ``extra_lifecycles``.

        Only these: a state, a callback or ``explain`` of a LifecycleTrainer never refers
        to a built-in lifecycle the class does not run.
        """
        spec = getattr(cls, "lifecycle", None)
        if spec is None:
            return dict(builtin.BUILTIN)
        return {spec.name: spec, **{k: v for k, v in cls.extra_lifecycles.items() if k != spec.name}}

    def train(self, resume_from: str | os.PathLike[str] | None = None) -> None:
        """Run ``lifecycle``, the class's training: the same as :meth:`run`."""
        self.run(resume_from=resume_from)

    def test(self) -> None:
        """Run the lifecycle called ``test``, when the class has one (``extra_lifecycles``)."""
        if "test" not in self.lifecycles():
            raise ConfigurationError(
                f"{type(self).__name__} has no 'test' lifecycle (its lifecycles: {', '.join(self.lifecycles())}); "
                "add one to extra_lifecycles (e.g. {'test': statetrainer.lifecycles.TEST}) or call run(name)")
        super().test()

    def run(self, name: str | None = None, resume_from: str | os.PathLike[str] | None = None) -> None:
        """Run ``lifecycle`` (or the lifecycle called ``name``) from its initial state.

        ``resume_from`` is a checkpoint file or a run directory, as for ``train()``.
        """
        spec = getattr(type(self), "lifecycle", None)
        if name is None and spec is None:
            raise ConfigurationError(f"{type(self).__name__} has no lifecycle: set the class attribute")
        target = name or spec.name  # type: ignore[union-attr]
        if target not in self.lifecycles():
            from statetrainer._errors import UnknownStateError

            raise UnknownStateError(target, self.lifecycles(), what="lifecycle")
        from statetrainer import _run

        _run.start(self, target, resume_from)
