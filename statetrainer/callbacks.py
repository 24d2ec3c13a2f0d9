"""Attach callbacks to states: order, filters, validation at attach time.

Order contract, within one state: callbacks with ``order < 0`` run first, then the hook
method, then the callbacks with ``order >= 0``; within each group by ``order``, then by
registration.

Filters count the entries of the state over the run (they restart with each run):
``every=N`` fires on the N-th, 2N-th, ... entry; ``once=N`` on the N-th only;
``when=pred`` whenever ``pred(trainer)`` is true. They combine with *and*.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from statetrainer._errors import UnknownStateError

#: The callback point run when a hook or callback raises: ``fn(trainer, error)``.
ON_EXCEPTION = "on_exception"

Fn = Callable[[Any], Any]


@attrs.define(eq=False)
class Handle:
    """A registered callback; pass it to ``trainer.off`` to remove it."""

    state: str
    fn: Fn
    order: int = 0
    every: int | None = None
    once: int | None = None
    when: Callable[[Any], bool] | None = None
    seq: int = 0
    count: int = 0

    @property
    def name(self) -> str:
        """How errors and diagrams name this callback."""
        return f"callback {_callable_name(self.fn)}"

    def bind(self, trainer: Any) -> Callable[[], Any]:
        """A zero-argument call for the driver, applying this handle's filters."""
        fn = self.fn
        if self.every is None and self.once is None and self.when is None:
            return lambda: fn(trainer)
        return self._filtered(trainer)

    def _filtered(self, trainer: Any) -> Callable[[], Any]:
        fn, every, once, when = self.fn, self.every, self.once, self.when

        def call() -> Any:
            self.count += 1
            if every is not None and self.count % every:
                return None
            if once is not None and self.count != once:
                return None
            if when is not None and not when(trainer):
                return None
            return fn(trainer)

        return call


class Registry:
    """The callbacks of one trainer, by state."""

    def __init__(self, known_states: Callable[[], Iterable[str]]) -> None:
        self._known = known_states
        self._handles: list[Handle] = []
        self._seq = itertools.count()
        self.version = 0

    def add(
        self,
        state: str,
        fn: Fn,
        *,
        order: int = 0,
        every: int | None = None,
        once: int | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> Handle:
        """Validate and register ``fn`` on ``state``; returns its handle."""
        self.check_state(state)
        _check_filters(every, once, when)
        _check_signature(fn, 2 if state == ON_EXCEPTION else 1, state)
        if not isinstance(order, int) or isinstance(order, bool):
            raise TypeError(f"order must be an int, got {order!r}")
        handle = Handle(state, fn, order, every, once, when, next(self._seq))
        self._handles.append(handle)
        self.version += 1
        return handle

    def remove(self, handle: Handle) -> None:
        """Unregister ``handle``; removing one that is not registered raises ``ValueError``."""
        try:
            self._handles.remove(handle)
        except ValueError:
            raise ValueError(f"{handle.name} on {handle.state!r} is not registered") from None
        self.version += 1

    def check_state(self, state: str) -> None:
        """Raise :class:`UnknownStateError` (with suggestions) unless ``state`` exists."""
        known = set(self._known()) | {ON_EXCEPTION}
        if state not in known:
            raise UnknownStateError(state, sorted(known))

    def for_state(self, state: str) -> tuple[list[Handle], list[Handle]]:
        """The handles of ``state`` that run before and after its hook, in order."""
        handles = sorted((h for h in self._handles if h.state == state), key=lambda h: (h.order, h.seq))
        return [h for h in handles if h.order < 0], [h for h in handles if h.order >= 0]

    def all(self) -> list[Handle]:
        """Every handle, in registration order."""
        return list(self._handles)

    def reset_counts(self) -> None:
        """Restart the filter counters (each run counts its own entries)."""
        for h in self._handles:
            h.count = 0


def _check_filters(every: int | None, once: int | None, when: object) -> None:
    if every is not None and once is not None:
        raise ValueError("pass either every= or once=, not both: once=N already picks one entry")
    for name, value in (("every", every), ("once", once)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 (the N-th entry of the state), got {value!r}")
    if when is not None and not callable(when):
        raise TypeError(f"when must be a callable taking the trainer, got {when!r}")


def _check_signature(fn: object, nargs: int, state: str) -> None:
    if not callable(fn):
        raise TypeError(f"callback for {state!r} must be callable, got {fn!r}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        sig.bind(*([None] * nargs))
    except TypeError:
        args = "(trainer, error)" if nargs == 2 else "(trainer)"
        raise TypeError(
            f"callback {_callable_name(fn)} for {state!r} cannot be called as fn{args}: "
            f"its signature is {sig}; give it exactly {nargs} positional parameter"
            f"{'s' if nargs > 1 else ''}"
        ) from None


def _callable_name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def check_hook_takes_item(trainer: object, hook: str) -> None:
    """Raise ``TypeError`` naming ``hook`` unless it can be called with the batch item."""
    method = getattr(trainer, hook)
    try:
        sig = inspect.signature(method)
        sig.bind(None)
    except TypeError:
        shown = sig.replace(return_annotation=inspect.Signature.empty)
        raise TypeError(
            f"{type(trainer).__name__}.{hook}{shown} cannot take the batch item: "
            f"define it as def {hook}(self, args) (farabio passes the item as one argument)"
        ) from None
    except ValueError:  # no signature available
        return
