"""Attach callbacks to states or roles: order, filters, validation at attach time.

A callback attaches to a state by its name or to a role
(:data:`statetrainer.roles.EPOCH_END`): a role callback runs on entry to every state that
declares the role, in whichever lifecycle runs. A role's name given as a string
(``"epoch_end"``) is a state name like any other: unless a state is called that, it is
refused with an error that says it is a role and how to attach to it (a string never means a
role, so adding a state named like a role never changes what a callback attaches to).

Order contract, within one state: callbacks with ``order < 0`` run first, then the hook
method, then the callbacks with ``order >= 0``; within each group by ``order``, then by
registration (state and role callbacks alike).

Filters count the entries of the callback's state (or role) over a run: ``every=N``
fires on the N-th, 2N-th, ... entry; ``once=N`` on the N-th only; ``when=pred`` whenever
``pred(trainer)`` is true. They combine with *and*. Counters restart with each run and
are kept in checkpoints, so a resumed run fires at the same steps as an uninterrupted one.
``on_exception`` callbacks count failures over the trainer's life.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from statetrainer._errors import UnknownStateError
from statetrainer.roles import ROLES, Role

#: The callback point run when a hook or callback raises: ``fn(trainer, error)``.
ON_EXCEPTION = "on_exception"

Fn = Callable[..., Any]
Where = str | Role


class Handle:
    """A registered callback; pass it to ``trainer.off`` to remove it."""

    __slots__ = ("state", "fn", "order", "every", "once", "when", "seq", "_count")

    def __init__(
        self, state: Where, fn: Fn, order: int = 0, every: int | None = None, once: int | None = None,
        when: Callable[[Any], bool] | None = None, seq: int = 0,
    ) -> None:
        self.state, self.fn, self.order, self.seq = state, fn, order, seq
        self.every, self.once, self.when = every, once, when
        # The filter's position, in one cell shared with the bound call: entries since the
        # last firing for every=N (0..N-1), entries seen for once=N (stops at N + 1). It stays
        # a small int, so counting allocates nothing and a skip costs less than a call.
        self._count = [0]

    @property
    def count(self) -> int:
        """The filter's position this run: entries since the last ``every=`` firing, or entries
        seen up to ``once=``'s (checkpoints keep it, so a resume fires at the same steps)."""
        return self._count[0]

    @count.setter
    def count(self, value: int) -> None:
        self._count[0] = value

    @property
    def filtered(self) -> bool:
        """True when the callback has a filter (``every``, ``once`` or ``when``)."""
        return self.every is not None or self.once is not None or self.when is not None

    @property
    def name(self) -> str:
        """How errors and diagrams name this callback."""
        return f"callback {callable_name(self.fn)}"

    @property
    def key(self) -> str:
        """A stable identity for checkpoints: where it attaches, what it calls, its order."""
        where = f"role:{self.state.name}" if isinstance(self.state, Role) else self.state
        return f"{where}|{callable_name(self.fn)}|{self.order}"

    def due(self) -> bool:
        """Count one entry; true when ``every``/``once`` let the callback run (``when`` aside)."""
        cell, every, once = self._count, self.every, self.once
        n = cell[0] + 1
        if every is not None:
            cell[0] = 0 if n == every else n
            return n == every
        if once is not None:
            if n > once + 1:
                return False
            cell[0] = n
            return n == once
        return True

    def bind(self, trainer: Any) -> Callable[[], Any]:
        """A zero-argument call for the driver, applying this handle's filters."""
        fn, when = self.fn, self.when
        if not self.filtered:
            return lambda: fn(trainer)
        if when is None and self.once is None:
            cell, every = self._count, self.every

            def every_nth() -> Any:
                n = cell[0] + 1
                if n != every:
                    cell[0] = n
                    return None
                cell[0] = 0
                return fn(trainer)

            return every_nth
        due = self.due

        def call() -> Any:
            if due() and (when is None or when(trainer)):
                return fn(trainer)
            return None

        return call

    def fire(self, *args: Any) -> Any:
        """Call the callback once with ``args``, applying its filters (for ``on_exception``)."""
        if self.due() and (self.when is None or self.when(args[0])):
            return self.fn(*args)
        return None

    def __repr__(self) -> str:
        return f"<Handle {self.name} on {self.state} order={self.order}>"


class Registry:
    """The callbacks of one trainer, by state or role.

    ``known_states()`` lists the state names callbacks may attach to; ``known_roles()``
    the roles of the trainer's main lifecycle (attaching to another role is an error).
    """

    def __init__(self, known_states: Callable[[], Iterable[str]],
                 known_roles: Callable[[], tuple[str, Iterable[str]]] | None = None) -> None:
        self._known = known_states
        self._roles = known_roles
        self._handles: list[Handle] = []
        self._seq = itertools.count()
        self.version = 0
        #: Called after every change (the runtime swaps a running program's callbacks).
        self.on_change: Callable[[], None] | None = None

    def _changed(self) -> None:
        self.version += 1
        if self.on_change is not None:
            self.on_change()

    def add(
        self,
        state: Where,
        fn: Fn,
        *,
        order: int = 0,
        every: int | None = None,
        once: int | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> Handle:
        """Validate and register ``fn`` on ``state`` (a state name or a :class:`Role`); returns its handle."""
        handle = self.prepare(state, fn, order=order, every=every, once=once, when=when)
        self.commit([handle])
        return handle

    def prepare(
        self, state: Where, fn: Fn, *, order: int = 0, every: int | None = None,
        once: int | None = None, when: Callable[[Any], bool] | None = None,
    ) -> Handle:
        """Validate a registration without making it (so a bundle registers all or nothing)."""
        self.check_state(state)
        _check_filters(every, once, when)
        _check_signature(fn, 2 if state == ON_EXCEPTION else 1, str(state))
        if not isinstance(order, int) or isinstance(order, bool):
            raise TypeError(f"order must be an int, got {order!r}")
        return Handle(state, fn, order, every, once, when, next(self._seq))

    def commit(self, handles: Iterable[Handle]) -> None:
        """Register handles made by :meth:`prepare`."""
        self._handles.extend(handles)
        self._changed()

    def remove(self, handle: Handle) -> None:
        """Unregister ``handle``; removing one that is not registered raises ``ValueError``."""
        try:
            self._handles.remove(handle)
        except ValueError:
            raise ValueError(f"{handle.name} on {handle.state!r} is not registered") from None
        self._changed()

    def check_state(self, state: Where) -> None:
        """Raise unless ``state`` is a state callbacks may attach to, or a role the main lifecycle has."""
        if isinstance(state, Role):
            if self._roles is None:
                return
            lifecycle, roles = self._roles()
            if state.name not in set(roles):
                from statetrainer._errors import ConfigurationError

                raise ConfigurationError(
                    f"lifecycle {lifecycle!r} has no state with role {state.name!r}, so a callback on "
                    f"{state} would never run; declare it on a state: State(..., roles={{{state.name!r}}})"
                )
            return
        if not isinstance(state, str):
            raise TypeError(f"a callback attaches to a state name or a statetrainer.roles.Role, got {state!r}")
        known = set(self._known()) | {ON_EXCEPTION}
        if state not in known:
            if state in ROLES:
                raise role_name_error(state, self._roles() if self._roles is not None else None)
            raise UnknownStateError(state, sorted(known))

    def for_state(self, state: str, roles: Iterable[str] = ()) -> tuple[list[Handle], list[Handle]]:
        """The handles of ``state`` (by name, or by one of its ``roles``) before and after its hook."""
        role_names = set(roles)
        handles = sorted(
            (h for h in self._handles
             if h.state == state or (isinstance(h.state, Role) and h.state.name in role_names)),
            key=lambda h: (h.order, h.seq),
        )
        return [h for h in handles if h.order < 0], [h for h in handles if h.order >= 0]

    def names_by_state(self, spec: Any) -> dict[str, list[str]]:
        """Callback names per state of lifecycle ``spec``: by state name, and each role
        callback under every state that declares its role."""
        out: dict[str, list[str]] = {}
        for handle in self._handles:
            name = callable_name(handle.fn)
            where = spec.with_role(handle.state.name) if isinstance(handle.state, Role) else (handle.state,)
            for state in where:
                out.setdefault(state, []).append(name)
        return out

    def all(self) -> list[Handle]:
        """Every handle, in registration order."""
        return list(self._handles)

    def reset_counts(self) -> None:
        """Restart the filter counters (each run counts its own entries; ``on_exception``
        callbacks count failures over the trainer's life, a run failing at most once)."""
        for h in self._handles:
            if h.state != ON_EXCEPTION:
                h.count = 0

    def counts(self) -> list[tuple[str, int]]:
        """``(key, count)`` of every filtered handle, in registration order (for checkpoints)."""
        return [(h.key, h.count) for h in self._handles if h.filtered]

    def load_counts(self, saved: list[tuple[str, int]]) -> None:
        """Restore :meth:`counts`: each filtered callback takes the count saved for the same
        callback (same state or role, function and order). One that the checkpoint does not
        know counts from 0, with a warning: it will not fire where it would have."""
        import warnings

        remaining = list(saved)
        missing = []
        for handle in (h for h in self._handles if h.filtered):
            match = next((i for i, (key, _) in enumerate(remaining) if key == handle.key), None)
            if match is None:
                missing.append(handle.key)
                continue
            handle.count = int(remaining.pop(match)[1])
        if missing:
            warnings.warn(
                f"filtered callbacks {missing} were not attached when the checkpoint was written; their "
                f"every=/once= counters start at 0 in the resumed run", RuntimeWarning, stacklevel=3,
            )


def at(where: Where) -> Callable[[Fn], Fn]:
    """Mark a bundle method to attach to ``where`` (a state name or a role), whatever its name.

    Example::

        class Report(Callback):
            @at(EPOCH_END)
            def report(self, trainer):
                print(trainer.metrics())
    """

    def mark(fn: Fn) -> Fn:
        fn.__statetrainer_at__ = where  # type: ignore[attr-defined]
        return fn

    return mark


def attached_where(method: Any) -> Where | None:
    """Where :func:`at` attached ``method`` (``None`` when it was not marked)."""
    return getattr(method, "__statetrainer_at__", None)


def role_constant(name: str) -> str:
    """How to spell role ``name`` in code: ``statetrainer.EPOCH_END``, else ``statetrainer.Role('no_grad')``."""
    import statetrainer
    from statetrainer import roles

    for attr, value in vars(roles).items():
        if isinstance(value, Role) and value.name == name and attr.isupper():
            return f"statetrainer.{attr}" if attr in statetrainer.__all__ else f"statetrainer.roles.{attr}"
    return f"statetrainer.Role({name!r})"


def role_name_error(
    name: str, main: tuple[str, Iterable[str]] | None = None, what: str = "state", example: str | None = None,
) -> UnknownStateError:
    """The error for a role's name given where a state name goes: roles attach as Role objects.

    A role is not accepted as a string: a lifecycle may name a state after a role, and the
    string would then change meaning. ``main`` is the main lifecycle's ``(name, roles)``.
    """
    constant = role_constant(name)
    err = UnknownStateError(name, (), what=what)
    err.message += (
        f": it is a role, not a state name; attach to the role with "
        f"{example or f'trainer.on({constant}, fn)'} (it runs on every state that declares the role)"
    )
    if main is not None and name not in set(main[1]):
        err.message += f"; lifecycle {main[0]!r} has no state with role {name!r} yet: State(..., roles={{{name!r}}})"
    err.args = (err.message,)
    return err


def _check_filters(every: int | None, once: int | None, when: object) -> None:
    if every is not None and once is not None:
        raise ValueError("pass either every= or once=, not both: once=N already picks one entry")
    for name, value in (("every", every), ("once", once)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 (the N-th entry of the state), got {value!r}")
    if when is not None and not callable(when):
        raise TypeError(f"when must be a callable taking the trainer, got {when!r}")


def check_signature(fn: object, nargs: int, state: str) -> None:
    """Raise ``TypeError`` unless ``fn`` can be called with ``nargs`` positional arguments."""
    _check_signature(fn, nargs, state)


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
            f"callback {callable_name(fn)} for {state!r} cannot be called as fn{args}: "
            f"its signature is {sig}; give it exactly {nargs} positional parameter"
            f"{'s' if nargs > 1 else ''}"
        ) from None


def callable_name(fn: object) -> str:
    """A readable name for a callable (its qualified name, else its type's name)."""
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def check_hook_takes_item(trainer: object, hook: str) -> None:
    """Raise ``TypeError`` naming ``hook`` unless it is callable with the batch item."""
    method = getattr(trainer, hook)
    if not callable(method):
        raise TypeError(
            f"{type(trainer).__name__}.{hook} is {method!r}, not a method; define it as def {hook}(self, args)"
        )
    try:
        sig = inspect.signature(method)
    except (TypeError, ValueError):  # no signature available
        return
    try:
        sig.bind(None)
    except TypeError:
        shown = sig.replace(return_annotation=inspect.Signature.empty)
        raise TypeError(
            f"{type(trainer).__name__}.{hook}{shown} cannot take the batch item: "
            f"define it as def {hook}(self, args) (farabio passes the item as one argument)"
        ) from None
