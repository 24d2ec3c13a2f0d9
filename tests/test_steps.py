"""Step helpers: device placement, bf16 autocast on CPU, accumulation, clipping; CUDA ones marked."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from statetrainer import ConfigurationError, ConvnetTrainer
from statetrainer.steps import StepHelper, resolve_device, to_device


def cuda(test: Any) -> Any:
    """Marked `cuda` (benchmarks/gpu_check.sh selects them) and skipped without a CUDA device."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test))


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    return x, x @ torch.arange(1.0, 6.0).unsqueeze(1)


class Regression(ConvnetTrainer):
    """No training_step of its own: the default step does the work."""

    def __init__(self, **step: Any) -> None:
        self.step_kw = step
        super().__init__({})

    def define_train_attr(self) -> None:
        self._num_epochs, self._has_eval = 4, False

    def get_trainloader(self) -> None:
        x, y = _data()
        self.train_loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(5, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.02)
        self.default_step = StepHelper(self.model, self.optimizer, torch.nn.MSELoss(), device="cpu", **self.step_kw)


def test_default_step_trains_with_bf16_autocast_on_cpu() -> None:
    """precision='bf16' runs the forward under CPU autocast and the loss goes down."""
    t = Regression(precision="bf16")
    seen: list[torch.dtype] = []
    t.model.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    t.train()
    losses = [h["train_loss"] for h in t.metrics_history]
    assert losses[-1] < 0.5 * losses[0] and seen[0] == torch.bfloat16
    assert t.default_step.steps == 4 * 8


def test_accumulation_equals_one_big_batch_and_flushes_partial() -> None:
    """accumulate=4 over micro-batches of 8 equals SGD on batches of 32; a partial group is flushed."""
    t = Regression(accumulate=4)
    t._num_epochs = 1
    t.train()
    torch.manual_seed(0)
    ref = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(ref.parameters(), lr=0.02)
    x, y = _data()
    for i in (0, 32):
        opt.zero_grad()
        torch.nn.functional.mse_loss(ref(x[i : i + 32]), y[i : i + 32]).backward()
        opt.step()
    torch.testing.assert_close(t.model.weight, ref.weight, rtol=1e-5, atol=1e-6)
    odd = Regression(accumulate=3)
    odd._num_epochs = 1
    odd.train()
    assert odd.default_step.steps == 3 and odd.default_step.micro == 0, "8 micro-batches: 3+3+flushed 2"


def test_clipping_bounds_the_update() -> None:
    """With clip_norm, one SGD step (lr=1) moves the parameters by at most clip_norm."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    helper = StepHelper(model, torch.optim.SGD(model.parameters(), lr=1.0), torch.nn.MSELoss(), device="cpu", clip_norm=0.01)
    x, y = _data(8)
    helper((x * 100, y * 100))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before) <= 0.01 + 1e-6


def test_resumed_accumulation_position_is_checkpointed(tmp_path: Any) -> None:
    """The StepHelper's micro-batch count travels in checkpoints."""
    from statetrainer import checkpoint as ck

    t = Regression(accumulate=4)
    assert "default_step" in ck.stateful_attributes(t)
    t.default_step.micro = 2
    clone = Regression(accumulate=4)
    clone.default_step.load_state_dict(t.default_step.state_dict())
    assert clone.default_step.micro == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "8"}, "precision must be one of"),
        ({"accumulate": 0}, "accumulate must be an int >= 1"),
        ({"clip_norm": -1.0}, "clip_norm must be > 0"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_step_settings(kwargs: dict[str, Any], match: str) -> None:
    """Bad precision, accumulation, clipping or device values are refused with the fix."""
    with pytest.raises(ConfigurationError, match=match):
        StepHelper(torch.nn.Linear(2, 1), torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), **kwargs)


def test_device_resolution_and_placement() -> None:
    """auto resolves to what exists; missing CUDA is an error; nested batches move."""
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(ConfigurationError, match="needs CUDA; use 'bf16' on CPU"):
            StepHelper(torch.nn.Linear(2, 1), torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1),
                       device="cpu", precision="16")
    moved = to_device({"a": (torch.ones(1), [torch.zeros(1)])}, torch.device("cpu"))
    assert moved["a"][1][0].device.type == "cpu"


@cuda
def test_fp16_with_grad_scaler_on_cuda() -> None:
    """precision='16' on CUDA uses autocast fp16 and a GradScaler; training still converges."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 1)
    helper = StepHelper(model, torch.optim.SGD(model.parameters(), lr=0.02), torch.nn.MSELoss(), device="cuda", precision="16")
    x, y = _data()
    first = float(helper((x, y)))
    for _ in range(50):
        last = float(helper((x, y)))
    assert helper.scaler is not None and last < first


@cuda
def test_driver_forces_no_host_device_sync_per_batch() -> None:
    """With sync debug mode 'error' during the batch loop, a CUDA training epoch runs through."""

    class OnGpu(Regression):
        def get_trainloader(self) -> None:
            x, y = _data()
            self.train_loader = [(x[i : i + 8].cuda(), y[i : i + 8].cuda()) for i in range(0, 64, 8)]

        def build_model(self) -> None:
            torch.manual_seed(0)
            self.model = torch.nn.Linear(5, 1).cuda()
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.02)
            self.default_step = StepHelper(self.model, self.optimizer, torch.nn.MSELoss(), device="cuda")

    t = OnGpu()
    t._num_epochs = 1
    t.on("on_train_epoch_start", lambda tr: torch.cuda.set_sync_debug_mode("error"), order=10)
    t.on("on_train_epoch_end", lambda tr: torch.cuda.set_sync_debug_mode("default"), order=-10)
    try:
        t.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert t.status == "finished"
