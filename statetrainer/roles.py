"""The runtime roles a lifecycle's states can declare, and what the runtime does for each.

A role is the *meaning* of a state for the runtime: the machine says where an epoch opens
and closes, where a training item is done, where a checkpoint may be taken, which region
runs without grad. Every runtime feature reads these roles from the spec, so a custom
lifecycle that declares them gets every feature (epochs, per-epoch metrics, built-in
callbacks, periodic and epoch checkpoints, exact resume, signals, inspect).

========================  ===========================================================
role                      what the runtime does
========================  ===========================================================
``epoch_start``           on entry, before the hook: the epoch counter advances
                          (``first`` the first time in a run, then +1), the position's
                          epoch is set, the batch index resets.
``epoch_end``             after the state's calls: the epoch's ``trainer.log`` means
                          close into ``metrics_history``, ``epoch_finished`` is logged,
                          the epoch checkpoint (``checkpoint_epochs``) is requested,
                          data-parallel ranks agree on a stop. Epoch-level callbacks
                          (EarlyStopping, ModelCheckpoint, CSVLogger, ...) attach here.
``batch_end``             a training item is done: ``checkpoint_every`` counts here;
                          per-batch callbacks (per-batch LR steps) attach here.
``resumable``             a checkpoint taken after this state's calls resumes exactly:
                          no item is in flight. Automatic checkpoints (periodic, epoch,
                          signal) and ``save_checkpoint()`` are served at these states only
                          (a request made elsewhere waits for the next one).
``no_grad``               the state, and for a compound state its whole body, runs under
                          ``torch.no_grad()``; the grad mode is part of the position, so
                          resuming inside the region restores it.
========================  ===========================================================

Data feeds (:class:`~statetrainer.spec.Feed`) are declared on the lifecycle and bound to
states with ``opens=`` (the loop over the feed begins: its iterator is reset),
``takes=`` (the state takes the next item; a feed that ``counts_steps`` advances the
global step), ``item=`` (the hook receives the current item) and ``closes=`` (the loop is
over: a partial gradient accumulation of the default step is stepped). The feed's
position is captured in checkpoints, so a resume mid-loop re-opens the data and skips
the consumed items without loading them.

Attach a callback to a role rather than to a state name::

    from statetrainer.roles import EPOCH_END
    trainer.on(EPOCH_END, lambda t: print(t.metrics()))

Torch-free.
"""

from __future__ import annotations

import attrs

#: Every role a state may declare, with what the runtime does for it.
ROLES: dict[str, str] = {
    "epoch_start": "opens an epoch: the epoch counter advances, the batch index resets",
    "epoch_end": "closes the epoch: metrics close, epoch checkpoints, epoch-level callbacks",
    "batch_end": "a training item is done: periodic checkpoints count, per-batch callbacks",
    "resumable": "a checkpoint taken here resumes exactly: no item is in flight",
    "no_grad": "runs without grad (for a compound state: its whole body)",
}


@attrs.frozen
class Role:
    """A role to attach callbacks to: ``trainer.on(EPOCH_END, fn)``.

    The callback runs on entry to every state that declares the role, in whichever
    lifecycle is running. Attaching to a role the trainer's main lifecycle lacks is an
    error that names the missing role.
    """

    name: str = attrs.field()

    @name.validator
    def _known(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in ROLES:
            from statetrainer._errors import UnknownStateError

            raise UnknownStateError(value, ROLES, what="role")

    def __str__(self) -> str:
        return f"role {self.name!r}"


EPOCH_START = Role("epoch_start")
EPOCH_END = Role("epoch_end")
BATCH_END = Role("batch_end")
RESUMABLE = Role("resumable")
