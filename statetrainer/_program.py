"""Turn a lifecycle into a :class:`~statetrainer.driver.Program` bound to one trainer.

Everything a state does comes from its declaration in the spec — its roles, the feeds it
opens, takes from, hands to its hook and closes, and whether it is a compound state — so
this module names no state. A state's calls are, in order:

1. bookkeeping before the hook: the grad mode when the state enters or leaves a
   ``no_grad`` region, the epoch's start (``epoch_start``), a feed's pass opening
   (``opens``) or ending (``closes``), the next item taken (``takes``) — the epoch and
   item bookkeeping also stamps the state's trace entry, written just before;
2. callbacks with ``order < 0``; 3. the hook (the trainer's method named after the
   state, given the feed's item when the state declares ``item=``; a compound state's
   override, run where farabio called it); 4. the other callbacks;
5. bookkeeping after: a periodic checkpoint request (``batch_end``), the epoch's close
   (``epoch_end``).

A *scoped* program runs one pass through a compound state's body: the direct call of
``train_epoch()`` runs one epoch, ``train_batch(item)`` one item.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statetrainer._errors import ConfigurationError
from statetrainer._feeds import UNFETCHED, lookahead
from statetrainer.driver import Call, Check, Program
from statetrainer.machine import CompiledEdge, CompiledMachine, compile_machine
from statetrainer.spec import EPOCHS_GUARD, OVERRIDDEN_SUFFIX, Lifecycle, State

if TYPE_CHECKING:
    from statetrainer._runtime import Runtime

_TABLES: dict[str, CompiledMachine] = {}


def table_for(spec: Lifecycle) -> CompiledMachine:
    """The compiled table of ``spec``, cached by fingerprint."""
    key = f"{spec.name}:{spec.fingerprint()}"
    if key not in _TABLES:
        _TABLES[key] = compile_machine(spec)
    return _TABLES[key]


class CompoundHook:
    """A compound state's default hook: calling it runs one pass through the state's body.

    ``self.train_epoch()`` runs one epoch, ``super().train_batch(args)`` one item. Inside a
    run the pass is a nested run (its states appear in the trace one level deeper);
    outside a run it is a run of its own. The machine never calls this default: it walks
    the body itself, and calls the hook only when a subclass overrides it.
    """

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        from statetrainer._run import run_compound

        name = self.name

        def compound(*args: Any) -> None:
            run_compound(obj, name, *args)

        compound.__name__ = compound.__qualname__ = name
        compound.__doc__ = self.__doc__
        return compound


def is_default_compound(cls: type, name: str) -> bool:
    """True when ``cls`` does not override the compound hook ``name``."""
    return isinstance(inspect.getattr_static(cls, name, None), CompoundHook)


def _restamp(driver: Any) -> None:
    """The entry just written (the state's own: nothing recorded since) gets the position its
    bookkeeping set: the trace records what the state's hook sees."""
    trace, pos = driver.trace, driver.position
    trace._epoch[trace._i - 1] = pos.epoch
    trace._batch[trace._i - 1] = pos.batch


def has_compound_hook(cls: type, name: str) -> bool:
    """True when a class of ``cls``'s hierarchy defines ``name`` as a :class:`CompoundHook`."""
    return any(isinstance(vars(k).get(name), CompoundHook) for k in cls.__mro__)


def overridden_compounds(cls: type, spec: Lifecycle) -> frozenset[str]:
    """The compound states of ``spec`` whose compound hook ``cls`` overrides."""
    return frozenset(
        s.name for s in spec.states
        if s.compound and has_compound_hook(cls, s.name) and not is_default_compound(cls, s.name)
    )


def _defined_by_statetrainer(cls: type, name: str) -> bool:
    owner = next((k for k in cls.__mro__ if name in vars(k)), None)
    return owner is not None and owner.__module__.startswith("statetrainer.")


def grad_switches(spec: Lifecycle, overridden: frozenset[str]) -> dict[str, bool]:
    """States that must set the grad mode on entry: ``True`` to disable grad, ``False`` to restore it.

    A state switches when some state before it (or none: a run may start there) is on the
    other side of a ``no_grad`` region's border. An overridden compound runs its own body,
    as farabio's override did: its ``no_grad`` does not apply to the override.
    """
    inside = spec.no_grad_states() - overridden
    before: dict[str, set[str]] = {s: set() for s in spec.state_names}
    for e in spec.edges:
        before[e.target].add(e.source)
    out: dict[str, bool] = {}
    for s in spec.states:
        here = s.name in inside
        if s.compound or not before[s.name] or any((p in inside) != here for p in before[s.name]):
            out[s.name] = here
    return out


class Builder:
    """Builds the program of one lifecycle (or of one compound's pass) for a trainer."""

    def __init__(self, rt: Runtime, trainer: Any, spec: Lifecycle, scope: str | None = None) -> None:
        self.rt, self.t, self.spec, self.scope = rt, trainer, spec, scope
        self.table = table_for(spec)
        self.names: dict[int, str] = {}
        self.overridden = overridden_compounds(type(trainer), spec) - ({scope} if scope else set())
        self.switches = grad_switches(spec, self.overridden)
        entry = spec.entry(scope) if scope else None
        # A direct call of the compound that *is* one epoch runs it with the caller's epoch.
        self.caller_epoch = entry is not None and spec.state(entry).has("epoch_start")

    def build(self) -> Program:
        """The program: every state's calls and every guard's check."""
        guards = [self._guard(g) for g in self.table.guards]
        return Program(self.table, self.calls(), guards, self.names, serve=self.scope is None, cut=self._cut())

    def calls(self) -> list[tuple[Call, ...]]:
        """Every state's calls, in state order (also to refresh a running program's callbacks)."""
        return [self._calls(self.spec.state(name)) for name in self.table.names]

    def _cut(self) -> Callable[[int, CompiledEdge], bool] | None:
        """A pass ends on leaving the compound's body, and — for a compound whose body is one
        item (``item=``) or one epoch (its entry opens the epoch) — on re-entering it."""
        if self.scope is None:
            return None
        names, scope = self.table.names, self.scope
        body, entry = self.spec.body(scope), self.spec.entry(scope)
        one_pass = bool(self.spec.state(scope).item) or self.caller_epoch

        def leaves_pass(source: int, row: CompiledEdge) -> bool:
            target = names[row.target]
            return target not in body or (one_pass and target == entry and names[source] != scope)

        return leaves_pass

    # -- a state's calls ---------------------------------------------------------------
    def _calls(self, state: State) -> tuple[Call, ...]:
        before, after = self.rt.registry.for_state(state.name, state.roles)
        out: list[Call] = []
        bookkeeping, hooks = self._before_hook(state), self._hook(state)
        fused = self._take_and_hook(state, hooks) if state.takes and not before else None
        if fused is not None:  # one call where nothing runs between taking and the hook
            bookkeeping, hooks = bookkeeping[:-1], [fused]
        for call in bookkeeping:
            self._name(call, f"statetrainer bookkeeping of {state.name}")
            out.append(call)
        for handle in before:
            out.append(self._name(handle.bind(self.t), handle.name))
        for call in hooks:
            out.append(self._name(call, f"hook {type(self.t).__name__}.{state.name}"))
        for handle in after:
            out.append(self._name(handle.bind(self.t), handle.name))
        for call in self._after_hook(state):
            out.append(self._name(call, f"statetrainer bookkeeping of {state.name}"))
        return tuple(out)

    def _name(self, call: Call, name: str) -> Call:
        self.names.setdefault(id(call), name)
        return call

    def _before_hook(self, state: State) -> list[Call]:
        rt, spec, out = self.rt, self.spec, []
        if state.name in self.switches:
            out.append(rt.grad.enter if self.switches[state.name] else rt.grad.exit)
        driver = rt.driver
        if state.has("epoch_start"):
            advance = not self.caller_epoch

            def begin_epoch() -> None:
                rt.begin_epoch(spec, advance)
                _restamp(driver)

            out.append(begin_epoch)
        if state.opens and state.name not in self.overridden:
            feed = rt.feed(spec, state.opens)
            out.append(lambda: rt.open_feed(feed))
        if state.closes:
            feed = rt.feed(spec, state.closes)
            out.append(lambda: rt.close_feed(feed))
        if state.takes:
            out.append(self._take(state))
        return out

    def _after_hook(self, state: State) -> list[Call]:
        rt, spec, out = self.rt, self.spec, []
        if state.has("batch_end") and rt.settings.checkpoint_every:
            out.append(rt.after_batch)
        if state.has("epoch_end"):
            out.append(lambda: rt.close_epoch(spec))
        return out

    # -- hooks ---------------------------------------------------------------------------
    def _hook(self, state: State) -> list[Call]:
        if state.compound and has_compound_hook(type(self.t), state.name):
            return self._compound_hook(state)
        if _defined_by_statetrainer(type(self.t), state.name) and not self._is_hook(state.name):
            return []  # an entry point such as train(): the machine is already running it
        method = getattr(self.t, state.name, None)
        module = hasattr(method, "forward") and hasattr(method, "parameters") and not inspect.ismethod(method)
        if method is not None and (module or not callable(method)):  # a model is callable, but no hook
            raise ConfigurationError(
                f"state {state.name!r} of lifecycle {self.spec.name!r}: {type(self.t).__name__}.{state.name} "
                f"is {type(method).__name__}, not a method; rename the attribute or the state"
            )
        if state.takes:
            return self._taking_hook(state, method)
        if state.item:
            feed = self.rt.feed(self.spec, state.item)
            return [lambda: method(feed.item)] if method is not None else []
        return [method] if method is not None else []

    def _is_hook(self, name: str) -> bool:
        """A statetrainer-defined method that is a hook of a built-in lifecycle's state."""
        from statetrainer import lifecycles

        specs = (*lifecycles.BUILTIN.values(), *lifecycles.GAN.values())
        return any(name in s.state_names and not s.state(name).compound for s in specs)

    def _take(self, state: State, then: Callable[[Any], Any] | None = None) -> Call:
        """The state takes the feed's next item and counts it, first of its calls (so its
        callbacks, its hook and its trace entry all see the new item); ``then``, the hook,
        is called with the item in the same call when nothing runs between them."""
        rt, feed = self.rt, self.rt.feed(self.spec, state.takes or "")
        driver, pos = rt.driver, rt.driver.position
        counting = feed.spec.counts_steps
        unfetched = UNFETCHED

        def take() -> None:
            item = feed.item = feed.peek
            feed.peek = unfetched
            feed.taken += 1
            pos.batch += 1
            if counting:
                pos.global_step += 1
            trace = driver.trace  # the state's entry, written just before: it gets the new index
            trace._batch[trace._i - 1] = pos.batch
            if then is not None:
                then(item)

        if self._plain_pass():
            return take

        def take_counted_by_runner() -> None:
            if not rt.batch_counted:
                take()
                return
            feed.item = feed.peek
            feed.peek = unfetched
            feed.taken += 1

        return take_counted_by_runner

    def _plain_pass(self) -> bool:
        """False in a pass through a per-item compound only: the super() call of an overridden
        ``train_batch``, whose runner may have counted the item already."""
        return self.scope is None or not self.spec.state(self.scope).item

    def _take_and_hook(self, state: State, hooks: list[Call]) -> Call | None:
        """Taking the item and calling the hook with it as one call (a frame less per item),
        when that is all the state does before its later callbacks: the hook receives the
        item it takes, no skip flag, not the super() pass of an overridden per-item compound."""
        feed = self.rt.feed(self.spec, state.takes or "")
        method = getattr(self.t, state.name, None)
        if not (self._plain_pass() and feed.spec.skip_flag is None and state.item == state.takes
                and method is not None and len(hooks) == 1):
            return None
        return self._take(state, then=method)

    def _taking_hook(self, state: State, method: Callable[..., Any] | None) -> list[Call]:
        """The hook of a state that takes an item (:meth:`_take` took it): called with the
        item when the state hands it over, then farabio's skip flag is honoured."""
        rt, feed = self.rt, self.rt.feed(self.spec, state.takes or "")
        ctl, t = rt.driver.control, self.t
        flag = feed.spec.skip_flag
        if method is None:
            hook: Call | None = None
        elif state.item == state.takes:
            hook = lambda: method(feed.item)  # noqa: E731
        else:
            hook = method
        if flag is None:
            return [hook] if hook is not None else []

        def hook_or_skip() -> None:
            if hook is not None:
                hook()
            if getattr(t, flag, False):  # farabio's way to skip this item
                setattr(t, flag, False)
                ctl.request("skip")

        return [hook_or_skip]

    def _compound_hook(self, state: State) -> list[Call]:
        if state.name not in self.overridden:
            return []
        method = getattr(self.t, state.name)
        entry = self.spec.entry(state.name)
        first = self.spec.state(entry) if entry else None
        if state.item:
            return [self._per_item(method, state.item)]
        if first is not None and first.has("epoch_start"):
            return [self._per_epoch(method, first)]
        return [method]

    def _per_item(self, method: Callable[[Any], Any], feed_name: str) -> Call:
        """An overridden per-item compound (``train_batch``): called once per item, with it."""
        rt, feed = self.rt, self.rt.feed(self.spec, feed_name)
        ctl, pos, has_next = rt.driver.control, rt.driver.position, self._guard(feed.spec.guard)
        counts = feed.spec.counts_steps
        # An override that never calls super() runs no batch_end state: the periodic
        # checkpoint is still requested per item, and served at the next resumable state.
        periodic = rt.after_batch if counts and rt.settings.checkpoint_every else None

        def run_items() -> None:
            while not (ctl.stop or ctl.epoch_stop) and has_next():
                item = feed.take()
                pos.batch += 1
                if counts:
                    pos.global_step += 1
                rt.batch_counted = True
                try:
                    method(item)
                finally:
                    rt.batch_counted = False
                if periodic is not None:
                    periodic()
                ctl.skip = False
                ctl.pending = ctl.stop or ctl.epoch_stop or bool(ctl.requests)

        return run_items

    def _per_epoch(self, method: Callable[[], Any], first: State) -> Call:
        """An overridden epoch compound (``train_epoch``): called once per remaining epoch."""
        rt, spec, ctl = self.rt, self.spec, self.rt.driver.control
        remaining = self._guard(EPOCHS_GUARD)
        feed = rt.feed(spec, first.opens) if first.opens else None

        def run_epochs() -> None:
            while not ctl.stop and remaining():
                rt.begin_epoch(spec, True)
                if feed is not None:
                    rt.open_feed(feed)
                method()
                rt.close_epoch(spec, checkpoint=False)
                ctl.epoch_stop = ctl.skip = False
                ctl.pending = ctl.stop or bool(ctl.requests)

        return run_epochs

    # -- guards ------------------------------------------------------------------------
    def _guard(self, name: str) -> Check:
        rt, spec, t = self.rt, self.spec, self.t
        ctl = rt.driver.control
        if name == "stop_requested":
            return lambda: ctl.stop
        if name == "epoch_stop_requested":
            return lambda: ctl.epoch_stop
        if name == "skip_requested":
            return lambda: ctl.skip
        for feed in spec.feeds:
            if feed.guard == name:
                return lookahead(t, rt.feed(spec, feed.name))
        if name == EPOCHS_GUARD and name in spec.runtime_guards:
            total = spec.epochs.total
            return lambda: rt.next_epoch(spec) <= getattr(t, total)
        if name.endswith(OVERRIDDEN_SUFFIX) and name in spec.runtime_guards:
            overridden = name.removesuffix(OVERRIDDEN_SUFFIX) in self.overridden
            return lambda: overridden
        return self._declared_guard(name)

    def _declared_guard(self, name: str) -> Check:
        t = self.t
        guard = next((g for g in self.spec.guards if g.name == name), None)
        if guard is not None and guard.predicate is not None:
            predicate = guard.predicate
            return lambda: bool(predicate(t))
        method = getattr(t, name, None)
        if not callable(method):
            raise ConfigurationError(
                f"lifecycle {self.spec.name!r} uses guard {name!r}: give it a predicate "
                f"(Guard({name!r}, doc, predicate=lambda trainer: ...)) or define a method "
                f"{type(t).__name__}.{name}(self) -> bool"
            )
        return lambda: bool(method())
