"""``GanTrainer``: farabio's other base class, run by a state machine.

A farabio GAN trainer (SRGAN, CycleGAN style) ports by changing its import to
``from statetrainer import GanTrainer``. The lifecycles (:data:`statetrainer.lifecycles.GAN`)
are farabio's ``GanTrainer``'s: the train/evaluate/test skeleton of ``ConvnetTrainer``
with, per training batch, ``on_start_training_batch(item)``, the discriminator's
``discriminator_zero_grad``, ``discriminator_loss``, ``discriminator_backward``,
``discriminator_optim_step``, the generator's four ``generator_*`` steps, then
``on_end_training_batch()`` — each a state (in the trace and the diagram; callbacks attach
to them). The epoch is ``self.epoch``; evaluation runs every epoch while ``_has_eval``;
``on_evaluate_batch_start()`` takes no item; ``test()`` calls ``load_model()``.

Differences from farabio, all towards running where farabio crashed: ``stop_train()``
stops gracefully instead of ``sys.exit()``; the default ``on_train_epoch_start`` and
``on_evaluate_epoch_start`` leave a missing ``self.model`` alone (GANs keep ``netG`` and
``netD``), and ``on_evaluate_epoch_start`` is a no-op instead of raising.
"""

from __future__ import annotations

from typing import Any

import torch

from statetrainer import lifecycles
from statetrainer.spec import Lifecycle
from statetrainer.trainer import ConvnetTrainer


class GanTrainer(ConvnetTrainer):
    """farabio's GanTrainer: the discriminator's and the generator's steps as states of each batch.

    Example::

        class MyGan(GanTrainer):
            def build_model(self):
                self.netG, self.netD = Generator(), Discriminator()
                ...
            def on_start_training_batch(self, args):
                self.real = args
            def discriminator_loss(self):
                self._discriminator_loss = ...
            def generator_loss(self):
                self._generator_loss = ...

        MyGan(config).train()
    """

    def default_attr(self, *args: Any) -> None:
        """farabio's GanTrainer defaults (plus ``ConvnetTrainer``'s, which a GAN ignores)."""
        super().default_attr()
        self.model_load_dir = None
        self.optimizerD: Any = None
        self.optimizerG: Any = None

    @classmethod
    def lifecycles(cls) -> dict[str, Lifecycle]:
        """farabio's GanTrainer lifecycles: train (the main one), evaluate, test."""
        return dict(lifecycles.GAN)

    def on_train_epoch_start(self) -> None:
        """Hook: at the start of each epoch; may set ``self.train_epoch_iter``."""
        self.batch_training_loss = 0
        if isinstance(self.model, torch.nn.Module):
            self.model.train()

    def on_evaluate_epoch_start(self) -> None:
        """Hook: at the start of evaluation (farabio's raised NotImplementedError)."""

    def on_evaluate_batch_start(self, *args: Any) -> None:
        """Hook: before each evaluation item (farabio's GanTrainer passes no item)."""

    def discriminator_zero_grad(self) -> None:
        """Hook: zero the discriminator's gradients."""

    def discriminator_loss(self, *args: Any) -> None:
        """Hook: compute the discriminator's loss (farabio: abstract)."""
        raise NotImplementedError(
            f"{type(self).__name__}.discriminator_loss(): a GanTrainer must define the discriminator's loss"
        )

    def discriminator_backward(self) -> None:
        """Hook: back-propagate the discriminator's loss."""

    def discriminator_optim_step(self) -> None:
        """Hook: step the discriminator's optimizer."""

    def generator_zero_grad(self) -> None:
        """Hook: zero the generator's gradients."""

    def generator_loss(self, *args: Any) -> None:
        """Hook: compute the generator's loss (farabio: abstract)."""
        raise NotImplementedError(
            f"{type(self).__name__}.generator_loss(): a GanTrainer must define the generator's loss"
        )

    def generator_backward(self) -> None:
        """Hook: back-propagate the generator's loss."""

    def generator_optim_step(self) -> None:
        """Hook: step the generator's optimizer."""
