"""Training-step helpers: device placement, mixed precision, accumulation, clipping.

Use a :class:`StepHelper` from your ``training_step``, or set ``self.default_step`` in
``build_model`` and leave ``training_step`` alone: the default ``training_step`` then runs
``forward -> loss -> backward -> (every N micro-batches) step`` on the current item.

None of it reads a tensor back to the host: the loss stays on the device (log it with
``trainer.log``). On CUDA with fp16, ``torch.amp.GradScaler.step`` itself checks for
infinities on the host; that is the scaler's cost, paid once per optimizer step.

Example::

    def build_model(self):
        self.model = Net()
        self.optimizer = torch.optim.AdamW(self.model.parameters())
        self.default_step = StepHelper(self.model, self.optimizer, torch.nn.CrossEntropyLoss(),
                                       precision="bf16", accumulate=4, clip_norm=1.0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from statetrainer._errors import ConfigurationError

PRECISIONS = ("auto", "32", "bf16", "16")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; asking for a missing device is an error."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {name!r}: this machine has no CUDA device; use 'cpu' or 'auto'")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigurationError(f"device {name!r}: MPS is not available here; use 'cpu' or 'auto'")
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigurationError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


def to_device(batch: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """Move tensors in ``batch`` (nested tuples/lists/dicts) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)):
        moved = [to_device(b, device, non_blocking) for b in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


class StepHelper:
    """One optimizer step per ``accumulate`` micro-batches, with autocast and clipping."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        *,
        device: str | torch.device = "auto",
        precision: str = "32",
        accumulate: int = 1,
        clip_norm: float | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigurationError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ConfigurationError(f"accumulate must be an int >= 1 (micro-batches per step), got {accumulate!r}")
        if clip_norm is not None and clip_norm <= 0:
            raise ConfigurationError(f"clip_norm must be > 0, got {clip_norm!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self._check_devices()
        self.optimizer, self.loss_fn = optimizer, loss_fn
        self.accumulate, self.clip_norm = accumulate, clip_norm
        self.precision = self._resolve_precision(precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "16" else None
        self.micro = 0
        self.steps = 0

    def _resolve_precision(self, precision: str) -> str:
        if precision == "auto":
            return "16" if self.device.type == "cuda" else "bf16" if self.device.type == "cpu" else "32"
        if precision == "16" and self.device.type != "cuda":
            raise ConfigurationError("precision '16' (fp16 + GradScaler) needs CUDA; use 'bf16' on CPU")
        return precision

    def _check_devices(self) -> None:
        devices = {p.device.type for p in self.model.parameters()}
        if devices and devices != {self.device.type}:
            raise ConfigurationError(f"model parameters are on {sorted(devices)}, the step runs on {self.device}")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast for the forward pass: bf16 on CPU, fp16 on CUDA, nothing at 32-bit."""
        if self.precision == "32":
            yield
            return
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss / accumulate`` (scaled under fp16)."""
        loss = loss / self.accumulate
        if self.scaler is not None:
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        else:
            loss.backward()  # type: ignore[no-untyped-call]
        self.micro += 1

    @property
    def step_due(self) -> bool:
        """True when ``accumulate`` micro-batches have been back-propagated since the last step."""
        return self.micro >= self.accumulate

    def step(self) -> None:
        """Clip, step the optimizer (through the scaler under fp16), zero the gradients."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.micro = 0
        self.steps += 1

    def __call__(self, batch: Any) -> torch.Tensor:
        """One micro-batch ``(inputs, targets)``: forward, loss, backward, and a step when due."""
        if self.loss_fn is None:
            raise ConfigurationError("StepHelper needs loss_fn= to run a whole step; or call backward/step yourself")
        inputs, targets = to_device(batch, self.device)
        with self.autocast():
            loss = self.loss_fn(self.model(inputs), targets)
        self.backward(loss)
        if self.step_due:
            self.step()
        return loss.detach()

    def flush(self) -> None:
        """Step on a partial accumulation (call at the end of an epoch)."""
        if self.micro:
            self.step()

    def state_dict(self) -> dict[str, Any]:
        """Accumulation position and scaler state (checkpoints keep it)."""
        return {"micro": self.micro, "steps": self.steps,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.micro, self.steps = int(state["micro"]), int(state["steps"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
