"""What ``statetrainer run``'s options give the trainer: its config, seeds, callbacks.

* :func:`config_values`: ``--config KEY=VALUE`` pairs and ``--config FILE.json|.toml``
  files, merged in order (a later one wins), then the flags that are config keys:
  ``--epochs`` (``epochs``), ``--seed`` (``seed``), ``--device`` (``device``),
  ``--precision`` (``precision``). Nothing else reads these flags: a trainer passes
  ``self.config["device"]`` on to its :class:`~statetrainer.steps.StepHelper` itself.
* :class:`RunConfig`: the config the trainer gets (keys and attributes, like farabio's
  EasyDict), noting which keys were read, so a flag the trainer never read is a warning.
* :func:`seed_everything`, :func:`attach_callbacks` (``--callback MODULE:NAME``).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from statetrainer.cli import AttrDict, UsageError, load_class

#: ``statetrainer.steps.PRECISIONS`` (a test keeps them equal; ``--help`` does not import torch).
PRECISIONS = ("auto", "32", "bf16", "16")
#: What ``--device`` accepts (``statetrainer.steps.resolve_device``'s names).
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: The flags that set config keys, and the keys.
FLAG_KEYS = {"epochs": "epochs", "seed": "seed", "device": "device", "precision": "precision"}


def config_values(items: list[str], args: Any) -> dict[str, Any]:
    """The config of a new run: ``--config`` items in order, then the flags that are config keys."""
    values: dict[str, Any] = {}
    for item in items:
        values.update(_item_values(item))
    if args.device is not None and not DEVICE.match(args.device):
        raise UsageError(f"--device {args.device!r}: use auto, cpu, cuda, cuda:N or mps")
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            values[key] = value
    if args.epochs is not None and "num_epochs" in values:
        values["num_epochs"] = args.epochs  # both keys mean the epoch count: --epochs sets it
    return values


def _item_values(item: str) -> dict[str, Any]:
    """One ``--config`` item: a ``.json``/``.toml`` file, or ``KEY=VALUE``."""
    if item.endswith((".json", ".toml")) and "=" not in item:
        return _file_values(Path(item))
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--config expects KEY=VALUE or a .json/.toml file, got {item!r}")
    return {key: parse_value(value)}


def parse_value(text: str) -> Any:
    """JSON when it parses (``1`` is an int, ``[1, 2]`` a list), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _file_values(path: Path) -> dict[str, Any]:
    """The table of a ``.json`` or ``.toml`` config file; errors name the file and the fix."""
    if not path.is_file():
        raise UsageError(f"--config file {str(path)!r} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config file {str(path)!r} cannot be read: {exc}") from None
    kind = path.suffix[1:].upper()
    try:
        values = json.loads(text) if kind == "JSON" else _toml().loads(text)
    except ValueError as exc:
        raise UsageError(f"--config file {str(path)!r} is not valid {kind}: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config file {str(path)!r} holds {type(values).__name__}; it must hold an object of "
                         f"KEY: VALUE settings")
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--config file {str(path)!r}: {exc}; the run keeps its config in run.json, so values "
                         f"must be JSON values (write dates as strings)") from None
    return values


def _toml() -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found, no-redef]
        except ImportError:
            raise UsageError("--config FILE.toml needs Python 3.11 or later (or `pip install tomli`); "
                             "use a .json file instead") from None
    return tomllib


class RunConfig(AttrDict):
    """The config a trainer gets from the command line; notes the keys its code reads."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(values)
        object.__setattr__(self, "_read", set())

    @property
    def read(self) -> set[str]:
        """The keys read so far (all of them once the whole config was read)."""
        found: set[str] = self.__dict__["_read"]
        return found

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def _all(self) -> None:
        self.read.update(super().keys())

    def __iter__(self) -> Any:
        self._all()
        return super().__iter__()

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def items(self) -> Any:
        self._all()
        return super().items()

    def values(self) -> Any:
        self._all()
        return super().values()


def unread_keys(config: RunConfig, trainer_name: str) -> list[str]:
    """A warning for each of the config's ``device`` and ``precision`` (``--device``,
    ``--precision``) that the trainer's code never read: nothing else reads them."""
    out = []
    for key in ("device", "precision"):
        if dict.__contains__(config, key) and key not in config.read:
            value = dict.__getitem__(config, key)
            out.append(f"--{key} {value} (config[{key!r}]) changed nothing: {trainer_name} never read it; pass it "
                       f"on, e.g. StepHelper(..., {key}=self.config[{key!r}]) in build_model")
    return out


def seed_everything(seed: int | None) -> None:
    """Seed Python's, torch's and (when the trainer's code imported it) numpy's RNGs."""
    if seed is None:
        return
    import random

    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed % 2**32)


def attach_callbacks(trainer: Any, specs: list[str]) -> None:
    """Add the callbacks each ``--callback MODULE:NAME`` gives, in order."""
    for spec in specs:
        for obj in _callback_objects(trainer, spec):
            try:
                trainer.add_callback(obj)
            except TypeError as exc:
                raise UsageError(f"--callback {spec}: {exc}") from None


def _callback_objects(trainer: Any, spec: str) -> list[Any]:
    """``NAME`` is a callback class (built with no arguments) or a function of the trainer
    returning a callback, a list of them, or ``None`` (it attached what it wanted itself)."""
    from statetrainer.callbacks import check_signature
    from statetrainer.cli import BuildError

    factory = load_class(spec, what="--callback")
    if isinstance(factory, type):
        if not _takes_no_arguments(factory):
            raise UsageError(
                f"--callback {spec}: {factory.__name__}() cannot be built without arguments (its signature is "
                f"{inspect.signature(factory)}); name a function that takes the trainer and returns it instead, e.g. "
                f"def early(trainer): return EarlyStopping('valid_loss')")
        try:
            return [factory()]
        except Exception as exc:  # its own code failed: the user's file and line, exit 1
            raise BuildError(f"--callback {spec}", exc) from exc
    if not callable(factory):
        raise UsageError(f"--callback {spec}: {type(factory).__name__} is neither a callback class nor a function")
    try:
        check_signature(factory, 1, "--callback")
    except TypeError as exc:
        raise UsageError(f"--callback {spec}: {exc}") from None
    try:
        made = factory(trainer)
    except Exception as exc:
        raise BuildError(f"--callback {spec}", exc) from exc
    if made is None:
        return []
    return list(made) if isinstance(made, (list, tuple)) else [made]


def _takes_no_arguments(cls: type) -> bool:
    """``cls()`` binds (a class without a readable signature is trusted)."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind()
    except TypeError:
        return False
    return True
