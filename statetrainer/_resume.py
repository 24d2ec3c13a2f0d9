"""Capture a running trainer at a state boundary, and restore it to resume exactly.

A checkpoint holds the machine's state (the state whose calls have completed), counters,
pending control requests, every module/optimizer/scheduler/scaler attribute, RNG states
(now, and at the start of the epoch), the data position (batches consumed this epoch and
how the iterable was made), metrics, stateful callbacks and the attributes a trainer
lists in ``checkpoint_attrs``.

Resuming does not re-run the completed state's calls: the driver records one ``resume``
trace entry and chooses the next edge. Data order: the sampler's epoch is set, the epoch's
RNG state restored, the iterable re-opened with the consumed batches skipped unloaded,
and then the RNG states of the checkpoint moment restored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from statetrainer import checkpoint as ck
from statetrainer._errors import CheckpointError

#: Boundaries where a resume needs nothing that hooks keep in attributes for the current
#: batch: signal stops wait for one of these; automatic checkpoints are taken at them.
RESUMABLE = frozenset({"on_end_training_batch", "on_train_epoch_end", "on_epoch_end", "on_train_end"})

#: States inside an epoch's batch loop: resuming there re-opens the training iterable.
IN_EPOCH = frozenset({
    "on_train_epoch_start", "train_batch", "on_start_training_batch", "training_step", "on_end_training_batch",
})


def _iterable_kind(trainer: Any) -> str:
    value = trainer.train_epoch_iter
    if value is None:
        return "loader"
    if isinstance(value, enumerate):
        return "enumerate"
    return "other"


def capture(trainer: Any, state: str) -> dict[str, Any]:
    """The checkpoint payload of ``trainer`` whose machine has just completed ``state``."""
    rt = trainer._statetrainer
    pos, ctl = rt.driver.position, rt.driver.control
    spec = trainer.lifecycles()[pos.lifecycle]
    return {
        "format": ck.FORMAT,
        "version": ck.VERSION,
        "trainer": type(trainer).__qualname__,
        "lifecycle": spec.name,
        "fingerprint": spec.fingerprint(),
        "state": state,
        "position": {"epoch": pos.epoch, "batch": pos.batch, "global_step": pos.global_step},
        "runtime": {
            "epoch_started": rt.epoch_started,
            "taken": rt.train.taken,
            "valid_taken": rt.valid.taken,
            "iterable": _iterable_kind(trainer),
            "opened": rt.train.iterator is not None,
            "trace_total": rt.driver.trace.total,
        },
        "control": {"epoch_stop": ctl.epoch_stop, "skip": ctl.skip, "stop": ctl.stop and not rt.signal},
        "attrs": {"_epoch": trainer._epoch, **{a: getattr(trainer, a) for a in trainer.checkpoint_attrs}},
        "objects": {name: obj.state_dict() for name, obj in ck.stateful_attributes(trainer).items()},
        # train/eval mode per submodule: set by hooks that a resume does not re-run
        "modes": {
            name: [m.training for m in obj.modules()]
            for name, obj in ck.stateful_attributes(trainer).items()
            if isinstance(obj, torch.nn.Module)
        },
        "rng": ck.rng_state(trainer.train_loader),
        "epoch_rng": rt.epoch_rng,
        "metrics": rt.metrics.state_dict(),
        "callbacks": [(type(b).__qualname__, b.state_dict()) for b in _stateful(rt.bundles)],
    }


def write(trainer: Any, path: str | os.PathLike[str], state: str) -> Path:
    """Capture and write atomically to ``path``."""
    payload = capture(trainer, state)
    return ck.atomic_write(path, lambda f: torch.save(payload, f))


def check_compatible(trainer: Any, data: dict[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` listing every way ``data`` does not fit ``trainer``."""
    problems = []
    if data["trainer"] != type(trainer).__qualname__:
        problems.append(f"trainer: checkpoint {data['trainer']!r}, this one {type(trainer).__qualname__!r}")
    spec = trainer.lifecycles().get(data["lifecycle"])
    if spec is None:
        problems.append(f"lifecycle {data['lifecycle']!r} is not one of this trainer's")
    elif spec.fingerprint() != data["fingerprint"]:
        problems.append(f"lifecycle {data['lifecycle']!r} differs (states or edges changed)")
    elif data["state"] not in spec.state_names:
        problems.append(f"state {data['state']!r} does not exist in {data['lifecycle']!r}")
    have = set(ck.stateful_attributes(trainer))
    saved = set(data["objects"])
    if have != saved:
        problems.append(f"stateful attributes: missing here {sorted(saved - have)}, new here {sorted(have - saved)}")
    if problems:
        raise CheckpointError(f"checkpoint {source!r} does not fit this trainer:\n  - " + "\n  - ".join(problems))


def restore(trainer: Any, data: dict[str, Any]) -> str:
    """Put ``trainer`` back where ``data`` was captured; returns the state to resume from."""
    rt = trainer._statetrainer
    pos, ctl = rt.driver.position, rt.driver.control
    objects = ck.stateful_attributes(trainer)
    for name, state in data["objects"].items():
        objects[name].load_state_dict(state)
    for name, modes in data.get("modes", {}).items():
        for module, training in zip(objects[name].modules(), modes):
            module.training = training
    for name, value in data["attrs"].items():
        setattr(trainer, name, value)
    position, runtime = data["position"], data["runtime"]
    pos.epoch, pos.batch, pos.global_step = position["epoch"], position["batch"], position["global_step"]
    pos.depth = 0
    rt.epoch_started = runtime["epoch_started"]
    rt.epoch_rng = data["epoch_rng"]
    rt.driver.trace.start_at(runtime["trace_total"])
    rt.metrics.load_state_dict(data["metrics"])
    _restore_callbacks(rt.bundles, data["callbacks"])
    ctl.clear()
    for what in ("epoch_stop", "skip", "stop"):
        if data["control"].get(what):
            ctl.request(what)
    state = data["state"]
    if state in IN_EPOCH:
        # A hook-made iterable (enumerate(loader)) drew its random numbers inside the hook,
        # before the checkpoint; the plain loader only once the feed had opened it.
        replay = runtime["iterable"] != "loader" or runtime["opened"]
        _reopen_training_data(trainer, runtime["taken"], runtime["iterable"], data["epoch_rng"] if replay else None)
    if trainer.lifecycles()[data["lifecycle"]].state(state).region == "evaluate" or state == "evaluate_epoch":
        trainer._no_grad_enter()
        _reopen_validation_data(trainer, runtime["valid_taken"])
    ck.set_rng_state(data["rng"], trainer.train_loader)
    return str(state)


def _stateful(bundles: list[Any]) -> list[Any]:
    """Callbacks whose class defines its own ``state_dict`` (the base one keeps nothing)."""
    from statetrainer.builtin_callbacks import Callback

    return [b for b in bundles if callable(getattr(b, "state_dict", None))
            and type(b).state_dict is not Callback.state_dict]


def _restore_callbacks(bundles: list[Any], saved: list[Any]) -> None:
    stateful = _stateful(bundles)
    if [type(b).__qualname__ for b in stateful] != [name for name, _ in saved]:
        raise CheckpointError(
            f"callbacks differ: checkpoint {[n for n, _ in saved]}, this trainer "
            f"{[type(b).__qualname__ for b in stateful]}; add the same callbacks before resuming"
        )
    for bundle, (_, state) in zip(stateful, saved):
        bundle.load_state_dict(state)


def _reopen_validation_data(trainer: Any, taken: int) -> None:
    """Re-open the validation iterable past ``taken`` items without moving any RNG.

    Creating a DataLoader iterator draws a seed from the global generator; in the
    interrupted run that draw happened before the checkpoint, so it must not happen again.
    """
    from statetrainer._feeds import _skip

    rt = trainer._statetrainer
    source = trainer.valid_epoch_iter if trainer.valid_epoch_iter is not None else trainer.valid_loader

    def reopen() -> Any:
        now = ck.rng_state(source)
        iterator = _skip(source, taken)
        ck.set_rng_state(now, source)
        return iterator

    rt.valid.reset()
    rt.valid.opener = reopen
    rt.valid.taken = taken


def _reopen_training_data(trainer: Any, taken: int, kind: str, epoch_rng: Any) -> None:
    from statetrainer import steps_data
    from statetrainer._feeds import _skip

    rt = trainer._statetrainer
    loader = trainer.train_loader

    def reopen() -> Any:
        now = ck.rng_state(loader) if epoch_rng is not None else None
        if epoch_rng is not None:
            ck.set_rng_state(epoch_rng, loader)
        steps_data.set_sampler_epoch(loader, trainer._epoch)
        if kind == "loader":
            iterator = _skip(loader, taken)
        elif kind == "enumerate":
            iterator = enumerate(_skip(loader, taken), start=taken)
            trainer.train_epoch_iter = iterator
        else:
            custom = getattr(trainer, "resume_train_iterable", None)
            if custom is None:
                raise CheckpointError(
                    f"train_epoch_iter was set by a hook to a {kind!r} iterable, which cannot be re-created "
                    f"mid-epoch; define resume_train_iterable(self, consumed) returning it, past the "
                    f"first `consumed` items"
                )
            iterator = iter(custom(taken))
        if now is not None:
            ck.set_rng_state(now, loader)
        return iterator

    rt.train.reset()
    rt.train.opener = reopen
    rt.train.taken = taken
