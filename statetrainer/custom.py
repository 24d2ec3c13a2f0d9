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

from typing import Any, ClassVar

from statetrainer import lifecycles as builtin
from statetrainer._errors import ConfigurationError
from statetrainer.spec import Lifecycle
from statetrainer.trainer import ConvnetTrainer


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
