"""Run your own lifecycle: declare a :class:`~statetrainer.Lifecycle`, subclass, write hooks.

A :class:`LifecycleTrainer` runs ``lifecycle`` with the same driver as the built-ins:
on entry to a state it calls the method of the same name (if any, with no argument),
then the callbacks attached to that state; a guard named ``g`` is the method ``g(self)``
returning a bool. Callbacks, control (``stop``, ``stop_epoch``, ``skip_batch``), errors
that say where, the trace, diagrams and ``verify`` all work as for ``ConvnetTrainer``.
It keeps farabio's construction order (``init_attr``, loaders, ``build_model``).

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

from collections.abc import Iterable
from typing import Any, ClassVar

from statetrainer import lifecycles as builtin
from statetrainer._errors import ConfigurationError
from statetrainer._feeds import Feed, lookahead
from statetrainer.spec import Lifecycle
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
        self._feed = Feed("items", "items", "call start(iterable) in the state where the loop begins")
        self.has_next = lookahead(self, self._feed)

    def start(self, iterable: Iterable[Any]) -> None:
        """Begin a new pass over ``iterable``."""
        self.items = iterable
        self._feed.reset()

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
        if spec is not None and not isinstance(spec, Lifecycle):
            raise TypeError(f"{cls.__name__}.lifecycle must be a statetrainer.Lifecycle, got {spec!r}")

    @classmethod
    def lifecycles(cls) -> dict[str, Lifecycle]:
        """The built-in lifecycles plus ``lifecycle`` under its own name."""
        spec = getattr(cls, "lifecycle", None)
        if spec is None:
            return dict(builtin.BUILTIN)
        return {**builtin.BUILTIN, spec.name: spec}

    def run(self, name: str | None = None) -> None:
        """Run ``lifecycle`` (or the lifecycle called ``name``) from its initial state."""
        if self._statetrainer.running:
            raise ConfigurationError("run() was called while a run is active")
        spec = getattr(type(self), "lifecycle", None)
        if name is None and spec is None:
            raise ConfigurationError(f"{type(self).__name__} has no lifecycle: set the class attribute")
        target = name or spec.name  # type: ignore[union-attr]
        if target not in self.lifecycles():
            builtin.get(target)  # raises with suggestions
        self._run_top(target)
