"""Capture a running trainer at a state boundary, and restore it to resume exactly.

A checkpoint holds the machine's state (the state whose calls have completed), the
position, pending stop/skip requests, every module/optimizer/scheduler/scaler attribute
(and each module's train/eval mode and the gradients it holds, so an accumulation
between optimizer steps resumes exactly) by ``state_dict``, **the trainer's other attributes**
(plain values, containers, objects such as a farabio trainer's early-stopping helper,
tensors) pickled with references to the live modules, optimizers and loaders kept as
references, RNG states, each data feed's position (items taken, how its iterable was
made, the RNG its pass began with), metrics, callbacks' state and filter counters.

Left out: the runtime's own attribute, ``config``, loaders and iterables the feeds read,
live iterators, and what a trainer lists in ``checkpoint_exclude``. An attribute that
cannot be pickled is named once in a warning and left out.

Resuming does not re-run the completed state's calls: the driver records one ``resume``
trace entry and chooses the next edge. Data order: a feed that was mid-pass is re-opened
lazily with the RNG its pass began with replayed, the consumed items skipped without
loading them, and the RNG of that moment put back.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from statetrainer import checkpoint as ck
from statetrainer._errors import CheckpointError

#: Attributes never captured: statetrainer's own and the trainer's inputs.
NEVER = frozenset({"_statetrainer", "config"})


def _iterable_kind(value: Any) -> str:
    if value is None:
        return "loader"
    if isinstance(value, enumerate):
        return "enumerate"
    return "other"


def _feed_attrs(trainer: Any) -> set[str]:
    names: set[str] = set()
    for spec in type(trainer).lifecycles().values():
        for feed in spec.feeds:
            names.update(a for a in (feed.iterable, feed.loader) if a)
    return names


def _loaders(trainer: Any) -> list[Any]:
    """The feeds' loaders (deduplicated): their generators are part of the RNG state."""
    found: list[Any] = []
    for spec in type(trainer).lifecycles().values():
        for feed in spec.feeds:
            value = getattr(trainer, feed.loader, None) if feed.loader else None
            if value is not None and all(value is not x for x in found):
                found.append(value)
    return found


def capture(trainer: Any, state: str) -> dict[str, Any]:
    """The checkpoint payload of ``trainer`` whose machine has just completed ``state``."""
    rt = trainer._statetrainer
    pos, ctl = rt.driver.position, rt.driver.control
    spec = rt.spec
    objects = ck.stateful_attributes(trainer)
    return {
        "format": ck.FORMAT,
        "version": ck.VERSION,
        "run_id": rt.run_id,
        "trainer": type(trainer).__qualname__,
        "lifecycle": spec.name,
        "fingerprint": spec.fingerprint(),
        "state": state,
        "position": {"epoch": pos.epoch, "batch": pos.batch, "global_step": pos.global_step},
        "runtime": {
            "epoch_started": rt.epoch_started,
            "trace_total": rt.driver.trace.total,
            "grad_saved": rt.grad.saved,
            "periodic_mark": rt.periodic_mark,
        },
        "feeds": {name: _feed_position(trainer, feed) for name, feed in rt.feeds.items()},
        "control": {"epoch_stop": ctl.epoch_stop, "skip": ctl.skip, "stop": ctl.stop},
        "objects": {name: obj.state_dict() for name, obj in objects.items()},
        # train/eval mode per submodule: set by hooks that a resume does not re-run
        "modes": {
            name: [m.training for m in obj.modules()]
            for name, obj in objects.items()
            if isinstance(obj, torch.nn.Module)
        },
        # gradients in flight (an accumulation between optimizer steps) are part of the state
        "grads": _gradients(objects),
        "attrs": _pickle_attributes(trainer, objects),
        "rng": ck.rng_state(*_loaders(trainer)),
        "metrics": rt.metrics.state_dict(),
        "callbacks": [(type(b).__qualname__, b.state_dict()) for b in _stateful(rt.bundles)],
        "filters": rt.registry.counts(),
    }


def _feed_position(trainer: Any, feed: Any) -> dict[str, Any]:
    iterable = getattr(trainer, feed.spec.iterable, None) if feed.spec.iterable else None
    return {
        "taken": feed.taken,
        "active": feed.active and not feed.exhausted,
        "opened": feed.iterator is not None,
        "kind": _iterable_kind(iterable),
        "rng": feed.open_rng,
    }


def _gradients(objects: dict[str, Any]) -> dict[str, list[torch.Tensor | None]]:
    """Each module's parameter gradients, when it has any (none after ``zero_grad(set_to_none=True)``)."""
    out: dict[str, list[torch.Tensor | None]] = {}
    for name, obj in objects.items():
        if isinstance(obj, torch.nn.Module):
            grads = [None if p.grad is None else p.grad.detach().clone() for p in obj.parameters()]
            if any(g is not None for g in grads):
                out[name] = grads
    return out


# -- the trainer's own attributes -------------------------------------------------------


class _Pickler(pickle.Pickler):
    """Pickles attribute values, keeping the live modules, optimizers, loaders and the
    trainer itself as references by attribute name (restored to the same objects)."""

    def __init__(self, file: io.BytesIO, refs: dict[int, str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.refs = refs

    def persistent_id(self, obj: Any) -> str | None:
        ref = self.refs.get(id(obj))
        if ref is not None:
            return ref
        if isinstance(obj, _BY_STATE_DICT):
            raise pickle.PicklingError(
                f"it holds a {type(obj).__name__} that is not an attribute of its own, so its state would be "
                f"saved apart from the optimizer's; make it an attribute (or an nn.ModuleList/ModuleDict)"
            )
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, trainer: Any) -> None:
        super().__init__(file)
        self.trainer = trainer

    def persistent_load(self, pid: Any) -> Any:
        if pid == "@trainer":
            return self.trainer
        return getattr(self.trainer, pid)


_BY_STATE_DICT: tuple[type, ...] = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)


def _references(trainer: Any, objects: dict[str, Any]) -> dict[int, str]:
    refs = {id(trainer): "@trainer"}
    for name in (*objects, *_feed_attrs(trainer), "config"):
        value = getattr(trainer, name, None)
        if value is not None:
            refs.setdefault(id(value), name)
    from torch.utils.data import DataLoader

    for name, value in vars(trainer).items():
        if isinstance(value, DataLoader):
            refs.setdefault(id(value), name)
    return refs


def _candidates(trainer: Any, objects: dict[str, Any]) -> dict[str, Any]:
    skip = NEVER | set(objects) | _feed_attrs(trainer) | set(getattr(trainer, "checkpoint_exclude", ()))
    out = {}
    for name, value in vars(trainer).items():
        if name in skip or hasattr(value, "__next__"):  # live iterators cannot be resumed
            continue
        out[name] = value
    return out


def _dumps(values: Any, refs: dict[int, str]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, refs).dump(values)
    return buffer.getvalue()


def _pickle_attributes(trainer: Any, objects: dict[str, Any]) -> bytes:
    """The trainer's own attributes, pickled together (so shared objects stay shared)."""
    values, refs = _candidates(trainer, objects), _references(trainer, objects)
    try:
        return _dumps(values, refs)
    except Exception:
        pass
    problems: dict[str, str] = {}
    for name, value in values.items():
        try:
            _dumps(value, refs)
        except Exception as exc:
            problems[name] = f"{type(exc).__name__}: {exc}"
    _warn_unsaved(trainer, problems)
    return _dumps({k: v for k, v in values.items() if k not in problems}, refs)


def _warn_unsaved(trainer: Any, problems: dict[str, str]) -> None:
    rt = trainer._statetrainer
    if rt.unsaved_warned or not problems:
        return
    rt.unsaved_warned = True
    listed = "; ".join(f"self.{name} ({why})" for name, why in problems.items())
    warnings.warn(
        f"checkpoints of {type(trainer).__name__} leave out attributes that cannot be pickled: {listed}. "
        f"A resumed run will have the values its constructor gives them; make them picklable, or list "
        f"them in checkpoint_exclude to silence this warning",
        RuntimeWarning,
        stacklevel=2,
    )


def _restore_attributes(trainer: Any, blob: bytes) -> None:
    for name, value in _Unpickler(io.BytesIO(blob), trainer).load().items():
        setattr(trainer, name, value)


# -- writing and checking --------------------------------------------------------------


def write(trainer: Any, path: str | os.PathLike[str], state: str) -> Path:
    """Capture and write atomically to ``path``."""
    payload = capture(trainer, state)
    return ck.atomic_write(path, lambda f: torch.save(payload, f))


def check_compatible(trainer: Any, data: dict[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` listing every way ``data`` does not fit ``trainer``."""
    problems = []
    if data["trainer"] != type(trainer).__qualname__:
        problems.append(f"trainer: checkpoint {data['trainer']!r}, this one {type(trainer).__qualname__!r}")
    spec = type(trainer).lifecycles().get(data["lifecycle"])
    if spec is None:
        problems.append(f"lifecycle {data['lifecycle']!r} is not one of this trainer's")
    elif spec.fingerprint() != data["fingerprint"]:
        problems.append(f"lifecycle {data['lifecycle']!r} differs (states, roles or edges changed)")
    elif data["state"] not in spec.state_names:
        problems.append(f"state {data['state']!r} does not exist in {data['lifecycle']!r}")
    objects = ck.stateful_attributes(trainer)
    have = set(objects)
    saved = set(data["objects"])
    if have != saved:
        problems.append(f"stateful attributes: missing here {sorted(saved - have)}, new here {sorted(have - saved)}")
    for name in sorted(have & saved):  # a model of another size (the run's settings were changed)
        if isinstance(objects[name], torch.nn.Module) and isinstance(data["objects"][name], dict):
            differs = ck.state_dict_mismatch(objects[name].state_dict(), data["objects"][name])
            problems += [f"self.{name}: {d}" for d in differs]
    if problems:
        raise CheckpointError(f"checkpoint {source!r} does not fit this trainer:\n  - " + "\n  - ".join(problems)
                              + "\n  resume with the trainer and settings it was written with, or start a new run")


def restore(trainer: Any, data: dict[str, Any], source: str = "the checkpoint") -> str:
    """Put ``trainer`` back where ``data`` was captured; returns the state to resume from."""
    rt = trainer._statetrainer
    spec = type(trainer).lifecycles()[data["lifecycle"]]
    objects = ck.stateful_attributes(trainer)
    for name, state in data["objects"].items():
        try:
            objects[name].load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"checkpoint {source!r} does not fit this trainer: self.{name} cannot load its state ({first}); "
                f"resume with the trainer and settings it was written with, or start a new run"
            ) from exc
    rt.run_id = data.get("run_id") if isinstance(data.get("run_id"), str) else None
    for name, modes in data.get("modes", {}).items():
        for module, training in zip(objects[name].modules(), modes):
            module.training = training
    for name, grads in data.get("grads", {}).items():
        for param, grad in zip(objects[name].parameters(), grads):
            param.grad = None if grad is None else grad.to(param.device)
    _restore_attributes(trainer, data["attrs"])
    _restore_runtime(rt, spec, data)
    _restore_callbacks(rt.bundles, data["callbacks"])
    rt.registry.load_counts(data.get("filters", []))
    for name, saved in data["feeds"].items():
        if saved["active"] and (saved["opened"] or saved["kind"] != "loader"):
            _reopen(trainer, rt.feed(_spec_with_feed(trainer, name), name), saved)
    ck.set_rng_state(data["rng"], *_loaders(trainer))
    return str(data["state"])


def _restore_runtime(rt: Any, spec: Any, data: dict[str, Any]) -> None:
    pos, ctl = rt.driver.position, rt.driver.control
    position, runtime = data["position"], data["runtime"]
    pos.epoch, pos.batch, pos.global_step = position["epoch"], position["batch"], position["global_step"]
    pos.depth = 0
    rt.epoch_started = runtime["epoch_started"]
    rt.periodic_mark = runtime["periodic_mark"]
    rt.driver.trace.start_at(runtime["trace_total"])
    rt.metrics.load_state_dict(data["metrics"])
    ctl.clear()
    for what in ("epoch_stop", "skip", "stop"):
        if data["control"].get(what):
            ctl.request(what)
    if data["state"] in spec.no_grad_states():
        rt.grad.saved = runtime["grad_saved"]
        torch.set_grad_enabled(False)


def _spec_with_feed(trainer: Any, name: str) -> Any:
    return next(s for s in type(trainer).lifecycles().values() if any(f.name == name for f in s.feeds))


#: Checkpointed callbacks a resumed trainer may add or leave out (see :func:`_restore_callbacks`).
_OPTIONAL_CALLBACKS = frozenset({"StateTimer"})


def _stateful(bundles: list[Any]) -> list[Any]:
    """Callbacks whose class defines its own ``state_dict`` (the base one keeps nothing)."""
    from statetrainer.builtin_callbacks import Callback

    return [b for b in bundles if callable(getattr(b, "state_dict", None))
            and type(b).state_dict is not Callback.state_dict]


def _restore_callbacks(bundles: list[Any], saved: list[Any]) -> None:
    """Load each checkpointed callback's state into the same callback of this trainer.

    A callback of :data:`_OPTIONAL_CALLBACKS` (``StateTimer``: what ``--profile`` adds) may be
    on one side only: it starts afresh, or its checkpointed state is left unused.
    """
    optional = _OPTIONAL_CALLBACKS
    stateful = _stateful(bundles)
    names = [type(b).__qualname__ for b in stateful]
    if [n for n in names if n not in optional] != [n for n, _ in saved if n not in optional]:
        raise CheckpointError(
            f"callbacks differ: checkpoint {[n for n, _ in saved]}, this trainer "
            f"{names}; add the same callbacks before resuming"
        )
    pending = list(saved)
    for bundle, name in zip(stateful, names):
        index = next((i for i, (n, _) in enumerate(pending) if n == name), None)
        if index is not None:  # else an optional callback the checkpoint lacks: it starts afresh
            bundle.load_state_dict(pending.pop(index)[1])


def _reopen(trainer: Any, feed: Any, saved: dict[str, Any]) -> None:
    """Re-create the feed's iterator past ``taken`` items when the resumed run first asks for one.

    The RNG the pass began with is replayed around the re-creation (so a shuffling loader
    yields the same order) and the RNG of that moment put back afterwards.
    """
    from statetrainer import steps_data

    loader = getattr(trainer, feed.spec.loader, None) if feed.spec.loader else None
    taken, kind, rng = saved["taken"], saved["kind"], saved["rng"]

    def reopen() -> Any:
        now = ck.rng_state(loader)
        if rng is not None:
            ck.set_rng_state(rng, loader)
        epoch = trainer._statetrainer.driver.position.epoch
        if epoch is not None and loader is not None:
            steps_data.set_sampler_epoch(loader, epoch)
        iterator = _recreate(trainer, feed, loader, kind, taken)
        ck.set_rng_state(now, loader)
        return iterator

    feed.reset()
    feed.active = True
    feed.open_rng = rng
    feed.opener = reopen
    feed.taken = taken


def _recreate(trainer: Any, feed: Any, loader: Any, kind: str, taken: int) -> Any:
    from statetrainer._feeds import _skip

    if kind == "loader":
        return _skip(loader, taken)
    if kind == "enumerate":
        iterator = enumerate(_skip(loader, taken), start=taken)
        if feed.spec.iterable:
            setattr(trainer, feed.spec.iterable, iterator)
        return iterator
    custom = getattr(trainer, f"resume_{feed.spec.name}_iterable", None)
    if custom is None:
        raise CheckpointError(
            f"{feed.spec.iterable} was set by a hook to an iterable statetrainer cannot re-create mid-pass; "
            f"define resume_{feed.spec.name}_iterable(self, consumed) returning it past the first `consumed` "
            f"items, or checkpoint at epoch boundaries only (checkpoint_epochs=True)"
        )
    return iter(custom(taken))
