"""Users' own lifecycles run on the same driver: GAN and gradient-accumulation examples."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from statetrainer import Edge, Lifecycle, SpecError, State, diagrams

EXAMPLES = Path(__file__).parent.parent / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_gan_lifecycle_runs_discriminator_then_generator_each_batch() -> None:
    """Per batch: D zero_grad/loss/backward/step then G's; parameters of both move."""
    gan = _example("gan_lifecycle")
    trainer = gan.GanLoop({"epochs": 2})
    before = [p.clone() for p in (*trainer.netG.parameters(), *trainer.netD.parameters())]
    trainer.run()
    states = [e.state for e in trainer.trace]
    first = states.index("on_start_training_batch")
    assert states[first : first + 10] == ["on_start_training_batch", *gan._STEPS, "on_end_training_batch"]
    assert states.count("generator_optim_step") == 2 * 8
    after = [*trainer.netG.parameters(), *trainer.netD.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def test_gradient_accumulation_equals_the_big_batch_step() -> None:
    """4 micro-batches of 8 then a step equal one SGD step on the 32-item batch."""
    acc = _example("grad_accumulation")
    trainer = acc.AccumulatingTrainer({"epochs": 1, "accumulate": 4})
    trainer.run()
    assert trainer.steps == 2
    torch.manual_seed(0)
    ref = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    x = torch.cat([b[0] for b in trainer.train_loader])
    y = torch.cat([b[1] for b in trainer.train_loader])
    for i in (0, 32):
        opt.zero_grad()
        torch.nn.functional.mse_loss(ref(x[i : i + 32]), y[i : i + 32]).backward()
        opt.step()
    torch.testing.assert_close(trainer.model.weight, ref.weight, rtol=1e-5, atol=1e-6)


def test_control_and_callbacks_work_on_custom_lifecycles() -> None:
    """stop() from a callback on a custom state ends at the final state; diagrams draw it."""
    acc = _example("grad_accumulation")
    trainer = acc.AccumulatingTrainer({"epochs": 5, "accumulate": 2})
    trainer.on("optimizer_step", lambda t: t.stop(), once=3)
    trainer.run()
    assert trainer.steps == 3 and trainer.status == "stopped"
    assert [e.state for e in trainer.trace][-1] == "on_train_end"
    dot = diagrams.to_dot(acc.ACCUMULATE)
    assert 'micro_batch -> micro_batch [label = "accumulate\\n[has_next_batch]"]' in dot


def test_a_broken_custom_lifecycle_is_refused_when_declared() -> None:
    """Declaring a lifecycle with a typo fails at once, listing the problem."""
    with pytest.raises(SpecError, match=r"unknown state 'stpe'; did you mean 'step'"):
        Lifecycle(name="bad", states=(State("start"), State("step")), edges=(Edge("start", "stpe"),),
                  initial="start", finals=("step",))


def test_item_loop_looks_ahead_once_and_keeps_none_items() -> None:
    """has_next() may be asked twice without skipping; None is an item; take() past the end is refused."""
    from statetrainer import ConfigurationError, ItemLoop

    loop = ItemLoop()
    with pytest.raises(ConfigurationError, match="call start"):
        loop.has_next()
    loop.start([None, 2])
    assert loop.has_next() and loop.has_next()
    assert loop.take() is None and loop.take() == 2 and loop.taken == 2
    assert not loop.has_next()
    with pytest.raises(ConfigurationError, match="no item left"):
        loop.take()
    loop.start([7])
    assert loop.take() == 7
