"""One exception hierarchy for statetrainer, with structured fields.

Every error the library raises on purpose derives from :class:`StateTrainerError`.
Errors that happen *inside* a run carry where they happened (lifecycle, state,
callback, epoch, batch) as attributes as well as in the message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class StateTrainerError(Exception):
    """Base class of every error statetrainer raises on purpose."""


class SpecError(StateTrainerError, ValueError):
    """A lifecycle spec is invalid; ``problems`` lists every problem found at once."""

    def __init__(self, lifecycle: str, problems: Sequence[str]) -> None:
        self.lifecycle = lifecycle
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"lifecycle {lifecycle!r} is invalid ({len(self.problems)} problem"
            f"{'s' if len(self.problems) != 1 else ''}):\n{lines}"
        )


class UnknownStateError(StateTrainerError, KeyError):
    """A state name that no lifecycle has; the message suggests the closest names."""

    def __init__(self, name: str, known: Iterable[str], what: str = "state") -> None:
        self.name = name
        self.suggestions = tuple(close_matches(name, known))
        hint = suggestion_text(self.suggestions)
        self.message = f"unknown {what} {name!r}{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ConfigurationError(StateTrainerError, ValueError):
    """A trainer attribute or argument has a value the run cannot use."""


class NotRunningError(StateTrainerError, RuntimeError):
    """A control call (stop, skip_batch, ...) was made while no run is active."""


class TrainerRunError(StateTrainerError, RuntimeError):
    """An exception escaped a hook or callback during a run.

    The original exception is the ``__cause__``; the fields say where it happened.
    """

    def __init__(
        self,
        *,
        lifecycle: str,
        state: str,
        callback: str,
        epoch: int | None,
        batch: int | None,
        recent: Sequence[str],
        cause: BaseException,
        rank: int | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.state = state
        self.callback = callback
        self.epoch = epoch
        self.batch = batch
        self.recent = tuple(recent)
        self.rank = rank
        where = f"lifecycle {lifecycle!r}, state {state!r}, callback {callback!r}"
        where += f", epoch {epoch}, batch {batch}"
        if rank is not None:
            where += f", rank {rank}"
        path = " -> ".join(self.recent) if self.recent else "(no transitions yet)"
        super().__init__(
            f"{type(cause).__name__}: {cause}\n  raised in {where}\n"
            f"  last transitions: {path}"
        )


class CheckpointError(StateTrainerError, ValueError):
    """A checkpoint file is missing, corrupt, of another lifecycle, or too new."""


class DiagramError(StateTrainerError, RuntimeError):
    """A diagram could not be rendered or parsed (e.g. Graphviz is not installed)."""


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` names from ``known`` that look like ``name``."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)


def suggestion_text(suggestions: Sequence[str]) -> str:
    """Format close matches as a 'did you mean' hint (empty when there are none)."""
    if not suggestions:
        return ""
    return "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
