"""No silent mistakes in a trainer subclass: checked when it is defined and when it is built.

* :func:`check_hook_names` (class definition): a method that looks like a hook but is none
  — ``on_train_epoch_strat``, Lightning's ``validation_step`` or
  ``on_validation_epoch_end`` — is never called by the machine. A :class:`HookNameWarning`
  points at the method's line and says which hook was meant: a close spelling, or the
  hook spelling the same words in farabio's vocabulary (``validation`` is ``evaluate``,
  ``step`` is ``batch``), found among the trainer's own states — no hook name is written
  here, so custom lifecycles get the same help.
* :func:`apply_epoch_count` (construction, before ``init_attr``): ``num_epochs=`` or
  ``epochs=`` given to the constructor, else a ``num_epochs``/``epochs`` key of the config,
  sets farabio's ``_num_epochs``. The hooks run after it, so ``self._num_epochs = N`` set in
  a hook still wins.
* :func:`check_attributes` (end of construction): an attribute that is a near miss of a
  farabio attribute (``self.num_epochs = 2`` while ``_num_epochs`` stays 10,
  ``self.val_loader``, ``self._eval_intervall``) gets an :class:`AttributeNameWarning`.

Silence one with :mod:`warnings` filters, or rename a helper with a leading underscore.
Torch-free.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from statetrainer._errors import ConfigurationError


class StateTrainerWarning(UserWarning):
    """Base class of statetrainer's warnings about a trainer's code."""


class HookNameWarning(StateTrainerWarning):
    """A trainer method looks like a hook, but no lifecycle state calls it."""


class HookSignatureWarning(StateTrainerWarning):
    """A hook method requires arguments its state never passes (Lightning's ``training_step(batch, batch_idx)``)."""


class AttributeNameWarning(StateTrainerWarning):
    """A trainer attribute is a near miss of one of farabio's (``num_epochs`` for ``_num_epochs``)."""


#: Lightning's construction-time hooks, and farabio's hook that does the job here.
LIGHTNING_SETUP: dict[str, str] = {
    "configure_optimizers": "build_model",
    "configure_model": "build_model",
    "train_dataloader": "get_trainloader",
    "val_dataloader": "get_trainloader",
    "test_dataloader": "get_testloader",
}

#: Words of other frameworks' hook names, as farabio's hook names spell them.
_WORDS = {"training": "train", "validation": "evaluate", "valid": "evaluate", "val": "evaluate",
          "fit": "train", "step": "batch", "begin": "start"}
#: Words that name a lifecycle: a hint must keep them (``on_test_epoch_end`` is not ``on_epoch_end``).
_DOMAINS = frozenset({"train", "evaluate", "test"})

#: Names users reach for, and farabio's attribute they mean.
ATTRIBUTE_ALIASES: dict[str, str] = {
    "epochs": "_num_epochs", "n_epochs": "_num_epochs", "max_epochs": "_num_epochs",
    "eval_every": "_eval_interval", "val_interval": "_eval_interval", "check_val_every_n_epoch": "_eval_interval",
    "val_loader": "valid_loader", "validation_loader": "valid_loader", "val_dataloader": "valid_loader",
    "valid_dataloader": "valid_loader", "train_dataloader": "train_loader", "test_dataloader": "test_loader",
    "val_epoch_iter": "valid_epoch_iter", "test_epoch_iter": "test_loop_iter",
}

#: farabio's settings a misspelt private name is compared with (``_num_epoch``, ``_eval_intervall``).
SETTINGS = ("_num_epochs", "_start_epoch", "_has_eval", "_eval_interval", "_save_epoch", "_data_parallel",
            "_model_path", "_use_tqdm", "_backbone")

#: The constructor keywords and config keys that set the epoch count.
EPOCH_KEYS = ("num_epochs", "epochs")


# -- hook names, when the class is defined ----------------------------------------------------


def check_hook_names(cls: type) -> None:
    """Warn about each method ``cls`` defines that looks like a hook but is none."""
    if cls.__module__.startswith("statetrainer."):
        return
    known = _known_names(cls)
    hooks = _hook_vocabulary(cls)
    passed = _arguments_passed(cls)
    for name, value in vars(cls).items():
        if inspect.isfunction(value) and name in passed:
            _check_signature(cls, name, value, passed[name])
        if name.startswith("_") or not inspect.isfunction(value) or name in known:
            continue
        if any(name in vars(base) for base in cls.__mro__[1:]):
            continue
        hint = _hook_hint(name, hooks)
        if hint is not None:
            _warn_at(value, f"{cls.__name__}.{name}() looks like a hook, but no state calls it: {hint} "
                            f"(a helper of your own? start its name with '_')", HookNameWarning)


def _arguments_passed(cls: type) -> dict[str, tuple[int, list[str]]]:
    """Per state hook (not compound): how many arguments its state passes (the item: 1, else
    0), and the states that hand over an item of the same feed (where a batch arrives)."""
    out: dict[str, tuple[int, list[str]]] = {}
    for spec in _lifecycles(cls):
        for state in spec.states:
            if state.compound or state.name in out:
                continue
            inner = spec.enclosing(state.name)[-1:]  # the compound body it belongs to
            takes = [s.name for s in spec.states if s.item and not s.compound
                     and spec.enclosing(s.name)[-1:] == inner]
            out[state.name] = (1 if state.item else 0, takes)
    return out


def _check_signature(cls: type, name: str, function: Any, given: tuple[int, list[str]]) -> None:
    """Warn when hook ``name`` requires more positional arguments than its state passes."""
    count, item_states = given
    try:
        parameters = list(inspect.signature(function).parameters.values())[1:]  # after self
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return
    required = [p.name for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                                 p.POSITIONAL_OR_KEYWORD)]
    if len(required) <= count:
        return
    passes = "the item it handles" if count else "no argument"
    where = (f"; a batch arrives as the argument of {', '.join(item_states[:3])}(self, args): keep what the "
             f"step needs on self there" if not count and item_states else "")
    _warn_at(function, f"{cls.__name__}.{name}({', '.join(['self', *required])}) needs {len(required)} "
                       f"argument(s), but its state passes {passes}{where}", HookSignatureWarning)


def _known_names(cls: type) -> set[str]:
    """Everything a trainer method may legitimately be named: inherited names, states, guards."""
    names = {n for base in cls.__mro__[1:] for n in vars(base)}
    for spec in _lifecycles(cls):
        names.update(spec.state_names)
        names.update(spec.guard_names)
    return names


#: The hooks the constructor calls (farabio's order); with the states, what a hint may name.
CONSTRUCTION_HOOKS = ("default_attr", "init_attr", "define_data_attr", "define_model_attr", "define_train_attr",
                      "define_test_attr", "define_log_attr", "define_compute_attr", "define_misc_attr",
                      "get_trainloader", "get_testloader", "build_model", "build_parallel_model")


def _hook_vocabulary(cls: type) -> list[str]:
    """The hooks a misspelling is compared with: the states the machine calls, then the constructor's."""
    vocabulary: list[str] = []
    for spec in _lifecycles(cls):
        vocabulary += [n for n in spec.state_names if n not in vocabulary]
    return vocabulary + [n for n in CONSTRUCTION_HOOKS if n not in vocabulary]


def _lifecycles(cls: type) -> list[Any]:
    """``cls.lifecycles()``, or none when the class cannot give them yet (its own checks say why)."""
    lifecycles = getattr(cls, "lifecycles", None)
    try:
        return list(lifecycles().values()) if callable(lifecycles) else []
    except Exception:  # noqa: BLE001 (a broken lifecycle is reported by the class's own validation)
        return []


def _hook_hint(name: str, hooks: list[str]) -> str | None:
    """What ``name`` was probably meant to be, or ``None`` when it does not look like a hook.

    In order: a Lightning construction hook; a hook spelling exactly the same words; a close
    spelling (keeping the lifecycle's word: ``on_test_epoch_start`` is not ``on_train_...``);
    a hook spelling most of the same words; any other ``on_*`` name.
    """
    if name in LIGHTNING_SETUP:
        return f"{name} is Lightning's name; farabio's hook is {LIGHTNING_SETUP[name]!r}"
    same, score = _same_words(name, hooks)
    if score >= 0.99:
        return f"did you mean {same!r} (farabio's name for it)?"
    domains = _words(name) & _DOMAINS
    close: list[str] = []
    for spelling in (name, "_".join(_WORDS.get(w, w) for w in name.split("_"))):
        close = close or [c for c in difflib.get_close_matches(spelling, hooks, n=5, cutoff=0.8)
                          if domains <= _words(c)][:3]
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    if score >= 0.7:
        return f"did you mean {same!r} (farabio's name for it)?"
    if name.startswith("on_"):
        return "no state has that name; `statetrainer explain train` lists the hooks in order"
    return None


def _words(name: str) -> set[str]:
    return {_WORDS.get(w, w) for w in name.split("_") if w}


def _same_words(name: str, hooks: list[str]) -> tuple[str, float]:
    """The hook spelling the most of ``name``'s words (``on_validation_batch_end`` ->
    ``on_evaluate_batch_end``, ``validation_step`` -> ``evaluate_batch``) and how many (0..1)."""
    mine = _words(name)
    if not mine & (_DOMAINS | {"start", "end", "batch", "epoch"}):
        return "", 0.0
    scored = []
    for hook in hooks:
        theirs = _words(hook)
        score = len(mine & theirs) / len(mine | theirs)
        score -= 0.5 * bool(mine & _DOMAINS - theirs) + 0.1 * ("batch" in theirs and "batch" not in mine)
        scored.append((score, difflib.SequenceMatcher(None, name, hook).ratio(), hook))
    best = max(scored, default=(0.0, 0.0, ""))
    return best[2], best[0]


def _warn_at(function: Any, message: str, category: type[Warning]) -> None:
    """Warn pointing at ``function``'s own file and line (not at statetrainer's)."""
    code = getattr(function, "__code__", None)
    if code is None:
        warnings.warn(message, category, stacklevel=4)
        return
    warnings.warn_explicit(message, category, code.co_filename, code.co_firstlineno,
                           module=getattr(function, "__module__", None))


# -- the epoch count, when the trainer is built ---------------------------------------------


def apply_epoch_count(trainer: Any, total_attr: str, given: Mapping[str, Any]) -> None:
    """Set ``total_attr`` (farabio's ``_num_epochs``) from a constructor keyword or a config key.

    ``given`` holds the keywords passed (``num_epochs``, ``epochs``; ``None`` when absent).
    A keyword beats a config key; a hook setting the attribute later beats both.
    """
    source, value = _epoch_setting(given, trainer.config)
    if source is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{source} must be a non-negative int (the number of epochs), got {value!r}")
    setattr(trainer, total_attr, value)


def _epoch_setting(given: Mapping[str, Any], config: Any) -> tuple[str | None, Any]:
    passed = {k: v for k, v in given.items() if v is not None}
    if len(passed) > 1 and len(set(passed.values())) > 1:
        raise ConfigurationError(f"num_epochs={passed['num_epochs']!r} and epochs={passed['epochs']!r} disagree; "
                                 f"give one of them")
    for key, value in passed.items():
        return f"{key}=", value
    for key in EPOCH_KEYS:
        found, value = _config_value(config, key)
        if found:
            return f"config[{key!r}]", value
    return None, None


def _config_value(config: Any, key: str) -> tuple[bool, Any]:
    if isinstance(config, Mapping):
        return (key in config, config.get(key))
    if config is not None and not isinstance(config, (str, bytes, Iterable)) and hasattr(config, key):
        return True, getattr(config, key)
    return False, None


# -- attribute names, when the trainer is built ---------------------------------------------


def check_attributes(trainer: Any, farabio_names: Iterable[str]) -> None:
    """Warn about instance attributes that are near misses of farabio's attributes."""
    known = set(farabio_names)
    mine = {n for n in vars(trainer) if n not in known and n != "_statetrainer"}
    for name in sorted(mine):
        target = _attribute_target(name, known)
        if target is None:
            continue
        value, meant = getattr(trainer, name), getattr(trainer, target, None)
        if _same(value, meant):
            continue
        warnings.warn(
            f"{type(trainer).__name__} sets self.{name} = {_short(value)}, which statetrainer never reads; "
            f"farabio's attribute is self.{target} (now {_short(meant)}): set self.{target} instead",
            AttributeNameWarning, stacklevel=3,
        )


def _attribute_target(name: str, known: set[str]) -> str | None:
    if name in ATTRIBUTE_ALIASES and ATTRIBUTE_ALIASES[name] in known:
        return ATTRIBUTE_ALIASES[name]
    if not name.startswith("_") and f"_{name}" in known:
        return f"_{name}"
    settings = [k for k in SETTINGS if k in known] if name.startswith("_") else []
    close = difflib.get_close_matches(name, settings, n=1, cutoff=0.85)
    return close[0] if close else None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or a == b)
    except Exception:  # noqa: BLE001 (tensors, arrays: == is not a truth value)
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
