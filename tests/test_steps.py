"""Step helpers: device placement, bf16 autocast on CPU, accumulation, clipping; CUDA ones marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from statetrainer import ConfigurationError, ConvnetTrainer, TrainerRunError
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


class _Crash(Exception):
    pass


def _crash_after_checkpoint(trainer: Regression, nth_batch: int, path: Path) -> None:
    """Write a checkpoint at the end of the nth training item, then fail before the next state."""
    trainer.on("on_end_training_batch", lambda t: t.save_checkpoint(path), once=nth_batch, order=10**6)

    def crash(source: str, target: str) -> None:
        if path.exists():
            raise _Crash

    trainer.observe(crash)
    with pytest.raises(TrainerRunError, match=r"^_Crash: \n  raised in lifecycle 'train', state 'on_end_training_batch'"):
        trainer.train()


def test_resumed_accumulation_position_is_checkpointed(tmp_path: Path) -> None:
    """A checkpoint after 6 micro-batches of a 4-batch accumulation holds micro=2 and one step; the
    resumed helper goes on from micro-batch 2 (steps after two more items) to the same 8 steps."""
    from statetrainer import checkpoint as ck

    path = tmp_path / "ck.pt"
    _crash_after_checkpoint(Regression(accumulate=4), 6, path)
    saved = ck.read_checkpoint(path)["objects"]["default_step"]
    assert (saved["micro"], saved["steps"]) == (2, 1)
    resumed = Regression(accumulate=4)
    micro: list[int] = []
    resumed.on("training_step", lambda t: micro.append(t.default_step.micro), order=-1)
    resumed.train(resume_from=path)
    assert micro[:3] == [2, 3, 0] and resumed.default_step.steps == 4 * 2


def test_resuming_mid_accumulation_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    """Interrupted after 6 micro-batches (2 into an accumulation) and resumed: bitwise the uninterrupted
    weights (the checkpoint holds the gradients in flight)."""
    reference = Regression(accumulate=4)
    reference.train()
    path = tmp_path / "ck.pt"
    _crash_after_checkpoint(Regression(accumulate=4), 6, path)
    resumed = Regression(accumulate=4)
    resumed.train(resume_from=path)
    assert torch.equal(resumed.model.weight, reference.model.weight)
    assert torch.equal(resumed.model.bias, reference.model.bias)


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


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, expected: str) -> None:
    """device='auto' picks CUDA when there is one, else MPS, else the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)


def test_device_resolution_and_placement() -> None:
    """auto resolves to what exists; missing CUDA is an error; nested batches move."""
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)
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
