"""``trainer.break_on(state)``: stop in the debugger with the trainer and the current item at hand.

The callback :func:`break_callback` builds runs first in its state (before the hook). It
stops pdb in its own small frame, where ``trainer`` (also as ``self``), ``item`` (the
item the state's feed holds, or ``None``), ``state``, ``epoch`` and ``batch`` are local
variables — not in the driver's frames, where ``self`` would be statetrainer's callback
machinery. When the state's hook is your own method, a one-shot breakpoint is set on its
first line, so ``c`` (continue) stops again inside your hook, with its ``self`` and
arguments.

``debugger=`` may be a function (called as ``debugger(trainer)`` instead of pdb) or a
``pdb.Pdb`` instance (ipdb's and other subclasses work), e.g. one reading scripted
commands.
"""

from __future__ import annotations

import inspect
import pdb
import sys
from typing import Any


def break_callback(where: Any, debugger: Any = None) -> Any:
    """The callback ``break_on(where)`` attaches (named ``break_on('where')`` in traces and diagrams)."""

    def breakpoint_(trainer: Any) -> None:
        if debugger is not None and not isinstance(debugger, pdb.Pdb):
            debugger(trainer)
            return
        _stop(trainer, debugger if isinstance(debugger, pdb.Pdb) else pdb.Pdb())

    breakpoint_.__qualname__ = f"break_on({str(where)!r})"
    return breakpoint_


def _stop(trainer: Any, debugger: pdb.Pdb) -> None:
    pos = trainer._statetrainer.driver.position
    state, epoch, batch = pos.state_name, pos.epoch, pos.batch
    item = current_item(trainer, state)
    self = trainer
    hook = _user_hook(trainer, state)
    if hook is not None:
        code = hook.__code__
        debugger.set_break(code.co_filename, code.co_firstlineno, temporary=True, funcname=code.co_name)
    print(_banner(state, epoch, batch, hook), file=debugger.stdout)
    debugger.set_trace(sys._getframe())
    _in_scope = (trainer, self, item, state, epoch, batch)  # break_on: these are yours to inspect; 'c' continues


def current_item(trainer: Any, state: str | None) -> Any:
    """The item the state works on: its feed's current item, or ``None``."""
    rt = trainer._statetrainer
    spec = rt.spec
    if spec is None or state is None or state not in spec.state_names:
        return None
    declared = spec.state(state)
    name = declared.item or declared.takes
    feed = rt.feeds.get(name) if name else rt.step_feed
    return getattr(feed, "item", None) if feed is not None else None


def _user_hook(trainer: Any, state: str | None) -> Any:
    """The trainer's method for ``state`` when the user wrote it (not statetrainer's default)."""
    if state is None:
        return None
    method = inspect.getattr_static(type(trainer), state, None)
    function = getattr(method, "__func__", method)
    module = getattr(function, "__module__", "") or ""
    if not inspect.isfunction(function) or module.startswith("statetrainer."):
        return None
    return function


def _banner(state: str | None, epoch: Any, batch: Any, hook: Any) -> str:
    where = f"break_on: before {state} (epoch {epoch}, batch {batch}); in scope: trainer (as self), item, state"
    if hook is None:
        return where + "; 'c' continues"
    source = inspect.getsourcefile(hook) or hook.__code__.co_filename
    return where + f"; 'c' stops again in your {hook.__qualname__} ({source}:{hook.__code__.co_firstlineno})"
