"""Per-epoch and per-step metrics: ``trainer.log(name, value)`` without a host-device sync per batch.

* **Checked when logged**: a metric is one number — a Python number, a one-element tensor
  or array. Anything else (a tensor of 384 elements, a string) raises at once, naming the
  metric; the check reads the tensor's shape, never its value (no device sync).
* **Epoch means** (``on_epoch=True``, the default): tensor values are detached and summed
  on their own device; they become floats when :meth:`Metrics.compute` is called
  (typically once per epoch).
* **Step values** (``on_step=True``): each value is kept with the global step, detached,
  and converted to floats in one go — when the loggers read :meth:`Metrics.steps` at the
  epoch's end, or every :data:`STEP_CHUNK` values — so logging per step costs no sync
  per batch either.

Torch-free: torch is imported only to convert tensors, which only exist when it is loaded.
"""

from __future__ import annotations

import numbers
from typing import Any

#: Step values are converted to floats at least every this many (one device sync each).
STEP_CHUNK = 1024


def checked_value(name: str, value: Any) -> Any:
    """``value`` ready to accumulate (tensors detached); an error naming ``name`` if it is not one number."""
    kind = type(value)
    if kind is float or kind is int:
        return value
    detach = getattr(value, "detach", None)
    if detach is not None:
        count = value.numel()
        if count != 1:
            raise ValueError(
                f"trainer.log({name!r}, value): a metric is one number, but value is a tensor of shape "
                f"{tuple(value.shape)} ({count} elements); log a reduction such as value.mean(), or log "
                f"each element under its own name"
            )
        return detach()
    if isinstance(value, numbers.Real):
        return value
    size = getattr(value, "size", None)
    if isinstance(size, int) and hasattr(value, "item"):
        if size != 1:
            raise ValueError(f"trainer.log({name!r}, value): a metric is one number, but value is an array of "
                             f"shape {getattr(value, 'shape', '?')} ({size} elements); log value.mean()")
        return value
    raise TypeError(f"trainer.log({name!r}, value): a metric is a number or a one-element tensor, "
                    f"got {type(value).__name__} {value!r:.60}")


class MetricsHistory(list[dict[str, float]]):
    """``trainer.metrics_history``: one dict per finished epoch, read as a list or called.

    ``trainer.metrics_history()`` matches ``trainer.metrics()``; ``trainer.metrics_history``
    (0.1's attribute spelling) is the same list.
    """

    def __call__(self) -> list[dict[str, float]]:
        return list(self)


class Metrics:
    """Running means of the values logged during the current epoch, and step values."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._cache: dict[str, float] | None = None
        self.history: list[dict[str, float]] = []
        self._pending: list[tuple[int, str, Any]] = []  # (step, name, value) not yet converted
        self._steps: list[tuple[int, str, float]] = []  # this epoch's step values, as floats

    def log(self, name: str, value: Any, *, on_step: bool = False, on_epoch: bool = True, step: int = 0) -> None:
        """Add ``value`` (a number or a one-element tensor) to ``name``'s epoch mean and/or step values."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        value = checked_value(name, value)
        if on_epoch:
            if name in self._sums:
                self._sums[name] = self._sums[name] + value
                self._counts[name] += 1
            else:
                self._sums[name] = value
                self._counts[name] = 1
            self._cache = None
        if on_step:
            self._pending.append((step, name, value))
            if len(self._pending) >= STEP_CHUNK:
                self._convert_pending()

    def compute(self) -> dict[str, float]:
        """The means logged so far this epoch, as floats (syncs the device once)."""
        if self._cache is None:
            out: dict[str, float] = {}
            for name, total in self._sums.items():
                mean = total / self._counts[name]
                out[name] = float(mean.item() if hasattr(mean, "item") else mean)
            self._cache = out
        return dict(self._cache)

    def latest(self) -> dict[str, float]:
        """This epoch's means once something is logged; before that (and after a run) the last epoch's."""
        return self.compute() if self._sums else self.last

    def steps(self) -> list[tuple[int, str, float]]:
        """This epoch's step values ``(global step, name, value)``, in logging order (syncs once)."""
        self._convert_pending()
        return list(self._steps)

    def _convert_pending(self) -> None:
        if not self._pending:
            return
        values = _as_floats([v for _, _, v in self._pending])
        self._steps += [(step, name, v) for (step, name, _), v in zip(self._pending, values)]
        self._pending.clear()

    def end_epoch(self, epoch: int | None) -> dict[str, float]:
        """Close the epoch: keep its means in ``history`` and start empty (step values too)."""
        values = self.compute()
        if values:
            self.history.append({"epoch": float(epoch if epoch is not None else -1), **values})
        self._sums.clear()
        self._counts.clear()
        self._cache = None
        self._pending.clear()
        self._steps.clear()
        return values

    @property
    def last(self) -> dict[str, float]:
        """The means of the last closed epoch (empty before the first)."""
        if not self.history:
            return {}
        return {k: v for k, v in self.history[-1].items() if k != "epoch"}

    def state_dict(self) -> dict[str, object]:
        """The running sums, counts, history and this epoch's step values (for checkpoints)."""
        return {"sums": dict(self._sums), "counts": dict(self._counts), "history": [dict(h) for h in self.history],
                "steps": self.steps()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict` (a checkpoint from before step values had none)."""
        self._sums = dict(state["sums"])  # type: ignore[call-overload]
        self._counts = dict(state["counts"])  # type: ignore[call-overload]
        self.history = [dict(h) for h in state["history"]]  # type: ignore[attr-defined]
        self._steps = [tuple(s) for s in state.get("steps", ())]  # type: ignore[attr-defined, misc]
        self._pending.clear()
        self._cache = None


def _as_floats(values: list[Any]) -> list[float]:
    """Floats of ``values``; the tensors among them converted with one sync per device."""
    out: list[float | None] = [None] * len(values)
    by_device: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        if hasattr(v, "detach"):
            by_device.setdefault(v.device, []).append(i)
        else:
            out[i] = float(v.item() if hasattr(v, "item") else v)
    if by_device:
        import torch

        for indices in by_device.values():
            stacked = torch.stack([values[i].reshape(()).to(torch.float64) for i in indices])
            for i, f in zip(indices, stacked.tolist()):
                out[i] = f
    return [float(v) for v in out]  # type: ignore[arg-type]
