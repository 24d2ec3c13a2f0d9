"""statetrainer: a PyTorch training loop whose lifecycle is an explicit state machine.

``import statetrainer`` stays light: torch is imported only when a torch-using name
(``ConvnetTrainer``, the built-in callbacks, checkpoints) is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statetrainer._checks import AttributeNameWarning, HookNameWarning, HookSignatureWarning, StateTrainerWarning
from statetrainer._errors import (
    CheckpointError,
    ConfigurationError,
    DiagramError,
    NotRunningError,
    SpecError,
    StateTrainerError,
    TrainerRunError,
    UnknownStateError,
)
from statetrainer.callbacks import at
from statetrainer.roles import BATCH_END, EPOCH_END, EPOCH_START, RESUMABLE, Role
from statetrainer.spec import Edge, EpochCounter, Feed, Guard, Lifecycle, State, with_stop_edges

__version__ = "0.1.0"

_LAZY = {
    "ConvnetTrainer": "statetrainer.trainer",
    "GanTrainer": "statetrainer.gan",
    "LifecycleTrainer": "statetrainer.custom",
    "ItemLoop": "statetrainer.custom",
    "Callback": "statetrainer.builtin_callbacks",
    "EarlyStopping": "statetrainer.builtin_callbacks",
    "ModelCheckpoint": "statetrainer.builtin_callbacks",
    "ProgressBar": "statetrainer.builtin_callbacks",
    "CSVLogger": "statetrainer.builtin_callbacks",
    "TensorBoardLogger": "statetrainer.builtin_callbacks",
    "LRSchedulerStep": "statetrainer.builtin_callbacks",
    "StateTimer": "statetrainer.builtin_callbacks",
}

if TYPE_CHECKING:
    from statetrainer.builtin_callbacks import (
        Callback,
        CSVLogger,
        EarlyStopping,
        LRSchedulerStep,
        ModelCheckpoint,
        ProgressBar,
        StateTimer,
        TensorBoardLogger,
    )
    from statetrainer.custom import ItemLoop, LifecycleTrainer
    from statetrainer.gan import GanTrainer
    from statetrainer.trainer import ConvnetTrainer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'statetrainer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AttributeNameWarning",
    "BATCH_END",
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "ConfigurationError",
    "ConvnetTrainer",
    "DiagramError",
    "EPOCH_END",
    "EPOCH_START",
    "EarlyStopping",
    "Edge",
    "EpochCounter",
    "Feed",
    "GanTrainer",
    "Guard",
    "HookNameWarning",
    "HookSignatureWarning",
    "ItemLoop",
    "LRSchedulerStep",
    "Lifecycle",
    "LifecycleTrainer",
    "ModelCheckpoint",
    "NotRunningError",
    "ProgressBar",
    "RESUMABLE",
    "Role",
    "SpecError",
    "State",
    "StateTimer",
    "StateTrainerError",
    "StateTrainerWarning",
    "TensorBoardLogger",
    "TrainerRunError",
    "UnknownStateError",
    "at",
    "with_stop_edges",
]
