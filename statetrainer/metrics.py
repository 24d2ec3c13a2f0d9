"""Per-epoch metrics: ``trainer.log(name, value)`` without a host-device sync per batch.

Tensor values are detached and summed as tensors on their own device; they become
Python floats only when :meth:`Metrics.compute` is called (typically once per epoch, by
a callback at ``on_epoch_end``).
"""

from __future__ import annotations

from typing import Any


class Metrics:
    """Running means of the values logged during the current epoch."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._cache: dict[str, float] | None = None
        self.history: list[dict[str, float]] = []

    def log(self, name: str, value: Any) -> None:
        """Add ``value`` (a number or a tensor) to ``name``'s running mean for this epoch."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        detach = getattr(value, "detach", None)
        if detach is not None:
            value = detach()
        if name in self._sums:
            self._sums[name] = self._sums[name] + value
            self._counts[name] += 1
        else:
            self._sums[name] = value
            self._counts[name] = 1
        self._cache = None

    def compute(self) -> dict[str, float]:
        """The means logged so far this epoch, as floats (syncs the device once)."""
        if self._cache is None:
            out: dict[str, float] = {}
            for name, total in self._sums.items():
                mean = total / self._counts[name]
                out[name] = float(mean.item() if hasattr(mean, "item") else mean)
            self._cache = out
        return dict(self._cache)

    def end_epoch(self, epoch: int | None) -> dict[str, float]:
        """Close the epoch: keep its means in ``history`` and start empty."""
        values = self.compute()
        if values:
            self.history.append({"epoch": float(epoch if epoch is not None else -1), **values})
        self._sums.clear()
        self._counts.clear()
        self._cache = None
        return values

    @property
    def last(self) -> dict[str, float]:
        """The means of the last closed epoch (empty before the first)."""
        if not self.history:
            return {}
        return {k: v for k, v in self.history[-1].items() if k != "epoch"}

    def state_dict(self) -> dict[str, object]:
        """The running sums, counts and history (for checkpoints)."""
        return {"sums": dict(self._sums), "counts": dict(self._counts), "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`."""
        self._sums = dict(state["sums"])  # type: ignore[call-overload]
        self._counts = dict(state["counts"])  # type: ignore[call-overload]
        self.history = [dict(h) for h in state["history"]]  # type: ignore[attr-defined]
        self._cache = None
